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
import time
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
    assert res["method"] == "paired" and res["summary"]["method"] == "paired"
    for label, (recd,) in res["records"].items():
        # --quick: one session of 2 pairs of blocks; wall and CPU time per block, the settle wait after each
        # block and the idle child's CPU time during the other's block
        assert len(recd["blocks"]) == len(recd["cpu_blocks"]) == 2 and all(b > 0 for b in recd["blocks"]), label
        assert all(c > 0 for c in recd["cpu_blocks"]), label
        assert recd["step_s"] == pytest.approx(statistics.median(recd["blocks"]))
        assert len(recd["settle_s"]) == len(recd["settled"]) == len(recd["other_cpu_s"]) == 2
        assert all(w >= report["settings"]["settle_min_s"] for w in recd["settle_s"])
        assert recd["warmup_steps"] >= 1 and recd["steps_per_block"] >= 1 and recd["pre_steps"] == 1
        assert recd["maxrss_kb"] > 10_000  # ru_maxrss of the child, KiB
        # cross-entropy of 2 classes at initialisation: near ln 2 in both libraries
        assert abs(recd["first_loss"] - math.log(2)) < 0.2, (label, recd["first_loss"])
    s = res["summary"]
    t, r = s["libs"]["torch"], s["libs"]["retrograd"]
    (tr,), (rr,) = res["records"]["torch"], res["records"]["retrograd"]
    q = s["ratios"]["retrograd"]
    assert q["pairs"] == 2
    assert q["time"] == pytest.approx(statistics.median([a / b for a, b in zip(rr["blocks"], tr["blocks"])]))
    assert q["cpu"] == pytest.approx(statistics.median([a / b for a, b in zip(rr["cpu_blocks"], tr["cpu_blocks"])]))
    assert q["time_of_medians"] == pytest.approx(r["median_s"] / t["median_s"])
    if t["peak_rss_kb"] is not None:  # /proc/self/clear_refs writable (Linux)
        assert q["peak_rss_kb"] == pytest.approx(r["peak_rss_kb"] / t["peak_rss_kb"])
    assert s["errors"] == {}


