"""The daemons' status file: a JSON snapshot that tests, the demo and operators read while a daemon runs.

Written atomically (temporary file, then rename), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any


def write_status_file(path: str | os.PathLike[str] | None, status: dict[str, Any], *, stopped: bool = False) -> None:
    """Replace ``path`` with ``status`` plus ``stopped`` and ``written_at`` (Unix seconds); no-op without a path."""
    if not path:
        return
    data = {**status, "stopped": stopped, "written_at": time.time()}
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, default=str)
    os.replace(tmp, path)
