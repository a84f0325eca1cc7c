"""A small TOML writer (the standard library reads TOML but cannot write it).

Used for resolved run configs (``retrograd train``) and best configs found by
``retrograd tune``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def _toml_key(k: str) -> str:
    return k if k and all(c.isalnum() or c in "_-" for c in k) else json.dumps(k)


def _toml_value(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x, where) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x, where)}" for k, x in v.items()
                               if x is not None) + "}"
    raise TypeError(f"cannot write {where} = {v!r} ({type(v).__name__}) as TOML")


def toml_dumps(cfg: Mapping, header: str = "") -> str:
    """TOML text of a config of tables (keys whose value is None are left out, as TOML has no null)."""
    lines = [f"# {h}" for h in header.splitlines()]

    def table(name: str, t: Mapping) -> None:
        scalars = {k: v for k, v in t.items() if not isinstance(v, Mapping) and v is not None}
        subs = {k: v for k, v in t.items() if isinstance(v, Mapping)}
        if name and (scalars or not subs):
            lines.append("" if len(lines) else None)
            lines.append(f"[{name}]")
        for k, v in scalars.items():
            lines.append(f"{_toml_key(k)} = {_toml_value(v, f'{name}.{k}' if name else k)}")
        for k, v in subs.items():
            table(f"{name}.{_toml_key(k)}" if name else _toml_key(k), v)

    table("", cfg)
    return "\n".join(x for x in lines if x is not None).lstrip("\n") + "\n"
