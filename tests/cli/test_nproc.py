"""Data-parallel training from the command line (issue 15): ``retrograd train/resume --nproc N`` and
``mpiexec -n N retrograd ...``, on localhost.

N ranks with a global batch B take the steps of one process with batch B (float64 to 1e-12, float32
CLI runs to 1e-6); a checkpoint written by 3 ranks resumes on 2 and ends where one process ends; rank 0
alone writes the run folder; a hung rank (SIGSTOP) or a dead one (SIGKILL) stops the others within the
bound, with the hung rank named and the last checkpoint intact; ranks that build different runs stop at
start-up with one error line. Every MPI run has a timeout, so a failure cannot hang the suite."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from cli_helpers import DIGITS_MLP

from retrograd.io.checkpoint import verify_directory
from retrograd.io.serialization import load_safetensors

ROOT = pathlib.Path(__file__).resolve().parents[2]
DRIVER = pathlib.Path(__file__).with_name("nproc_driver.py")
MPIEXEC = pathlib.Path(sys.executable).parent / "mpiexec"
if not MPIEXEC.is_file():
    MPIEXEC = shutil.which("mpiexec")

try:
    import mpi4py  # noqa: F401
except ImportError:
    mpi4py = None

pytestmark = pytest.mark.skipif(mpi4py is None or MPIEXEC is None,
                                reason="needs MPI: pip install 'retrograd[distributed]' (mpi4py and mpich)")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("RETROGRAD_NUM_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


def _mpiexec(n, *argv, timeout=120, env=None):
    cmd = [str(MPIEXEC), "-n", str(n), sys.executable, *map(str, argv)] if n > 1 else [sys.executable, *map(str, argv)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**_env(), **(env or {})})


def _cli(*argv, timeout=180):
    return subprocess.run([sys.executable, "-m", "retrograd", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=_env())


def _driver(tmp_path, n, mode, *extra, env=None):
    out = tmp_path / f"{mode}{n}.npz"
    r = _mpiexec(n, DRIVER, out, mode, *extra, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(np.load(out))


def _max_diff(a, b):
    names = [k for k in a if k.startswith("net.")]
    assert names and names == [k for k in b if k.startswith("net.")]
    return max(float(np.abs(a[k] - b[k]).max()) for k in names)


# ---------------------------------------------------------------------- the same numbers
@pytest.fixture(scope="module")
def one(tmp_path_factory):
    """The driver's run in one process: 98 samples, global batches of 16, 3 epochs."""
    out = _driver(tmp_path_factory.mktemp("one"), 1, "full")
    assert int(out["n_train"]) == 98 and int(out["steps"]) == 21
    return out


def test_3_ranks_take_the_steps_of_one_process_float64(tmp_path, one):
    """3 ranks get parts of 6, 5, 5 of each batch of 16 (weighted), and the last batch of 2 leaves one
    rank empty (it runs one sample with weight 0)."""
    many = _driver(tmp_path, 3, "full")
    assert bool(many["every_rank_equal"]), "the ranks hold different parameters"
    assert int(many["steps"]) == 21
    assert _max_diff(one, many) <= 1e-12
    np.testing.assert_allclose(many["history"], one["history"], rtol=0, atol=1e-12)


def test_resume_on_2_ranks_from_a_checkpoint_of_3_ranks_continues_exactly(tmp_path, one):
    ckpt = tmp_path / "ckpt"
    part = _driver(tmp_path, 3, "part", ckpt, 10)          # stops in epoch 2, at its 4th batch
    assert int(part["steps"]) == 10
    loader = json.loads((ckpt / "loader.json").read_text())
    assert (loader["epoch"], loader["batch"], loader["sample"], loader["global_batch"]) == (1, 3, 48, 16)
    resumed = _driver(tmp_path, 2, "resume", ckpt)
    assert bool(resumed["every_rank_equal"]) and int(resumed["steps"]) == 21
    assert _max_diff(one, resumed) <= 1e-12
    np.testing.assert_allclose(resumed["history"], one["history"], rtol=0, atol=1e-12)