def test_rounds_mode_still_runs():
    """--mode rounds: the former method, a fresh process per library per round."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(USERS), "--quick", "--mode", "rounds", "--workloads", "opchain",
                           "--threads", "1", "--json", os.devnull], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (row,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("| opchain | 1 |")]
    assert "(rounds " in row and "pairs" not in row and "(rounds)" in proc.stdout


def test_report_names_machine_versions_and_command(quick_run):
    report, md, stdout = quick_run
    assert report["command"][:2] == ["bench/users.py", "--quick"]
    assert report["settings"]["quick"] is True and report["settings"]["rounds"] == 1
    assert (report["settings"]["mode"], report["settings"]["pairs"]) == ("paired", 2)
    assert report["machine"]["cpus"] >= 1 and report["machine"]["python"]
    assert len(report["commit"]) == 40 and isinstance(report["dirty"], bool)
    for lib in ("torch", "retrograd"):
        assert report["libraries"][lib]["numpy"] and report["libraries"][lib]["numpy_blas"]
    assert report["libraries"]["torch"]["blas"]
    lines = md.splitlines()
    assert lines[0].startswith("| workload | threads | PyTorch | retrograd | ratio rg/torch | CPU-time ratio |")
    assert lines[1].startswith("|---|")
    assert len(lines) == 3 and lines[2].startswith("| tiny_mlp | 1 | ") and "<= 0.35x" in lines[2]
    assert ", 2 pairs)" in lines[2]
    assert md == report["markdown"] and md in stdout


def test_summary_medians_round_ratios_and_failures():
    users = _load_users()
    rec = lambda s, rss: {"step_s": s, "cpu_step_s": 2 * s, "peak_rss_kb": rss, "step_memory_kb": None,  # noqa: E731
                          "maxrss_kb": 2 * rss}
    s = users.summarize({"torch": [rec(0.010, 300), rec(0.014, 320), rec(0.012, 310)],
                         "retrograd": [rec(0.006, 150), rec(0.009, 160), {"error": "boom"}]})
    assert s["method"] == "rounds"
    assert s["libs"]["torch"] == {"median_s": 0.012, "min_s": 0.010, "max_s": 0.014, "rounds": 3,
                                  "cpu_median_s": 0.024, "peak_rss_kb": 310, "step_memory_kb": None,
                                  "maxrss_kb": 620}
    assert s["libs"]["retrograd"]["median_s"] == pytest.approx(0.0075) and s["libs"]["retrograd"]["rounds"] == 2
    q = s["ratios"]["retrograd"]
    assert q["time"] == pytest.approx(0.0075 / 0.012)
    assert (q["time_rounds_min"], q["time_rounds_max"]) == (pytest.approx(0.6), pytest.approx(9 / 14))
    assert q["cpu"] == pytest.approx(0.015 / 0.024)  # the ratio of the CPU-time medians
    assert q["peak_rss_kb"] == pytest.approx(155 / 310) and q["step_memory_kb"] is None
    assert s["errors"] == {"retrograd": "boom"}
    failed = users.summarize({"torch": [rec(0.01, 300)], "retrograd": [{"error": "AttributeError: no LSTM"}]})
    assert failed["ratios"] == {} and "no LSTM" in users.markdown(
        [{"workload": "lstm_lm", "threads": "default", "target": 1.5, "summary": failed}])


def test_paired_summary_median_of_pair_ratios():
    """Paired mode: the ratio is the median of block i over torch's block i (adjacent in time), pooled
    over sessions, with its 10-90 % range; the same for CPU time; a library's time is the median block."""
    users = _load_users()
    rec = lambda blocks, cpu, rss: {"blocks": blocks, "cpu_blocks": cpu, "step_s": statistics.median(blocks),  # noqa: E731
                                    "peak_rss_kb": rss, "step_memory_kb": 10, "maxrss_kb": 2 * rss,
                                    "settle_s": [0.06] * len(blocks), "settled": [True] * len(blocks),
                                    "other_cpu_s": [0.0] * len(blocks)}
    # torch drifts from 10 to 20 ms over the run; retrograd stays at half of torch's block beside it, but for
    # the one pair a disturbance hit (0.9): the ratio of medians would say 0.5 only by luck, the pairs say it
    torch = [rec([0.010, 0.012, 0.014], [0.020, 0.024, 0.028], 300), rec([0.016, 0.018, 0.020], [0.02] * 3, 320)]
    rg = [rec([0.005, 0.006, 0.0126], [0.010, 0.012, 0.014], 150), rec([0.008, 0.009, 0.010], [0.01] * 3, 170)]
    s = users.summarize({"torch": torch, "retrograd": rg}, paired=True)
    q = s["ratios"]["retrograd"]
    pairs = [0.5, 0.5, 0.9, 0.5, 0.5, 0.5]
    assert q["pairs"] == 6 and q["time"] == pytest.approx(0.5)
    assert q["time_p10"] == pytest.approx(0.5) and q["time_p90"] == pytest.approx(0.7)  # 0.5 + 0.5 * (0.9 - 0.5)
    assert (q["time_min"], q["time_max"]) == (pytest.approx(0.5), pytest.approx(0.9))
    assert q["time_sessions"] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert q["cpu"] == pytest.approx(0.5) and q["cpu_p90"] == pytest.approx(0.5)
    assert users.quantile(pairs, 0.9) == pytest.approx(0.7) and users.quantile([3.0], 0.1) == 3.0
    t = s["libs"]["torch"]
    assert t["median_s"] == pytest.approx(0.015) and t["blocks"] == 6 and t["rounds"] == 2
    assert (t["p10_s"], t["p90_s"]) == (pytest.approx(0.011), pytest.approx(0.019))
    assert t["cpu_median_s"] == pytest.approx(0.02) and t["peak_rss_kb"] == 310 and t["unsettled"] == 0
    assert q["time_of_medians"] == pytest.approx(0.0085 / 0.015) and q["peak_rss_kb"] == pytest.approx(160 / 310)
    assert "**0.50x** (0.50-0.70, 6 pairs)" in users.markdown(
        [{"workload": "cnn", "threads": "1", "target": 1.0, "summary": s}])
    # blocks pair by position: a session with one block fewer pairs only what it has
    short = users.summarize({"torch": [rec([0.01, 0.02], [0.01, 0.02], 1)], "retrograd": [rec([0.004], [0.005], 1)]},
                            paired=True)
    assert short["ratios"]["retrograd"]["pairs"] == 1 and short["ratios"]["retrograd"]["time"] == pytest.approx(0.4)


def test_settle_waits_until_the_last_process_stops_using_the_cpu():
    """After a block the parent waits until the child's threads stop spinning: here a child that burns
    CPU for 0.3 s and then sleeps, against one that sleeps at once."""
    users = _load_users()
    opts = users.parse_args(["--settle-max-s", "5"])  # room for a loaded machine
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(30)"
    for code, busy in ((burn, True), ("import time; time.sleep(30)", False)):
        proc = subprocess.Popen([sys.executable, "-c", code])
        try:
            time.sleep(0.0 if busy else 1.0)  # the idle one: past its start-up
            waited, quiet = users.settle(proc.pid, opts)
        finally:
            proc.kill()
            proc.wait()
        assert quiet, code
        assert (waited >= 0.25) if busy else (waited < 0.25), (code, waited)


