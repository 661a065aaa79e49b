"""The device-side and message logic of payments is pure (GUIDE habit 1): no sockets, asyncio, SQLite or web3."""

import ast
from pathlib import Path

import pytest

REWARDS = Path(__file__).resolve().parents[3] / "shadowmesh_client" / "rewards"
FORBIDDEN = ("asyncio", "socket", "sqlite3", "web3", "websockets", "subprocess", "time")


@pytest.mark.parametrize("name", ["receipts.py", "issuer.py", "credit.py", "messages.py"])
def test_pure_modules_import_no_io(name):
    imported = set()
    for node in ast.walk(ast.parse((REWARDS / name).read_text())):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
            imported.update(f"{node.module}.{a.name}" for a in node.names)
    assert not {m for m in imported if m.split(".")[0] in FORBIDDEN}
    assert "shadowmesh_client.rewards.ledger" not in imported and "shadowmesh_client.rewards.onchain" not in imported
