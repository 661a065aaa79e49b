"""What a user installs: the wheel holds the package and nothing of the lab, benchmarks or demo, and
importing every module of it starts nothing and registers no exit handler of its own (its dependencies
are imported first: web3's HTTP session registers one)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contains_only_the_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("shadowmesh_client-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"shadowmesh_client", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if any(part in ("lab", "bench", "demo.py", "tests") for part in n.split("/"))]


def test_importing_every_module_registers_no_exit_handler_and_starts_no_thread():
    code = """
import atexit, importlib, pkgutil, threading, sys
# third-party dependencies first: some register their own exit handlers (web3's HTTP sessions)
for dep in ("web3", "eth_account", "eth_keys", "websockets", "pyroute2", "prometheus_client", "pydantic", "yaml",
            "click", "nacl", "keyring", "coincurve", "eth_utils", "eth_abi"):
    importlib.import_module(dep)
import shadowmesh_client
before = atexit._ncallbacks()
threads = threading.active_count()
for m in pkgutil.walk_packages(shadowmesh_client.__path__, "shadowmesh_client."):
    if m.name.endswith("__main__"):
        continue
    importlib.import_module(m.name)
print(atexit._ncallbacks() - before, threading.active_count() - threads)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["0", "0"], out.stderr