def test_dropout_draws_a_stream_per_rank_that_resumes_exactly(tmp_path):
    """With dropout each rank draws its own stream (seeded by train.seed, rank, epoch and batch): 2 ranks
    differ from one process with the same dropout, yet stopping after step 10 and resuming on 2 ranks ends
    bitwise where the uninterrupted 2-rank run ends, and every rank holds the same parameters."""
    env = {"NPROC_DRIVER_DROPOUT": "0.3"}
    one_process = _driver(tmp_path, 1, "full", env=env)
    full = _driver(tmp_path, 2, "full", env=env)
    assert bool(full["every_rank_equal"]) and int(full["steps"]) == 21
    assert _max_diff(one_process, full) > 1e-3
    ckpt = tmp_path / "ckpt"
    _driver(tmp_path, 2, "part", ckpt, 10, env=env)
    resumed = _driver(tmp_path, 2, "resume", ckpt, env=env)
    assert bool(resumed["every_rank_equal"]) and int(resumed["steps"]) == 21
    for k in full:
        if k.startswith("net."):
            assert full[k].tobytes() == resumed[k].tobytes(), k


# ---------------------------------------------------------------------- the command line
SMALL = DIGITS_MLP.replace("batch_size = 32", "batch_size = 32\ntrain_samples = 320")  # 10 steps an epoch


def _config(tmp_path, name="c", text=SMALL):
    path = tmp_path / f"{name}.toml"
    path.write_text(text + f'\n[run]\ndir = "{(tmp_path / "runs").as_posix()}"\n')
    return path


def _files(run):
    """The run folder's files, TensorBoard's event file (named by host and time) by its folder."""
    return sorted(str(p.relative_to(run)) if p.parent.name != "tb" else "tb/<events>"
                  for p in run.rglob("*") if p.is_file())


def _params(run):
    return load_safetensors(run / "checkpoints" / "last" / "model.safetensors")


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    """The small digits config and its run in one process (runs/one)."""
    tmp = tmp_path_factory.mktemp("cli")
    cfg = _config(tmp)
    r = _cli("train", cfg, "--quiet", "--set", "run.name=one")
    assert r.returncode == 0, r.stderr
    return cfg, tmp / "runs" / "one"


