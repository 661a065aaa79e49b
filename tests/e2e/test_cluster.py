"""A relay cluster end to end (issue 13 "Cluster"): three relay members (replicas sharing the relay's key
and published endpoint) behind nginx as the WebSocket load balancer, their receipt ledger in a throwaway
PostgreSQL (Debian's package), the issue-5 mesh's nodes in namespaces (lab.mesh.standard_mesh: B and C
behind NATs reach each other only through the relay), and a real Prometheus scraping the three members and
two nodes: every Grafana panel's query returns data; SIGKILL of the member holding B fires
ShadowMeshRelayMemberDown within its ``for``; B reconnects through the load balancer to a live member and
B <-> C traffic resumes; the shared ledger holds what every member counted. Also ``relay --workers 2``:
two worker processes on ONE port (SO_REUSEPORT) as one cluster.

Layout in the relay's namespace (198.18.0.20): nginx on the published port 7443 -> members on
127.0.0.1:8101..8103 (mesh 127.0.0.1:7951..7953, metrics 0.0.0.0:9471..9473), PostgreSQL on its loopback.
Prometheus runs in A's namespace (B's metrics over the overlay, as in test_observability.py). < 4 min.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from lab.mesh import standard_mesh
from lab.netns import list_namespaces
from tests.client.cluster.postgres import pg_bindir, throwaway_postgres

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "shadowmesh.rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "shadowmesh-overview.json"
MEMBERS = 3
PORT, MESH, METRICS, NODE_METRICS, PROM = 8101, 7951, 9471, 9465, "127.0.0.1:9090"
MEMBER_DOWN_FOR = 5   # seconds (the shipped rule: 1m)

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("nginx") is None
                                 or pg_bindir() is None, reason="needs prometheus, nginx, postgresql (make debs)")]

_GET = ("import sys,urllib.request;"
        "print(urllib.request.urlopen('http://" + PROM + "'+sys.argv[1],timeout=5).read().decode())")

NGINX = """
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  upstream relay_members {{
    {servers}
  }}
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  server {{
    listen 7443;
    location / {{
      proxy_pass http://relay_members;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
      proxy_next_upstream error timeout;
      proxy_connect_timeout 1s;
    }}
  }}
}}
"""


def _api(lab, path: str, **params) -> dict:
    from urllib.parse import urlencode

    r = lab.topo.run("a", [sys.executable, "-c", _GET, path + ("?" + urlencode(params) if params else "")],
                     check=False, timeout=15)
    return json.loads(r.stdout) if r.returncode == 0 else {}


def _sql(lab, url: str, query: str) -> list:
    code = ("import sys,json,psycopg;c=psycopg.connect(sys.argv[1]);"
            "print(json.dumps([list(map(str,r)) for r in c.execute(sys.argv[2]).fetchall()]))")
    r = lab.topo.run("relay", [sys.executable, "-c", code, url, query], check=False, timeout=15)
    return json.loads(r.stdout) if r.returncode == 0 else []


class Member:
    def __init__(self, lab, i: int, ledger: str) -> None:
        self.lab, self.i = lab, i
        relay = lab.relay
        cfg = yaml.safe_load(relay.config.read_text())
        cfg["state_dir"] = f"state-member-{i}"
        self.config = relay.dir / f"config-member-{i}.yaml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.status_file = relay.dir / f"member-{i}-status.json"
        self.log = relay.dir / f"member-{i}.log"
        peers = [a for j in range(MEMBERS) if j != i for a in ("--cluster-peer", f"ws://127.0.0.1:{MESH + j}")]
        self.argv = lab.cli_argv(self.config, "relay", "--listen", f"127.0.0.1:{PORT + i}", "--status-file",
                                 str(self.status_file), "--metrics-port", str(METRICS + i), "--metrics-host",
                                 "0.0.0.0", "--api", "off", "--cluster-listen", f"127.0.0.1:{MESH + i}", *peers,
                                 "--cluster-ledger", ledger)
        self.proc = None

    def start(self) -> None:
        import subprocess

        self.proc = self.lab.topo.spawn("relay", self.argv, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                        cwd=str(ROOT))

    def status(self) -> dict:
        try:
            return json.loads(self.status_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def devices(self) -> set[str]:
        return set(self.status().get("connected_devices", []))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("cluster")
    node_args = ("--metrics-port", str(NODE_METRICS), "--metrics-host", "0.0.0.0")
    lab = standard_mesh(work, node_args=node_args, progress=lambda *_: None)
    prefix = lab.topo.prefix
    try:
        lab.stop(lab.relay)   # the single relay goes; the cluster takes its key and endpoint
        with throwaway_postgres(["ip", "netns", "exec", lab.topo.ns("relay")]) as pg:
            lab.pg = pg
            lab.members = [Member(lab, i, pg.url) for i in range(MEMBERS)]
            for m in lab.members:
                m.start()
            servers = "\n    ".join(f"server 127.0.0.1:{PORT + i} max_fails=1 fail_timeout=2s;" for i in range(MEMBERS))
            (work / "nginx.conf").write_text(NGINX.format(work=work, servers=servers))
            lab.nginx = lab.topo.spawn("relay", ["nginx", "-c", str(work / "nginx.conf"), "-g", "daemon off;"])
            lab.wait_for(lambda: all(len(m.status().get("cluster", {}).get("members_linked", [])) == MEMBERS - 1
                                     for m in lab.members), 40, "the members' full mesh")
            lab.wait_for(lambda: len(set().union(*(m.devices() for m in lab.members))) == 3, 60,
                         "a, b and c on the cluster through the load balancer")
            rules = yaml.safe_load(RULES.read_text())
            for group in rules["groups"]:
                group["interval"] = "1s"
                for rule in group["rules"]:
                    if rule.get("alert") == "ShadowMeshRelayMemberDown":
                        rule["for"] = f"{MEMBER_DOWN_FOR}s"
            (work / "rules.yml").write_text(yaml.safe_dump(rules))
            targets = {"shadowmesh-relay": [f"198.18.0.20:{METRICS + i}" for i in range(MEMBERS)],
                       "shadowmesh-node": [f"127.0.0.1:{NODE_METRICS}", f"{lab.b.overlay}:{NODE_METRICS}"]}
            config = {"global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
                      "rule_files": [str(work / "rules.yml")],
                      "scrape_configs": [{"job_name": job, "static_configs": [{"targets": t}]}
                                         for job, t in targets.items()]}
            (work / "prometheus.yml").write_text(yaml.safe_dump(config))
            log = open(work / "prometheus.log", "wb")
            lab.prometheus = lab.topo.spawn("a", ["prometheus", f"--config.file={work / 'prometheus.yml'}",
                                                  f"--storage.tsdb.path={work / 'tsdb'}",
                                                  f"--web.listen-address={PROM}"], stdout=log, stderr=log)
            yield lab
    finally:
        lab.topo.teardown()
    assert not [ns for ns in list_namespaces() if ns.startswith(prefix)]


def _ping(lab, src, dst, count: int = 3) -> bool:
    r = lab.topo.run(src.ns, ["ping", "-c", str(count), "-i", "0.2", "-W", "2", dst.overlay], check=False, timeout=30)
    return r.returncode == 0


def test_b_and_c_talk_through_the_cluster_and_prometheus_sees_every_panel(cluster):
    lab = cluster
    lab.wait_for(lambda: _ping(lab, lab.b, lab.c, 2), 40, "b <-> c through the relay cluster", interval=0.5)
    on = {m.i: m.devices() for m in lab.members}
    cross = next(m for m in lab.members if lab.b.public_key in m.devices()) is not \
        next(m for m in lab.members if lab.c.public_key in m.devices())
    if cross and not lab.peer(lab.b, lab.c).get("direct"):   # b -> c crosses the mesh: one hop
        lab.wait_for(lambda: _ping(lab, lab.b, lab.c, 1) and sum(
            m.status().get("cluster", {}).get("forwarded_frames", 0) for m in lab.members) > 0, 20,
            f"frames forwarded between members ({on})")

    def targets_up():
        active = _api(lab, "/api/v1/targets").get("data", {}).get("activeTargets", [])
        return len(active) == MEMBERS + 2 and all(t["health"] == "up" for t in active)

    lab.wait_for(targets_up, 60, "every member and node up in Prometheus", interval=1)
    _ping(lab, lab.b, lab.c)
    dash = json.loads(DASHBOARD.read_text())
    missing, deadline = [], time.monotonic() + 60
    for title, expr in [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]:
        while not _api(lab, "/api/v1/query", query=expr).get("data", {}).get("result", []):
            if time.monotonic() > deadline:
                missing.append(f"{title}: {expr}")
                break
            _ping(lab, lab.b, lab.c, 1)
            time.sleep(1)
    assert not missing, f"dashboard queries without data: {missing}"


def test_killing_a_member_fires_the_alert_and_its_devices_resume_elsewhere(cluster):
    lab = cluster
    victim = next(m for m in lab.members if lab.b.public_key in m.devices())
    victim.proc.kill()   # SIGKILL: no goodbye
    killed = time.monotonic()
    victim.proc.wait()

    def firing():
        alerts = _api(lab, "/api/v1/alerts").get("data", {}).get("alerts", [])
        return [a for a in alerts if a["labels"].get("alertname") == "ShadowMeshRelayMemberDown"
                and a["state"] == "firing"]

    fired = lab.wait_for(firing, MEMBER_DOWN_FOR + 15, "ShadowMeshRelayMemberDown firing", interval=0.5)
    assert time.monotonic() - killed <= MEMBER_DOWN_FOR + 6
    assert fired[0]["labels"]["instance"] == f"198.18.0.20:{METRICS + victim.i}"
    live = [m for m in lab.members if m is not victim]
    lab.wait_for(lambda: any(lab.b.public_key in m.devices() for m in live), 60,
                 "b back on a live member through the load balancer")
    lab.wait_for(lambda: _ping(lab, lab.b, lab.c, 2), 60, "b <-> c traffic resumed", interval=0.5)


def test_the_shared_ledger_holds_every_members_counts(cluster):
    lab = cluster
    url = lab.pg.url
    rows = lab.wait_for(lambda: _sql(lab, url, "SELECT device_id, counted FROM channels WHERE counted::numeric > 0"),
                        30, "counted bytes in the shared ledger")
    assert len(rows) >= 2
    meta = dict(_sql(lab, url, "SELECT key, value FROM meta"))
    assert meta.get("relay") and meta.get("chain_id")


def test_relay_workers_share_one_port_and_form_a_cluster(cluster):
    """``relay --workers 2``: two worker processes bound to ONE port with SO_REUSEPORT, meshed over loopback
    (worker i: mesh on 127.0.0.1:7946 + i), supervised by the parent; behind the same load balancer."""
    import subprocess

    lab = cluster
    for m in lab.members:
        if m.proc.poll() is None:
            lab.topo.stop(m.proc, 10)
    first = lab.members[0]
    log = lab.relay.dir / "workers.log"
    argv = lab.cli_argv(first.config, "relay", "--workers", "2", "--listen", f"127.0.0.1:{PORT}", "--api", "off",
                        "--cluster-ledger", lab.pg.url)
    proc = lab.topo.spawn("relay", argv, stdout=open(log, "ab"), stderr=subprocess.STDOUT, cwd=str(ROOT))
    state = lab.relay.dir / "state-member-0"

    def worker(i: int) -> dict:
        try:
            return json.loads((state / f"worker-{i}" / "relay-status.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    try:
        lab.wait_for(lambda: all(len(worker(i).get("cluster", {}).get("members_linked", [])) == 1 for i in (0, 1)),
                     40, "two meshed workers")
        assert worker(0)["port"] == worker(1)["port"] == PORT and worker(0)["pid"] != worker(1)["pid"]
        lab.wait_for(lambda: len(set(worker(0).get("connected_devices", []))
                                 | set(worker(1).get("connected_devices", []))) == 3, 60,
                     "a, b and c back on the workers through the load balancer")
        lab.wait_for(lambda: _ping(lab, lab.b, lab.c, 2), 60, "b <-> c through the workers", interval=0.5)
    finally:
        assert lab.topo.stop(proc, 20) is not None
    assert worker(0).get("stopped") and worker(1).get("stopped"), log.read_text()[-2000:]
