"""The protocol core is sans-I/O (GUIDE habit 1): nothing under shadowmesh_client/protocol/ may import
asyncio, socket, websockets, pyroute2, web3 or ape, directly or through anything it imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import shadowmesh_client.protocol as protocol

FORBIDDEN = {"asyncio", "socket", "websockets", "pyroute2", "web3", "ape", "ssl", "selectors", "threading"}
PACKAGE = Path(protocol.__file__).resolve().parent


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_of_the_protocol_package_imports_io_libraries():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 6
    for path in files:
        bad = _imported_modules(path) & FORBIDDEN
        assert not bad, f"{path.name} imports {sorted(bad)}: the protocol core must stay free of I/O"


def test_importing_the_protocol_package_loads_no_io_library():
    code = ("import sys, shadowmesh_client.protocol; "
            f"print(sorted(m for m in {sorted(FORBIDDEN - {'threading'})!r} if m in sys.modules))")
    root = str(PACKAGE.parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=root, env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", f"transitively imported: {out.stdout.strip()}"
