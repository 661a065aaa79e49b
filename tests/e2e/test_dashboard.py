"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright) against a running lab
mesh (lab.mesh.standard_mesh: anvil, relay, A, B and C behind NATs, each daemon its own process in its own
namespace, every `up` serving its local API on 127.0.0.1:7780 of its namespace).

Chromium runs INSIDE A's namespace (a wrapper around `ip netns exec`), so it reaches A's loopback API as a
local browser would. The test: the page loads with the token from the URL fragment and lists A's peers; the
throughput chart moves while iperf3 runs B -> A; a handshake flood (garbage hellos at A's endpoint from B's
namespace) appears as a finding with its action. Screenshots go to docs/screenshots/. Then the VS Code
extension's integration test runs against the same live API (its `vscode` module shimmed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.mesh import A_URL, standard_mesh

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
EXT = ROOT / "vscode-extension"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
FLOOD = """
import asyncio, os, sys
from shadowmesh_client.transport import ClientConfig
from shadowmesh_client.transport.ws import WebSocketTransport
async def main():
    t = WebSocketTransport()
    for _ in range(int(sys.argv[2])):
        try:
            await t.dial(ClientConfig(sys.argv[1]), os.urandom(160))
        except Exception:
            pass
asyncio.run(main())
"""

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (make debs)")]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = standard_mesh(tmp_path_factory.mktemp("dash"), progress=lambda _m: None)
    try:
        yield lab
    finally:
        lab.topo.teardown()


def _token(dev) -> str:
    files = list(dev.dir.rglob("api-token"))
    assert files, f"no api-token under {dev.dir}: {dev.log and dev.log.read_text()[-2000:]}"
    assert (files[0].stat().st_mode & 0o777) == 0o600
    return files[0].read_text().strip()


def test_dashboard_shows_peers_live_traffic_and_an_injected_anomaly(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    a, b = lab.a, lab.b
    lab.wait_for(lambda: len([p for p in lab.status(a).get("peers", []) if p["session"] == "established"]) >= 2,
                 30, "A's sessions with B and C")
    lab.wait_for(lambda: list(a.dir.rglob("api-token")), 10, "A's API token")
    token = _token(a)
    wrapper = tmp_path / "chromium-in-a"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {lab.topo.ns("a")} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    SHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(wrapper), headless=True, args=FLAGS)
        try:
            # bypass_csp: Playwright's wait_for_function evaluates strings, which the page's CSP (script-src
            # 'self', no eval) forbids; the CSP itself is checked in tests/client/api/test_api.py.
            page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"http://127.0.0.1:7780/#token={token}")
            page.wait_for_selector("#peers tbody tr[data-key]", timeout=15_000)
            page.wait_for_function("document.querySelectorAll('#peers tbody tr[data-key]').length >= 2",
                                   timeout=15_000)
            keys = set(page.eval_on_selector_all("#peers tbody tr[data-key]", "rows => rows.map(r => r.dataset.key)"))
            assert {b.public_key, lab.c.public_key} <= keys
            assert "token=" not in page.url                   # the token left the address bar
            page.wait_for_function("document.getElementById('conn').classList.contains('on')", timeout=10_000)
            page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)

            # the chart moves while iperf3 runs B -> A over the mesh
            before = page.get_attribute("#line-in", "points")
            server = lab.topo.spawn("a", ["iperf3", "-s", "-1", "-B", a.overlay], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                time.sleep(0.5)
                client = lab.topo.spawn("b", ["iperf3", "-c", a.overlay, "-t", "8", "-J"], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
                page.wait_for_function("state.samples.slice(-3).some(s => s.in_bps > 1e6)", timeout=15_000)
                time.sleep(2)
                page.screenshot(path=str(SHOTS / "dashboard-traffic.png"), full_page=True)
                assert page.get_attribute("#line-in", "points") != before
                out, _ = client.communicate(timeout=30)
                assert json.loads(out)["end"]["sum_received"]["bits_per_second"] > 1e6
            finally:
                lab.topo.stop(server)

            # an anomaly: 80 garbage handshakes at A's endpoint from B's namespace -> handshake_flood finding
            flood = lab.topo.run("b", [sys.executable, "-c", FLOOD, A_URL, "80"], check=False, timeout=60)
            assert flood.returncode == 0, flood.stderr
            page.wait_for_selector("#findings li[data-kind=handshake_flood]", timeout=30_000)
            text = page.inner_text("#findings li[data-kind=handshake_flood]")
            assert "refused handshakes" in text and "→" in text
            page.screenshot(path=str(SHOTS / "dashboard-finding.png"), full_page=True)
        finally:
            browser.close()
    assert not [e for e in errors if "Content Security Policy" in e or "TypeError" in e], errors


@pytest.mark.skipif(not (EXT / "out" / "test" / "integration" / "extension.test.js").exists(),
                    reason="the extension is not built: run `make extension`")
def test_the_vscode_extension_against_the_lab_nodes_api(lab):
    a = lab.a
    lab.wait_for(lambda: list(a.dir.rglob("api-token")), 10, "A's API token")
    peers = len([p for p in lab.status(a).get("peers", []) if p["session"] == "established"])
    env = {"SHADOWMESH_API_URL": "http://127.0.0.1:7780", "SHADOWMESH_TOKEN_FILE": str(next(a.dir.rglob("api-token"))),
           "SHADOWMESH_EXPECT_PEERS": str(peers)}
    r = lab.topo.run("a", ["env", *(f"{k}={v}" for k, v in env.items()), "node", "--test", str(EXT / "out" / "test" /
                                                                                            "integration")],
                     check=False, timeout=60)
    assert r.returncode == 0 and "# pass 1" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
