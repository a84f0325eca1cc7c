"""Reading a run's line-per-record logs (``metrics.jsonl``) back, crash-tolerant."""
from __future__ import annotations

import json
import os
import warnings

__all__ = ["read_jsonl"]


def read_jsonl(path: str | os.PathLike, *, keys: tuple = ()) -> list[dict]:
    """The JSON objects of a ``metrics.jsonl``-style file, one a line. A line that is not a JSON
    object with ``keys`` (a line torn by a crash, power loss or a full disk) is dropped with a
    ``RuntimeWarning`` naming it; every good line is kept."""
    rows, bad = [], []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                row = None
            if isinstance(row, dict) and all(k in row for k in keys):
                rows.append(row)
            else:
                bad.append(n)
    if bad:
        warnings.warn(f"{path}: dropped {len(bad)} unreadable line(s) (line {', '.join(map(str, bad[:5]))}"
                      f"{' ...' if len(bad) > 5 else ''}; torn by an interrupted write?); kept {len(rows)}",
                      RuntimeWarning, stacklevel=2)
    return rows
