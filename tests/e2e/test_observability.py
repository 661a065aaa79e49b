"""Observability end to end (issue 13): a real Prometheus (Debian's package) scrapes the relay and the
nodes of the issue-5 mesh (real namespaces, TUN devices, anvil; lab.mesh.standard_mesh); every query of the
Grafana dashboard (deploy/grafana) returns data; SIGKILL of the relay fires ShadowMeshRelayMemberDown
within its ``for``; and the daemons' JSON logs hold no key material, passphrase, password or secret path.

Prometheus runs in A's namespace: it reaches the relay on the public segment and B and C (behind NATs,
unreachable from outside) over the overlay itself, through A's TUN device: their metrics ports listen on
0.0.0.0, as a node behind NAT would be scraped in practice. The alert rules are the shipped file with the
member-down ``for`` shortened to ``MEMBER_DOWN_FOR`` seconds and every group evaluated each second.

This file runs ONE mesh (a stand-alone module fixture, not test_mesh.py's); < 3 min in all.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from lab.mesh import OWNER_PASSWORD, PASSPHRASE, standard_mesh
from lab.netns import list_namespaces

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "shadowmesh.rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "shadowmesh-overview.json"
NODE_METRICS, RELAY_METRICS, PROM = 9465, 9464, "127.0.0.1:9090"
MEMBER_DOWN_FOR = 5   # seconds (the shipped rule: 1m)
SECRET_PATHS = ("/api/v1/ws/relay-k3", "/api/v1/ws/a-9x")

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs prometheus (make debs)")]

# Runs inside A's namespace: GET a Prometheus API path, print the JSON.
_GET = ("import sys,urllib.request,urllib.parse;"
        "print(urllib.request.urlopen('http://" + PROM + "'+sys.argv[1],timeout=5).read().decode())")


def _api(lab, path: str, **params) -> dict:
    from urllib.parse import urlencode

    r = lab.topo.run("a", [sys.executable, "-c", _GET, path + ("?" + urlencode(params) if params else "")],
                     check=False, timeout=15)
    if r.returncode != 0:
        return {}
    return json.loads(r.stdout)


def _queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]


def _test_rules(path: Path) -> None:
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if rule.get("alert") == "ShadowMeshRelayMemberDown":
                rule["for"] = f"{MEMBER_DOWN_FOR}s"
    path.write_text(yaml.safe_dump(doc))


@pytest.fixture(scope="module")
def obs(tmp_path_factory):
    work = tmp_path_factory.mktemp("obs")
    node_args = ("--metrics-port", str(NODE_METRICS), "--metrics-host", "0.0.0.0", "--log-format", "json")
    lab = standard_mesh(work, node_args=node_args, progress=lambda *_: None)
    prefix = lab.topo.prefix
    try:
        lab.stop(lab.relay)   # standard_mesh starts it plain: again with metrics and JSON logs
        lab.start_relay(lab.relay, "--metrics-port", str(RELAY_METRICS), "--metrics-host", "0.0.0.0",
                        "--log-format", "json")
        lab.wait_for(lambda: len(lab.status(lab.relay).get("connected_devices", [])) == 3, 30, "nodes on the relay")
        _test_rules(work / "rules.yml")
        targets = {"shadowmesh-relay": [f"198.18.0.20:{RELAY_METRICS}"],
                   "shadowmesh-node": [f"127.0.0.1:{NODE_METRICS}"]
                   + [f"{d.overlay}:{NODE_METRICS}" for d in (lab.b, lab.c)]}
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
                  "rule_files": [str(work / "rules.yml")],
                  "scrape_configs": [{"job_name": job, "static_configs": [{"targets": t}]}
                                     for job, t in targets.items()]}
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = open(work / "prometheus.log", "wb")
        lab.prometheus = lab.topo.spawn("a", ["prometheus", f"--config.file={work / 'prometheus.yml'}",
                                              f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address={PROM}"],
                                        stdout=log, stderr=log)
        lab.work = work
        yield lab
    finally:
        lab.topo.teardown()
    assert not [ns for ns in list_namespaces() if ns.startswith(prefix)]


def _traffic(lab) -> None:
    for src, dst in ((lab.a, lab.b), (lab.b, lab.c), (lab.c, lab.a)):
        lab.topo.run(src.ns, ["ping", "-c", "3", "-i", "0.2", "-W", "2", dst.overlay], check=False, timeout=20)


def test_prometheus_scrapes_every_target_and_every_dashboard_query_has_data(obs):
    def targets_up():
        active = _api(obs, "/api/v1/targets").get("data", {}).get("activeTargets", [])
        return len(active) == 4 and all(t["health"] == "up" for t in active)

    _traffic(obs)
    obs.wait_for(targets_up, 60, "all four targets up in Prometheus", interval=1)
    _traffic(obs)
    missing: list[str] = []
    deadline = time.monotonic() + 60
    for title, expr in _queries():
        while True:
            res = _api(obs, "/api/v1/query", query=expr).get("data", {}).get("result", [])
            if res:
                break
            if time.monotonic() > deadline:
                missing.append(f"{title}: {expr}")
                break
            time.sleep(1)
    assert not missing, f"dashboard queries without data: {missing}"
    relay_bytes = _api(obs, "/api/v1/query", query="sum(shadowmesh_relay_bytes_total)")["data"]["result"]
    assert float(relay_bytes[0]["value"][1]) > 0
    paths = _api(obs, "/api/v1/query", query='sum by (path) (shadowmesh_node_transport_bytes_total{direction="out"})')
    by_path = {r["metric"]["path"]: float(r["value"][1]) for r in paths["data"]["result"]}
    assert by_path["direct"] > 0 and by_path["relay"] > 0   # A<->B direct, B<->C through the relay


def test_killing_the_relay_fires_member_down_within_its_for(obs):
    obs.relay.proc.kill()   # SIGKILL: no goodbye
    killed = time.monotonic()
    obs.relay.proc.wait()
    obs.relay.proc = None   # (lab.wait_for fails on a dead daemon)

    def firing():
        alerts = _api(obs, "/api/v1/alerts").get("data", {}).get("alerts", [])
        return [a for a in alerts if a["labels"].get("alertname") == "ShadowMeshRelayMemberDown"
                and a["state"] == "firing"]

    fired = obs.wait_for(firing, MEMBER_DOWN_FOR + 15, "ShadowMeshRelayMemberDown firing", interval=0.5)
    took = time.monotonic() - killed
    # `for` + one failed scrape (1 s) + one evaluation (1 s) + the API round trip
    assert took <= MEMBER_DOWN_FOR + 6, f"fired after {took:.1f} s"
    assert fired[0]["labels"]["instance"] == f"198.18.0.20:{RELAY_METRICS}"


def test_json_logs_hold_no_key_material_passwords_or_secret_paths(obs):
    from shadowmesh_client.identity import DeviceKeystore

    secrets = [PASSPHRASE, OWNER_PASSWORD, *SECRET_PATHS]
    for dev in (obs.relay, obs.a, obs.b, obs.c):
        identity = DeviceKeystore(dev.dir / "device.key", backend="file").load(PASSPHRASE)
        secrets.append(identity.seed_bytes().hex())
    for dev in (obs.a, obs.b, obs.c):
        obs.stop(dev)
    checked = 0
    for dev in (obs.relay, obs.a, obs.b, obs.c):
        text = dev.log.read_text()
        for secret in secrets:
            assert secret not in text, f"{dev.name}'s log holds a secret ({secret[:4]}...)"
        # the relay's log file also holds its first, plain-text run (standard_mesh); the rest is JSON
        lines = [ln for ln in text.splitlines() if ln.startswith("{")]
        assert lines, f"{dev.name}: no JSON log lines"
        for ln in lines:
            rec = json.loads(ln)
            assert rec["level"] in ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")
            checked += 1
    assert checked > 10
