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
