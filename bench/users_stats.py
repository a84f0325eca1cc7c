"""bench/users.py's arithmetic: per-contender figures, pair ratios and their spreads from the children's
records (``summarize``), the table cells (``_fmt_t``, ``_fmt_ratio``) and the steadiness table across runs
(``spread_table``). No process handling here; bench/users.py re-exports these names."""
from __future__ import annotations

import json
import statistics

def _med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def quantile(values, q: float) -> float:
    """The q-quantile (0..1) of ``values``, linear between order statistics (as numpy's default)."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    return xs[lo] if lo + 1 >= len(xs) else xs[lo] + (xs[lo + 1] - xs[lo]) * (pos - lo)


def _spread(values, prefix: str) -> dict:
    return {prefix: statistics.median(values), f"{prefix}_p10": quantile(values, 0.1),
            f"{prefix}_p90": quantile(values, 0.9), f"{prefix}_min": min(values), f"{prefix}_max": max(values)}


def pair_ratios(rec: dict, base: dict, key: str = "blocks") -> list[float]:
    """Block i of one paired session's record over block i of the other's (adjacent blocks)."""
    return [a / b for a, b in zip(rec.get(key) or [], base.get(key) or [])]


def summarize(records: dict[str, list[dict]], paired: bool = False) -> dict:
    """Per contender: time figures and memory medians; ratios of each contender other than torch
    against torch.

    Rounds (``paired`` false; each record one process): the median over rounds of the round figures
    (a round's figure: its median block) with min-max; the time ratio is the ratio of those medians,
    beside it the min-max of the per-round ratios.
    Paired (each record one session of a persistent process, blocks in pair order): the median of
    all blocks with their 10-90 % range; the time ratio is the **median of the per-pair ratios**
    (block i of one library over block i of torch, adjacent in time), with the 10-90 % range of
    those ratios; the same for CPU time (``cpu``)."""
    out: dict = {"libs": {}, "errors": {}, "method": "paired" if paired else "rounds"}
    for label, recs in records.items():
        ok = [r for r in recs if "error" not in r]
        if len(ok) < len(recs):
            out["errors"][label] = next(r["error"] for r in recs if "error" in r)
        if not ok:
            continue
        steps = [b for r in ok for b in r["blocks"]] if paired else [r["step_s"] for r in ok]
        cpus = [r.get("cpu_step_s") for r in ok if r.get("cpu_step_s") is not None]
        if paired:
            cpus = [b for r in ok for b in r.get("cpu_blocks") or []]
        lib = {"median_s": statistics.median(steps), "min_s": min(steps), "max_s": max(steps),
               "rounds": len(ok), "cpu_median_s": statistics.median(cpus) if cpus else None,
               "peak_rss_kb": _med(r.get("peak_rss_kb") for r in ok),
               "step_memory_kb": _med(r.get("step_memory_kb") for r in ok),
               "maxrss_kb": _med(r.get("maxrss_kb") for r in ok)}
        if paired:
            settles = [x for r in ok for x in r.get("settle_s") or []]
            idle = [x for r in ok for x in r.get("other_cpu_s") or [] if x is not None]
            lib.update(blocks=len(steps), p10_s=quantile(steps, 0.1), p90_s=quantile(steps, 0.9),
                       settle_median_s=_med(settles), settle_max_s=max(settles) if settles else None,
                       unsettled=sum(1 for r in ok for q in r.get("settled") or [] if not q),
                       idle_other_cpu_max_s=max(idle) if idle else None)
        out["libs"][label] = lib
    base = out["libs"].get("torch")
    out["ratios"] = {}
    for label, s in out["libs"].items():
        if label == "torch" or base is None:
            continue
        mem = {k: (s[k] / base[k] if s[k] and base[k] else None) for k in ("peak_rss_kb", "step_memory_kb",
                                                                             "maxrss_kb")}
        both = [(a, b) for a, b in zip(records[label], records["torch"]) if "error" not in a and "error" not in b]
        if paired:
            pairs = [x for a, b in both for x in pair_ratios(a, b)]
            cpu_pairs = [x for a, b in both for x in pair_ratios(a, b, "cpu_blocks")]
            if not pairs:
                continue
            q = {**_spread(pairs, "time"), "pairs": len(pairs), "time_of_medians": s["median_s"] / base["median_s"],
                 "time_sessions": [statistics.median(pair_ratios(a, b)) for a, b in both],
                 **(_spread(cpu_pairs, "cpu") if cpu_pairs else {"cpu": None})}
        else:
            pairs = [a["step_s"] / b["step_s"] for a, b in both]
            q = {"time": s["median_s"] / base["median_s"], "time_rounds_min": min(pairs) if pairs else None,
                 "time_rounds_max": max(pairs) if pairs else None,
                 "cpu": s["cpu_median_s"] / base["cpu_median_s"] if s["cpu_median_s"] and base["cpu_median_s"]
                 else None}
        out["ratios"][label] = {**q, **mem}
    cli, loop = records.get("retrograd"), records.get("retrograd_loop")
    if paired and cli and loop:  # fashion_cnn_train: the CLI against the same loop run by retrograd, pair by pair
        both = [(a, b) for a, b in zip(cli, loop) if "error" not in a and "error" not in b]
        vs = {}
        for key, name in (("blocks", "time"), ("cpu_blocks", "cpu"), ("thread_blocks", "thread")):
            rs = [x for a, b in both for x in pair_ratios(a, b, key)]
            if rs:
                vs.update(_spread(rs, name), **{f"{name}_pairs": len(rs)})
        out["cli_vs_loop"] = vs
    return out


def _fmt_t(s: dict | None) -> str:
    """Median and, in parentheses, the 10-90 % range of the blocks (paired) or the rounds' min-max."""
    if s is None:
        return "failed"
    m = s["median_s"] * 1e3
    digits = 2 if m < 10 else 1
    lo, hi = (s["p10_s"], s["p90_s"]) if "p10_s" in s else (s["min_s"], s["max_s"])
    return f"{m:.{digits}f} ms ({lo * 1e3:.{digits}f}-{hi * 1e3:.{digits}f})"


def _mib(kb) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.0f}"


