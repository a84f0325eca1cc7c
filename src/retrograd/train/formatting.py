"""How numbers and result tables are written for people: log lines, run summaries and
markdown tables (the progress bar, ``retrograd train``/``evaluate``/``compare`` and sweeps)."""
from __future__ import annotations

from typing import Any

__all__ = ["format_value", "format_duration", "markdown_table", "plural"]


def plural(n: int, word: str, words: str | None = None) -> str:
    """``"1 epoch"``, ``"2 epochs"``, ``"1,000 epochs"``: ``n`` and ``word``, or its plural (``words``,
    default ``word + "s"``) unless ``n`` is 1."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def format_value(v: Any, *, fixed: bool = False) -> str:
    """A metric for a log line: a float to 4 significant digits, or with ``fixed=True`` to 4
    decimal places (4 significant digits from 1e4 on); anything else as ``str(v)``."""
    if not isinstance(v, float):
        return str(v)
    return f"{v:.4f}" if fixed and abs(v) < 1e4 else f"{v:.4g}"


def markdown_table(rows: list[dict]) -> str:
    """A markdown table of dicts (columns: the union of their keys, in order; floats to 4 significant digits)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(format_value(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def format_duration(seconds: float | None) -> str:
    """``M:SS``, or ``H:MM:SS`` from an hour on; ``?`` for None."""
    if seconds is None or seconds != seconds:
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"