def test_spread_across_runs(tmp_path):
    """--spread: each run's ratio per workload, thread setting and mode, and max / min - 1 across runs."""
    def run(ratio, cpu, load, method):
        summary = {"method": method, "ratios": {"retrograd": {"time": ratio, "cpu": cpu}}}
        return {"results": [{"workload": "cnn", "threads": "1", "summary": summary,
                             "records": {"torch": [{"loadavg_1min": load}], "retrograd": [{"loadavg_1min": load}]}}]}
    files = []
    for i, args in enumerate([(0.60, 0.50, 1.0, "rounds"), (0.75, 0.55, 2.0, "rounds"), (0.64, 0.52, 1.5, "paired"),
                              (0.66, 0.52, 2.5, "paired")]):
        files.append(tmp_path / f"{i}.json")
        files[-1].write_text(json.dumps(run(*args)))
    proc = subprocess.run([sys.executable, str(USERS), "--spread", *map(str, files)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[2] == "| cnn | 1 | rounds | 0.60 (1.0), 0.75 (2.0) | 25 % | 0.50, 0.55 | 10 % |"
    assert lines[3] == "| cnn | 1 | paired | 0.64 (1.5), 0.66 (2.5) | 3 % | 0.52, 0.52 | 0 % |"


def test_bad_arguments_are_one_line_errors():
    for args, expected in ((["--workloads", "nope"], "unknown workload 'nope'"),
                           (["--threads", "0"], "--threads: expected 'default' or positive integers")):
        proc = subprocess.run([sys.executable, str(USERS), *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr


def test_fashion_train_runs_the_cli_and_the_plain_loop(tmp_path):
    """The throughput workload: `retrograd train examples/fashion_cnn.toml` in its own process, the
    PyTorch loop, and the same loop run by retrograd. Paired (the default): the CLI's child pauses
    its training between blocks and its blocks pair with the loops'; each block's time per batch
    comes from the run's metrics.jsonl stamps."""
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    js = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(USERS), "--quick", "--workloads", "fashion_cnn_train", "--threads",
                           "1", "--json", str(js)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (res,) = json.loads(js.read_text())["results"]
    assert res["method"] == "paired" and "2 pairs" in proc.stdout
    rec = {label: recs[0] for label, recs in res["records"].items()}
    assert sorted(rec) == ["retrograd", "retrograd_loop", "torch"]
    assert len({r["pid"] for r in rec.values()}) == 3
    cli = rec["retrograd"]
    assert cli["cli"] is True and cli["exit_code"] == 0
    # --quick: 1 warm-up batch, then 2 blocks of 1 untimed + 2 timed batches; "end" stopped it there
    assert cli["warmup_steps"] == 1 and cli["batches"] == 1 + 2 * (1 + 2) and cli["steps_per_block"] == 2
    for r in rec.values():
        assert len(r["blocks"]) == len(r["cpu_blocks"]) == len(r["thread_blocks"]) == 2
        assert all(b > 0 for b in r["blocks"] + r["cpu_blocks"] + r["thread_blocks"])
    # the metrics.jsonl stamps and the callback's clock time the same batches
    assert all(abs(a - b) <= 0.25 * b for a, b in zip(cli["blocks"], cli["callback_blocks"]))
    assert cli["torch_modules"] == 0 and rec["retrograd_loop"]["torch_modules"] == 0
    assert rec["torch"]["retrograd_loaded"] is False
    assert set(res["summary"]["ratios"]) == {"retrograd", "retrograd_loop"}
    vs = res["summary"]["cli_vs_loop"]
    assert vs["time_pairs"] == vs["cpu_pairs"] == vs["thread_pairs"] == 2
    assert vs["time"] == pytest.approx(statistics.median(a / b for a, b in zip(
        cli["blocks"], rec["retrograd_loop"]["blocks"])))
    assert "samples/s" in proc.stdout and "| fashion_cnn_train (same loop in retrograd) | 1 |" in proc.stdout
    assert "against the same loop in retrograd" in proc.stdout


def test_fashion_train_in_rounds_runs_the_cli_to_completion(tmp_path):
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    js = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(USERS), "--quick", "--mode", "rounds", "--workloads",
                           "fashion_cnn_train", "--threads", "1", "--json", str(js)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (res,) = json.loads(js.read_text())["results"]
    cli = res["records"]["retrograd"][0]
    assert res["method"] == "rounds" and "(rounds " in proc.stdout
    assert cli["batches"] == 1 + 2 * 2 and len(cli["blocks"]) == 2 and cli["steps_per_block"] == 2  # --quick
