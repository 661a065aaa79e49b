"""The VS Code extension's integration test (vscode-extension/test/integration, `vscode` shimmed) against a
real running node's local API: a Node in this event loop (MemoryTransport, FakeTun, MemoryRegistry) with
its API on a loopback socket, and `node --test` as a subprocess. Needs the extension built (`make extension`)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.client.api.test_api import api_settings, run
from tests.client.node.helpers import Mesh, wait_for

EXT = Path(__file__).resolve().parents[3] / "vscode-extension"
BUILT = EXT / "out" / "test" / "integration" / "extension.test.js"

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(not BUILT.exists() or shutil.which("node") is None,
                                 reason="the extension is not built: run `make extension`")]


def test_the_extension_shows_a_running_nodes_peers(tmp_path):
    async def scenario():
        mesh = Mesh()
        a = mesh.node("a", api=api_settings(tmp_path))
        b, c = mesh.node("b"), mesh.node("c")
        mesh.start()
        await mesh.ready()
        try:
            await wait_for(lambda: a.daemon.api is not None and all(a.path(x) == "direct" for x in (b, c)), 5,
                           "a's API and peers up")
            env = dict(os.environ, SHADOWMESH_API_URL=a.daemon.api.url, SHADOWMESH_EXPECT_PEERS="2",
                       SHADOWMESH_TOKEN_FILE=a.daemon.api.settings.token_file)
            proc = await asyncio.create_subprocess_exec("node", "--test", "out/test/integration/", cwd=EXT, env=env,
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
            return proc.returncode, out.decode()
        finally:
            await mesh.stop()

    code, out = run(scenario())
    assert code == 0 and "# pass 1" in out, out[-3000:]