def _fmt_ratio(q: dict, method: str) -> tuple[str, str]:
    """The wall-time ratio and the CPU-time ratio cells."""
    if method == "paired":
        cpu = f"{q['cpu']:.2f}x ({q['cpu_p10']:.2f}-{q['cpu_p90']:.2f})" if q.get("cpu") else "n/a"
        return f"**{q['time']:.2f}x** ({q['time_p10']:.2f}-{q['time_p90']:.2f}, {q['pairs']} pairs)", cpu
    cpu = f"{q['cpu']:.2f}x" if q.get("cpu") else "n/a"
    return f"**{q['time']:.2f}x** (rounds {q['time_rounds_min']:.2f}-{q['time_rounds_max']:.2f})", cpu


def spread_table(paths: list[str]) -> str:
    """Steadiness across repeated runs: per workload, thread setting and mode, the ratio (and CPU-time
    ratio) of each run's JSON, the 1-minute load at its children's start, and the spread of the ratios
    across runs (max / min - 1)."""
    rows: dict = {}
    for path in paths:
        with open(path) as f:
            rep = json.load(f)
        for res in rep["results"]:
            q = res["summary"]["ratios"].get("retrograd")
            if not q:
                continue
            load = _med(r.get("loadavg_1min") for recs in res["records"].values() for r in recs if "error" not in r)
            rows.setdefault((res["workload"], res["threads"], res["summary"].get("method", "rounds")), []).append(
                (q["time"], q.get("cpu"), load))
    out = ["| workload | threads | mode | ratio per run (load) | spread | CPU-time ratio per run | spread |",
           "|---|---|---|---|---|---|---|"]
    for (w, th, method), runs in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] != "rounds")):
        times, cpus = [r[0] for r in runs], [r[1] for r in runs if r[1]]
        spread = lambda v: f"{(max(v) / min(v) - 1) * 100:.0f} %" if len(v) > 1 else ""  # noqa: E731
        out.append(f"| {w} | {th} | {method} | {', '.join(f'{t:.2f} ({ld:.1f})' for t, _, ld in runs)} | "
                   f"{spread(times)} | {', '.join(f'{c:.2f}' for c in cpus)} | {spread(cpus)} |")
    return "\n".join(out) + "\n"
