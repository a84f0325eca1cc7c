"""The README's result tables, from recorded runs.

    python bench/readme_results.py run [NAME ...]   # run the README's examples, record bench/readme_results.json
    python bench/readme_results.py render           # rewrite the README's tables from the JSON
    python bench/readme_results.py list             # the recorded runs: name, command, commit, when

Each record keeps what the README states and how it was made: the command, the commit (``+dirty`` when
the work tree had changes), the machine (CPU, cores, load average before and after: wall times on a
loaded machine are longer than the run's own steps/s suggest) and the wall time. ``render`` replaces the
text between ``<!-- readme-results:KEY -->`` and ``<!-- /readme-results:KEY -->`` in README.md;
``tests/test_readme_results.py`` checks that the README says what the JSON says, without training.
Runs go to a temporary folder (removed afterwards); a tune record also copies its study's table, best
config and plots to ``examples/<name>/`` (the README shows those plots).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "readme_results.json"
README = ROOT / "README.md"

# name -> the command the README shows (run as ``python -m retrograd ...`` with run.dir in a temporary folder);
# "unrecorded": what the README said before runs were recorded (no commit known), shown until one is
RUNS = {
    "fashion_mlp": {"kind": "train", "argv": ["train", "examples/fashion_mlp.toml"]},
    "fashion_cnn": {"kind": "train", "argv": ["train", "examples/fashion_cnn.toml"],
                    "unrecorded": "90.2 % test accuracy in 4.7 min"},
    "shakespeare_gpt": {"kind": "train", "argv": ["train", "examples/shakespeare_gpt.toml"],
                        "unrecorded": "validation loss 1.72 nats/char in 6 min"},
    "tune_fashion_mlp": {"kind": "tune", "argv": ["tune", "examples/tune_fashion_mlp.toml"]},
    "vanishing_gradients_sigmoid": {"kind": "train", "argv": ["train", "examples/vanishing_gradients_sigmoid.toml"],
                                    "unrecorded": "~6e-8"},
}
EXAMPLE_ROWS = ("fashion_mlp", "fashion_cnn", "shakespeare_gpt")


# ---------------------------------------------------------------------- recording
def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.rstrip()  # porcelain lines start with a space


def commit() -> str:
    """HEAD, ``+dirty`` when tracked files other than this script's outputs (README.md, the JSON) differ."""
    changed = [line[3:] for line in _git("status", "--porcelain", "--untracked-files=no").splitlines()]
    dirty = any(f not in ("README.md", "bench/readme_results.json") for f in changed)
    return _git("rev-parse", "--short=10", "HEAD") + ("+dirty" if dirty else "")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy
    return {"cpu": cpu, "cores": os.cpu_count(), "system": platform.platform(),
            "python": platform.python_version(), "numpy": numpy.__version__}


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def record(name: str) -> dict:
    spec = RUNS[name]
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f"readme_results_{name}_"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    argv = [*spec["argv"], "--set", f"run.dir={tmp.as_posix()}"] + (["--quiet"] if spec["kind"] == "train" else [])
    load_before, started, made_at = _load(), datetime.datetime.now(datetime.timezone.utc), commit()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "retrograd", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    try:
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: `retrograd {' '.join(argv)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        out = {"command": "retrograd " + shlex.join(spec["argv"]), "commit": made_at, "machine": machine(),
               "started": started.isoformat(timespec="seconds"), "load_before": load_before, "load_after": _load(),
               "wall_s": round(wall, 1)}
        if spec["kind"] == "train":
            stem = pathlib.Path(spec["argv"][1]).stem
            s = json.loads((tmp / stem / "summary.json").read_text())
            out["results"] = {k: s[k] for k in ("epochs", "parameters", "train_time_s", "samples_per_sec")}
            out["results"].update(s["final"])
            out["results"].update(s["test"])
            report = tmp / stem / "gradient_flow.txt"
            if report.is_file():  # GradientFlow's verdict on the first layer's gradient, if it has one
                m = re.search(r"layer 1 \(.*?\) gradient is (\S+) of layer", report.read_text())
                out["results"]["first_layer_gradient_ratio"] = float(m.group(1)) if m else None
        else:
            out["results"] = _tune_results(proc.stdout, tmp, name)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tune_results(stdout: str, tmp: pathlib.Path, name: str) -> dict:
    lines = stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("number"))
    last = next(i for i, line in enumerate(lines) if line.startswith("best: "))
    study = tmp / f"{name}-tune"
    target = ROOT / "examples" / name
    target.mkdir(exist_ok=True)
    copied = []
    for f in sorted(study.iterdir()):
        if f.suffix in (".csv", ".png") or f.name.endswith("-best.toml"):
            text = f.read_text().replace(str(tmp), "runs") if f.suffix == ".toml" else None
            (target / f.name).write_text(text) if text is not None else shutil.copyfile(f, target / f.name)
            copied.append(f"examples/{name}/{f.name}")
    stale = target / "best_config.toml"  # the name before best configs were named after their study
    if stale.exists():
        stale.unlink()
    best = next(line for line in lines if line.startswith("best: "))
    m = re.match(r"best: trial (\d+), (\w+) ([0-9.e-]+)", best)
    return {"table": "\n".join(lines[first:last + 1]), "best_trial": int(m.group(1)), "metric": m.group(2),
            "best_value": float(m.group(3)), "files": copied}


def save(records: dict) -> None:
    RESULTS.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


# ---------------------------------------------------------------------- rendering
def _minutes(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def _machine(r: dict) -> str:
    load = r.get("load_before"), r.get("load_after")
    loaded = "" if load[0] is None else f", load average {load[0]:g} -> {load[1]:g}"
    return f"{r['machine']['cores']} cores ({r['machine']['cpu']}{loaded})"


def _result(r: dict) -> str:
    res = r["results"]
    if "test_accuracy" in res:
        return f"{100 * res['test_accuracy']:.2f} % test accuracy"
    return f"validation loss {res['val_loss']:.3f} nats/char"


def render_examples(records: dict) -> str:
    rows = ["| example | result | epochs | wall time | samples/s | command | commit | machine |",
            "|---|---|---|---|---|---|---|---|"]
    for name in EXAMPLE_ROWS:
        r = records.get(name)
        if r is None:
            said = RUNS[name].get("unrecorded")
            rows.append(f"| `{name}.toml` | not recorded yet" + (f" (an earlier README said {said}, commit unknown)"
                                                                 if said else "")
                        + f": `python bench/readme_results.py run {name}` | | | | | | |")
            continue
        res = r["results"]
        rows.append(f"| `{name}.toml` | {_result(r)} | {res['epochs']} | {_minutes(r['wall_s'])} | "
                    f"{res['samples_per_sec']:,.0f} | `{r['command']}` | `{r['commit']}` | {_machine(r)} |")
    return "\n".join(rows)


def render_tune(records: dict) -> str:
    r = records.get("tune_fashion_mlp")
    if r is None:
        return "(not recorded yet: `python bench/readme_results.py run tune_fashion_mlp`)"
    return (f"`{r['command']}` at commit `{r['commit']}`, {_minutes(r['wall_s'])} wall time on "
            f"{_machine(r)}, {r['started'][:10]}:\n\n```\n{r['results']['table']}\n```")


def render_quickstart(records: dict) -> str:
    r = records.get("fashion_mlp")
    return "about 89 % test accuracy" if r is None else _result(r)


def render_vanishing(records: dict) -> str:
    r = records.get("vanishing_gradients_sigmoid")
    if r is None or r["results"].get("first_layer_gradient_ratio") is None:
        return f"{RUNS['vanishing_gradients_sigmoid']['unrecorded']} (not recorded yet)"
    return (f"~{r['results']['first_layer_gradient_ratio']:.1e} (`{r['command']}`, commit `{r['commit']}`, "
            f"seed 0)")


BLOCKS = {"quickstart": render_quickstart, "examples": render_examples, "tune": render_tune,
          "vanishing": render_vanishing}
_BLOCK = re.compile(r"(<!-- readme-results:(\w+) -->)(.*?)(<!-- /readme-results:\2 -->)", re.S)


def readme_blocks(text: str) -> dict[str, str]:
    """The text between each pair of markers in ``text``, by key."""
    return {m.group(2): m.group(3) for m in _BLOCK.finditer(text)}


def rendered(records: dict, inline: set[str]) -> dict[str, str]:
    """What each block should hold: inline blocks (inside a sentence) as is, others on lines of their own."""
    return {k: (f(records) if k in inline else f"\n{f(records)}\n") for k, f in BLOCKS.items()}


def render(text: str, records: dict) -> str:
    inline = {k for k, body in readme_blocks(text).items() if "\n" not in body}
    want = rendered(records, inline)
    missing = sorted(set(BLOCKS) - set(readme_blocks(text)))
    if missing:
        raise SystemExit(f"README.md has no markers for: {', '.join(missing)}")
    return _BLOCK.sub(lambda m: m.group(1) + want[m.group(2)] + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run and record (all the README's runs, or the ones named)")
    run.add_argument("names", nargs="*", metavar="NAME", help=", ".join(RUNS) + " (default: all)")
    sub.add_parser("render", help="rewrite README.md's tables from bench/readme_results.json")
    sub.add_parser("list", help="print the recorded runs")
    args = ap.parse_args(argv)
    records = load()
    if args.cmd == "run":
        unknown = [n for n in args.names if n not in RUNS]
        if unknown:
            ap.error(f"unknown run {unknown[0]!r}; one of: {', '.join(RUNS)}")
        for name in args.names or list(RUNS):
            print(f"== {name}: retrograd {' '.join(RUNS[name]['argv'])}", flush=True)
            records[name] = record(name)
            save(records)
            print(f"   {_result(records[name]) if 'table' not in records[name]['results'] else 'table recorded'}"
                  f", {_minutes(records[name]['wall_s'])}", flush=True)
        print(f"recorded in {RESULTS}; write them into the README with: python bench/readme_results.py render")
        return 0
    if args.cmd == "list":
        for name, r in records.items():
            print(f"{name}: `{r['command']}` at {r['commit']} on {r['started']}, {_minutes(r['wall_s'])}")
        return 0
    README.write_text(render(README.read_text(), records))
    print(f"rendered {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
