"""bench/users.py, the benchmark runner that times each library in its own process: one quick run
of the tiny MLP on 1 thread (a few seconds), and its summary arithmetic on made-up records.
No timing is asserted: only the structure of what it reports and how it ran the libraries."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USERS = ROOT / "bench" / "users.py"


def _load_users():
    spec = importlib.util.spec_from_file_location("bench_users", USERS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("users")
    js, md = tmp / "out.json", tmp / "out.md"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(USERS), "--quick", "--workloads", "tiny_mlp", "--threads", "1",
                           "--json", str(js), "--markdown", str(md)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(js.read_text()), md.read_text(), proc.stdout


def test_each_library_ran_alone_in_its_own_process(quick_run):
    report, _, _ = quick_run
    (res,) = report["results"]
    assert (res["workload"], res["threads"], res["program"]) == ("tiny_mlp", "1", "bench/programs/mlp.py")
    rec = {label: recs for label, recs in res["records"].items()}
    assert sorted(rec) == ["retrograd", "torch"]
    assert len(rec["torch"]) == len(rec["retrograd"]) == 1  # --quick: one round
    t, r = rec["torch"][0], rec["retrograd"][0]
    assert len({t["pid"], r["pid"], os.getpid()}) == 3
    # retrograd's child ran the torch program with `import torch` answered by retrograd: no module of the
    # real torch was loaded there; torch's child never loaded retrograd
    assert (r["torch_modules"], r["torch_modules_first"], r["retrograd_loaded"]) == (0, [], True)
    assert t["torch_modules"] > 100 and t["retrograd_loaded"] is False
    assert r["info"]["path"] == str(ROOT / "src" / "retrograd")  # this tree's retrograd, not an installed one
    # --threads 1 reached both libraries
    assert t["info"]["threads"] == 1 and r["info"]["threads"] == 1
    assert r["info"]["version"] and t["info"]["version"].startswith("2.")


def test_timings_memory_and_losses_are_recorded(quick_run):
    report, _, _ = quick_run
    (res,) = report["results"]
    for label, (recd,) in res["records"].items():
        assert len(recd["blocks"]) == 2 and all(b > 0 for b in recd["blocks"]), label
        assert recd["step_s"] == pytest.approx(statistics.median(recd["blocks"]))
        assert recd["warmup_steps"] >= 1 and recd["steps_per_block"] >= 1
        assert recd["maxrss_kb"] > 10_000  # ru_maxrss of the child, KiB
        # cross-entropy of 2 classes at initialisation: near ln 2 in both libraries
        assert abs(recd["first_loss"] - math.log(2)) < 0.2, (label, recd["first_loss"])
    s = res["summary"]
    t, r = s["libs"]["torch"], s["libs"]["retrograd"]
    assert s["ratios"]["retrograd"]["time"] == pytest.approx(r["median_s"] / t["median_s"])
    if t["peak_rss_kb"] is not None:  # /proc/self/clear_refs writable (Linux)
        assert s["ratios"]["retrograd"]["peak_rss_kb"] == pytest.approx(r["peak_rss_kb"] / t["peak_rss_kb"])
    assert s["errors"] == {}


def test_report_names_machine_versions_and_command(quick_run):
    report, md, stdout = quick_run
    assert report["command"][:2] == ["bench/users.py", "--quick"]
    assert report["settings"]["quick"] is True and report["settings"]["rounds"] == 1
    assert report["machine"]["cpus"] >= 1 and report["machine"]["python"]
    assert len(report["commit"]) == 40 and isinstance(report["dirty"], bool)
    for lib in ("torch", "retrograd"):
        assert report["libraries"][lib]["numpy"] and report["libraries"][lib]["numpy_blas"]
    assert report["libraries"]["torch"]["blas"]
    lines = md.splitlines()
    assert lines[0].startswith("| workload | threads | PyTorch | retrograd | ratio rg/torch")
    assert lines[1].startswith("|---|")
    assert len(lines) == 3 and lines[2].startswith("| tiny_mlp | 1 | ") and "<= 0.35x" in lines[2]
    assert md == report["markdown"] and md in stdout


def test_summary_medians_round_ratios_and_failures():
    users = _load_users()
    rec = lambda s, rss: {"step_s": s, "peak_rss_kb": rss, "step_memory_kb": None, "maxrss_kb": 2 * rss}  # noqa: E731
    s = users.summarize({"torch": [rec(0.010, 300), rec(0.014, 320), rec(0.012, 310)],
                         "retrograd": [rec(0.006, 150), rec(0.009, 160), {"error": "boom"}]})
    assert s["libs"]["torch"] == {"median_s": 0.012, "min_s": 0.010, "max_s": 0.014, "rounds": 3,
                                  "peak_rss_kb": 310, "step_memory_kb": None, "maxrss_kb": 620}
    assert s["libs"]["retrograd"]["median_s"] == pytest.approx(0.0075) and s["libs"]["retrograd"]["rounds"] == 2
    q = s["ratios"]["retrograd"]
    assert q["time"] == pytest.approx(0.0075 / 0.012)
    assert (q["time_rounds_min"], q["time_rounds_max"]) == (pytest.approx(0.6), pytest.approx(9 / 14))
    assert q["peak_rss_kb"] == pytest.approx(155 / 310) and q["step_memory_kb"] is None
    assert s["errors"] == {"retrograd": "boom"}
    failed = users.summarize({"torch": [rec(0.01, 300)], "retrograd": [{"error": "AttributeError: no LSTM"}]})
    assert failed["ratios"] == {} and "no LSTM" in users.markdown(
        [{"workload": "lstm_lm", "threads": "default", "target": 1.5, "summary": failed}])


def test_bad_arguments_are_one_line_errors():
    for args, expected in ((["--workloads", "nope"], "unknown workload 'nope'"),
                           (["--threads", "0"], "--threads: expected 'default' or positive integers")):
        proc = subprocess.run([sys.executable, str(USERS), *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr


def test_fashion_train_runs_the_cli_and_the_plain_loop(tmp_path):
    """The throughput workload: `retrograd train examples/fashion_cnn.toml` in its own process (time per
    batch from its metrics.jsonl), the PyTorch loop, and the same loop run by retrograd."""
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    js = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(USERS), "--quick", "--workloads", "fashion_cnn_train", "--threads",
                           "1", "--json", str(js)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (res,) = json.loads(js.read_text())["results"]
    rec = {label: recs[0] for label, recs in res["records"].items()}
    assert sorted(rec) == ["retrograd", "retrograd_loop", "torch"]
    assert len({r["pid"] for r in rec.values()}) == 3
    cli = rec["retrograd"]
    assert cli["batches"] == 1 + 2 * 2 and len(cli["blocks"]) == 2 and cli["steps_per_block"] == 2  # --quick
    assert cli["torch_modules"] == 0 and rec["retrograd_loop"]["torch_modules"] == 0
    assert rec["torch"]["retrograd_loaded"] is False
    assert set(res["summary"]["ratios"]) == {"retrograd", "retrograd_loop"}
    assert "samples/s" in proc.stdout and "| fashion_cnn_train (same loop in retrograd) | 1 |" in proc.stdout