def test_nproc_2_trains_as_one_process_and_rank_0_alone_writes(one_run):
    cfg, one = one_run
    two = _cli("train", cfg, "--quiet", "--nproc", "2", "--set", "run.name=two")
    assert two.returncode == 0, two.stderr
    assert "effective batch 32 = 2 x 16 per rank" in two.stdout
    assert two.stdout.count("run folder:") == 1 and two.stdout.count("final:") == 1  # rank 0 speaks alone
    runs = one.parent
    assert sorted(p.name for p in runs.iterdir() if p.name in ("one", "two") or "two" in p.name) == ["one", "two"]
    assert _files(runs / "two") == _files(one)
    a, b = _params(one), _params(runs / "two")
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-6)
    s1, s2 = (json.loads((runs / n / "summary.json").read_text()) for n in ("one", "two"))
    for k, v in s1["final"].items():
        assert abs(s2["final"][k] - v) < 1e-5, k
    rows = [json.loads(line) for line in (runs / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len((one / "metrics.jsonl").read_text().splitlines())  # one writer


def test_resume_with_nproc_2_from_a_run_of_3_ranks_ends_as_one_process(one_run):
    cfg, one = one_run
    three = _cli("train", cfg, "--quiet", "--nproc", "3", "--set", "run.name=three", "--set", "train.epochs=1")
    assert three.returncode == 0, three.stderr
    assert "effective batch 32 = 11 + 11 + 10 per rank" in three.stdout
    run = one.parent / "three"
    resumed = _cli("resume", run, "--quiet", "--nproc", "2", "--epochs", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "effective batch 32 = 2 x 16 per rank" in resumed.stdout
    a, b = _params(one), _params(run)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-6)


# ---------------------------------------------------------------------- faults
def _rank_pids(marker):
    """{rank: pid} of the processes whose command line holds ``marker`` and whose environment names a rank."""
    out = {}
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            env = dict(kv.split("=", 1) for kv in (proc / "environ").read_bytes().decode(errors="replace").split("\0")
                       if "=" in kv)
        except OSError:
            continue
        rank = env.get("PMI_RANK", env.get("OMPI_COMM_WORLD_RANK"))
        if marker in cmd and rank is not None and "-m retrograd" in cmd:
            out[int(rank)] = int(proc.name)
    return out


def _start_long_run(tmp_path, name, nproc, timeout_s):
    cfg = _config(tmp_path, name)
    proc = subprocess.Popen([sys.executable, "-m", "retrograd", "train", str(cfg), "--quiet", "--nproc", str(nproc),
                             "--rank-timeout", str(timeout_s), "--set", "train.epochs=100000", "--set",
                             "train.checkpoint_every_n_steps=5", "--set", "train.save_best=false"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    last = tmp_path / "runs" / name / "checkpoints" / "last"
    deadline = time.monotonic() + 120
    while not (last / "manifest.json").is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not reach its first checkpoint"
        time.sleep(0.2)
    time.sleep(0.5)
    pids = _rank_pids(str(cfg))
    assert sorted(pids) == list(range(nproc)), pids
    return proc, pids, last


def _finish(proc, limit):
    t0 = time.monotonic()
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the ranks did not stop within {limit} s: {err[-2000:]}")
    return proc.returncode, out, err, time.monotonic() - t0


def test_a_hung_rank_is_named_and_every_rank_stops_within_the_bound(tmp_path):
    proc, pids, last = _start_long_run(tmp_path, "hung", 3, 3)
    os.kill(pids[1], signal.SIGSTOP)
    try:
        rc, _, err, took = _finish(proc, 60)
    finally:
        for pid in pids.values():  # whatever happened, nothing stays stopped
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert rc == 4, err[-2000:]
    assert took < 3 + 1 + 2 + 15, took  # the limit, the question to the others, the lowest rank's wait, slack
    line = next(ln for ln in err.splitlines() if ln.startswith("retrograd train: error: rank "))
    assert "rank 1 did not answer (hung, stopped or dead)" in line and "train.rank_timeout = 3 s" in line, err
    verify_directory(last)  # the last complete checkpoint is intact


def test_a_killed_rank_stops_the_others_and_the_checkpoint_stays(tmp_path):
    proc, pids, last = _start_long_run(tmp_path, "killed", 2, 60)
    os.kill(pids[1], signal.SIGKILL)
    rc, out, err, took = _finish(proc, 30)
    assert rc != 0 and took < 30, (rc, took)
    assert f"PID {pids[1]} " in out  # MPI's launcher (MPICH's Hydra) names the process that died
    line = err.splitlines()[-1]
    assert line.startswith("retrograd train: error: ") and f"rank 1 (pid {pids[1]})" in line, err[-2000:]
    verify_directory(last)


def test_ranks_that_build_different_runs_stop_at_start_up(tmp_path):
    a = _config(tmp_path, "a")
    b = _config(tmp_path, "b", text=SMALL.replace("sizes = [64, 64, 10]", "sizes = [64, 32, 10]"))
    r = subprocess.run([str(MPIEXEC), "-n", "1", sys.executable, "-m", "retrograd", "train", str(a), "--quiet", ":",
                        "-n", "1", sys.executable, "-m", "retrograd", "train", str(b), "--quiet"],
                       capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("retrograd train: error: the ranks do not build the same run: rank 1 differs from "
                               "rank 0 in the resolved config (rank 0 has 'sizes = [64, 64, 10]', rank 1 'sizes = [64, 32, 10]')"), lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run folder made


# ---------------------------------------------------------------------- BatchNorm, NaN on one rank, tune
BN_CNN = """
[model]
name = "cnn"
channels = [4]
hidden = []
batchnorm = true

[data]
name = "digits"
images = true
batch_size = 30
train_samples = 92

[optim]
name = "momentum"
lr = 0.05

[train]
epochs = 2
seed = 0
progress = false
metrics = ["accuracy", "f1"]
"""


def _all_close(a, b, tol):
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a) <= tol


def test_batchnorm_model_on_3_ranks_equals_one_process_and_without_sync_batchnorm_it_does_not(tmp_path):
    """A float32 CNN with BatchNorm (SyncBatchNorm on the ranks: statistics over the global batch), SGD
    momentum, 2 epochs of 4 steps; batches of 30 = 10 + 10 + 10, the last of 2 = 1 + 1 + 0 (rank 2 runs a
    stand-in sample that adds nothing to the statistics). Parameters and running statistics equal one
    process to 1e-6, so do the validation and test metrics (evaluated split over the ranks)."""
    cfg = _config(tmp_path, "bn", BN_CNN)
    runs = tmp_path / "runs"
    one = _cli("train", cfg, "--quiet", "--set", "run.name=one")
    assert one.returncode == 0, one.stderr
    three = _cli("train", cfg, "--quiet", "--nproc", "3", "--set", "run.name=three")
    assert three.returncode == 0, three.stderr
    assert "effective batch 30 = 3 x 10 per rank" in three.stdout
    a, b = _params(runs / "one"), _params(runs / "three")
    assert "net.1.running_var" in a and int(a["net.1.num_batches_tracked"]) == 8
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-6, err_msg=k)
    s1, s3 = (json.loads((runs / n / "summary.json").read_text()) for n in ("one", "three"))
    for part in ("final", "test"):
        assert sorted(s1[part]) == sorted(s3[part])
        for k, v in s1[part].items():
            assert abs(s3[part][k] - v) < 1e-6, (part, k, s3[part][k], v)
    plain = _cli("train", cfg, "--quiet", "--nproc", "3", "--set", "run.name=plain",
                 "--set", "train.sync_batchnorm=false")
    assert plain.returncode == 0, plain.stderr
    assert not _all_close(a, _params(runs / "plain"), 1e-4)  # each rank normalising its own part differs


SPIKY = ("import retrograd as rg\nimport retrograd.distributed as dist\nimport retrograd.nn as nn\n\n"
         "class Spiky(nn.Module):\n"
         "    \"\"\"From its 3rd training forward on, on rank 1 only: a finite output whose weight gradient is NaN.\"\"\"\n"
         "    def __init__(self):\n"
         "        super().__init__()\n"
         "        self.body = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))\n"
         "        self.calls = 0\n\n"
         "    def forward(self, x):\n"
         "        out = self.body(x)\n"
         "        if self.training:\n"
         "            self.calls += 1\n"
         "            if self.calls >= 3 and dist.is_initialized() and dist.get_rank() == 1:\n"
         "                zero = self.body[0].weight.sum() * 0.0\n"
         "                out = out + rg.sqrt(zero) * 0.0  # value 0; gradient 0 * inf = nan\n"
         "        return out\n")


def test_a_nan_gradient_on_one_rank_stops_every_rank_at_once_and_names_it(tmp_path):
    (tmp_path / "m.py").write_text(SPIKY)
    cfg = _config(tmp_path, "nan", SMALL.replace('name = "mlp"\nsizes = [64, 64, 10]', 'name = "m.py:Spiky"'))
    t0 = time.monotonic()
    r = _cli("train", cfg, "--quiet", "--nproc", "2", "--rank-timeout", "60", "--set", "run.name=spiky")
    took = time.monotonic() - t0
    assert r.returncode == 3, r.stderr[-3000:]
    assert took < 50, took  # well under the 60 s rank timeout: no rank waited for another
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("retrograd train: error: training failed: NaNGuard: non-finite values on rank 1 of 2 "
                           "at epoch 0, batch 2 (optimizer step 2): gradient of body.0.weight (16, 64) has nan"), line
    report = (tmp_path / "runs" / "spiky" / "nan_report.txt").read_text()
    assert "rank 0: Re-running the batch under rg.detect_anomaly() produced no NaN/inf" in report
    assert "rank 1: First op producing NaN/inf" in report and "zero = self.body[0].weight.sum() * 0.0" in report, report
    summary = json.loads((tmp_path / "runs" / "spiky" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["stopped_at"] == {"epoch": 0, "batch": 2, "step": 2}
    assert r.stderr.count("NaNGuard: non-finite values") == 2  # rank 0's report and the error line, once each


def test_tune_under_mpiexec_is_refused_with_what_to_run_instead(tmp_path):
    cfg = _config(tmp_path, "t", SMALL + '\n[search]\nn_trials = 2\n"optim.lr" = {log_uniform = [1e-4, 1e-1]}\n')
    r = _mpiexec(2, "-m", "retrograd", "tune", cfg, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("retrograd tune: error: started by mpiexec as 2 ranks; tune "
                                                   "does not run under mpiexec"), r.stderr
    assert "--workers N" in lines[0] and "--storage postgresql://" in lines[0] and "--resume" in lines[0]
    assert not (tmp_path / "runs").exists()  # no study folder made
