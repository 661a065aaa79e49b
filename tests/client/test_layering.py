"""Layering rules from GUIDE.md that a reader relies on when auditing the code."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "shadowmesh_client"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_crypto_module_imports_pynacl():
    """All cryptographic primitives go through shadowmesh_client/crypto.py, so one file gets audited."""
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "crypto.py" and any(m == "nacl" or m.startswith("nacl.") for m in imported_modules(path))
    ]
    assert offenders == []


def _offenders(rule) -> list[str]:
    return sorted(f"{path.relative_to(PACKAGE)}: {m}" for path in PACKAGE.rglob("*.py")
                  for m in imported_modules(path) if rule(path, m))


def test_no_runtime_module_imports_tests_lab_or_bench():
    """The installed package holds only what a user runs: lab, bench and tests live outside it."""
    assert _offenders(lambda p, m: m.split(".")[0] in ("tests", "lab", "bench")) == []


def test_only_the_websocket_transport_imports_websockets():
    """websockets (and its internals) stay inside transport/ws/; everything else uses transport.base."""
    ws = PACKAGE / "transport" / "ws"
    assert _offenders(lambda p, m: m.split(".")[0] == "websockets" and ws not in p.parents) == []


def test_pure_cores_import_no_io():
    """protocol/, relay's core, directory core and the trust policy: no asyncio, sockets, web3, pyroute2."""
    pure = [PACKAGE / "protocol", PACKAGE / "relay" / "core.py", PACKAGE / "relay" / "envelope.py",
            PACKAGE / "relay" / "ratelimit.py", PACKAGE / "directory" / "core.py", PACKAGE / "directory" / "trust.py",
            PACKAGE / "transport" / "base.py"]
    io = ("asyncio", "socket", "websockets", "web3", "pyroute2", "ssl", "sqlite3", "threading")

    def is_pure(p: Path) -> bool:
        return any(p == q or q in p.parents for q in pure)

    assert _offenders(lambda p, m: is_pure(p) and m.split(".")[0] in io) == []


def test_cli_modules_do_not_import_each_other():
    """One module per command group; only cli/__init__.py assembles them (no import cycles)."""
    cli = PACKAGE / "cli"
    assert _offenders(lambda p, m: cli in p.parents and p.name not in ("__init__.py", "__main__.py")
                      and m.startswith("shadowmesh_client.cli") and m != "shadowmesh_client.cli.common") == []
