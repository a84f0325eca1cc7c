"""Every subcommand driven through its error paths (issue 13, "Done when": every CLI error path prints one
`error:` line and exits non-zero, with no traceback): missing and malformed files, wrong folders, bad flag
values, unreadable checkpoints, missing optional packages. Each case must exit 2 with exactly one line
`retrograd CMD: error: ...` on stderr (after argparse's usage for a usage error) and nothing else.

Paths covered elsewhere are not repeated: bad config keys and --set (test_config_errors.py, test_config_ranges.py),
a corrupted checkpoint on resume and data not installed for train (test_failures.py), tune without Optuna,
plot on an empty folder and generate into a closed pipe (test_journey.py)."""
import contextlib
import io
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import DIGITS_MLP, TINY_GPT

import retrograd as rg
from retrograd import cli


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One finished digits run, one tiny GPT run, and the broken files and folders the cases point at."""
    root = tmp_path_factory.mktemp("sweep")
    runs = root / "runs"
    for name, text in (("digits", DIGITS_MLP.replace("epochs = 2", "epochs = 1")), ("gpt", TINY_GPT)):
        (root / f"{name}.toml").write_text(text + f'\n[run]\ndir = "{runs.as_posix()}"\n')
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            assert cli.main(["train", str(root / f"{name}.toml"), "--quiet"]) == 0, err.getvalue()
    (root / "bad").mkdir()
    (root / "bad" / "broken.toml").write_text("[model\nname = 1")
    (root / "bad" / "latin1.toml").write_bytes("[model]\nname = \"caf\xe9\"\n".encode("latin-1"))
    (root / "bad" / "folder.toml").mkdir()
    (root / "bad" / "no_search.toml").write_text((root / "digits.toml").read_text())
    (root / "empty").mkdir()
    (root / "folder.onnx").mkdir()
    np.save(root / "x_ok.npy", np.zeros((3, 64), dtype=np.float32))       # digits: 64 features
    np.save(root / "x_wide.npy", np.zeros((3, 5), dtype=np.float32))
    (root / "not_an_array.npy").write_bytes(b"nope")
    (root / "compare_folder").mkdir()                    # what `compare` writes: no config.toml
    (root / "compare_folder" / "comparison.json").write_text("{")
    (root / "torn_metrics").mkdir()
    (root / "torn_metrics" / "metrics.jsonl").write_text('{"kind": "ep')
    broken = {}
    for what, edit in (("manifest", lambda c: (c / "best" / "manifest.json").write_text("{")),
                       ("weights", lambda c: (c / "best" / "model.safetensors").write_bytes(b"\0" * 8)),
                       ("no_checkpoints", lambda c: shutil.rmtree(c))):
        folder = root / "broken" / what
        shutil.copytree(runs / "digits", folder)
        edit(folder / "checkpoints")
        broken[what] = folder
    gpt_bad_vocab = root / "broken" / "gpt_vocab"
    shutil.copytree(runs / "gpt", gpt_bad_vocab)
    (gpt_bad_vocab / "vocab.json").write_text("[")
    bad_config = root / "broken" / "config"
    shutil.copytree(runs / "digits", bad_config)
    (bad_config / "config.toml").write_text("x = ")
    return {"root": root, "run": runs / "digits", "gpt": runs / "gpt", "cfg": root / "digits.toml",
            **{f"broken_{k}": v for k, v in broken.items()}, "gpt_bad_vocab": gpt_bad_vocab,
            "bad_run_config": bad_config}


def run_main(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(a) for a in argv])
        except SystemExit as e:  # argparse
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def assert_one_error(command: str, rc: int, err: str, expected: str, *, usage: bool = False) -> None:
    prefix = f"retrograd {command}: error: " if command else "retrograd: error: "
    lines = err.rstrip("\n").splitlines()
    errors = [line for line in lines if "error:" in line]
    assert rc == 2, (rc, err)
    assert "Traceback" not in err, err
    assert len(errors) == 1 and errors[0].startswith(prefix), err
    assert expected in errors[0], f"expected {expected!r} in {errors[0]!r}"
    if usage:  # argparse: its usage, then the one line
        assert lines[0].startswith(f"usage: retrograd {command}".rstrip()) and lines[-1] == errors[0], err
    else:
        assert lines == errors, err


# (command, argv after the command with {placeholders} from `world`, expected text of the error line)
CASES = [
    # train (bad keys and --set: test_config_errors.py)
    ("train", ["{root}/missing.toml"], "config: file '{root}/missing.toml' not found"),
    ("train", ["{root}/bad/broken.toml"], "is not valid TOML: Expected ']' at the end of a table declaration"),
    ("train", ["{root}/bad/latin1.toml"], "is not valid UTF-8 (byte 0xe9 on line 2); expected a UTF-8 TOML file"),
    ("train", ["{root}/bad/folder.toml"], "config: '{root}/bad/folder.toml' is a folder; expected a TOML file"),
    ("train", ["{cfg}", "--set", "run.dir={cfg}"], "{cfg}/digits: Not a directory"),
    # resume
    ("resume", ["{root}/nowhere"], "{root}/nowhere: not a run folder (no config.toml)"),
    ("resume", ["{root}/compare_folder"], "{root}/compare_folder: not a run folder (no config.toml)"),
    ("resume", ["{bad_run_config}"], "config: {bad_run_config}/config.toml is not valid TOML"),
    ("resume", ["{broken_no_checkpoints}"], "{broken_no_checkpoints}: no checkpoint 'last' (found: none)"),
    # evaluate
    ("evaluate", ["{root}/empty"], "{root}/empty: not a run folder (no config.toml)"),
    ("evaluate", ["{broken_manifest}"], "{broken_manifest}/checkpoints/best/manifest.json: corrupted JSON"),
    ("evaluate", ["{broken_weights}"], "{broken_weights}/checkpoints/best/model.safetensors: truncated or corrupted"),
    ("evaluate", ["{broken_no_checkpoints}", "--checkpoint", "last"],
     "{broken_no_checkpoints}: no checkpoint 'last' (found: none)"),
    # compare
    ("compare", ["{cfg}", "--optimizers", " , "], "--optimizers: give a comma-separated list, e.g. sgd,momentum,adam"),
    ("compare", ["{cfg}", "--optimizers", "sgd,adamm"], "--optimizers: 'adamm' is not an optimizer in rg.optim"),
    ("compare", ["{cfg}", "--optimizers", "sgd", "--lr", "sgd"], "--lr 'sgd': expected name=value pairs"),
    ("compare", ["{cfg}", "--optimizers", "sgd", "--lr", "sgd=fast"], "--lr: sgd='fast' is not a number"),
    ("compare", ["{cfg}", "--optimizers", "sgd", "--lr", "sgd=-1"], "--lr: sgd='-1': expected a finite number >= 0"),
    ("compare", ["{cfg}", "--optimizers", "sgd", "--lr", "sgd=nan"], "--lr: sgd='nan': expected a finite number"),
    ("compare", ["{cfg}", "--optimizers", "sgd", "--lr", "adam=0.1"], "--lr: 'adam' is not one of --optimizers (sgd)"),
    ("compare", ["{root}/missing.toml", "--optimizers", "sgd"], "config: file '{root}/missing.toml' not found"),
    # lr-find
    ("lr-find", ["{cfg}", "--start-lr", "1", "--end-lr", "0.1"], "--start-lr 1 must be below --end-lr 0.1"),
    ("lr-find", ["{cfg}", "--out", "{cfg}/lr.png"], "--out: cannot make the folder {cfg} (File exists: {cfg})"),
    ("lr-find", ["{root}/bad/broken.toml"], "is not valid TOML"),
    # plot
    ("plot", ["{root}/nowhere"], "{root}/nowhere: no such run folder"),
    ("plot", ["{root}/compare_folder"], "{root}/compare_folder/comparison.json: cannot plot it (JSONDecodeError"),
    ("plot", ["{root}/torn_metrics"], "{root}/torn_metrics/metrics.jsonl: nothing to plot: no metrics recorded"),
    # generate
    ("generate", ["{run}"], "{run}: no vocab.json; generate needs a run of a language model on text"),
    ("generate", ["{gpt_bad_vocab}"], "{gpt_bad_vocab}/vocab.json: not a vocabulary written by retrograd train"),
    ("generate", ["{gpt}", "--prompt", "\u2603"], "--prompt: Vocabulary.encode: character '\u2603' is not in the"),
    ("generate", ["{gpt}", "--prompt", ""], "--prompt: must not be empty"),
    ("generate", ["{root}/nowhere"], "{root}/nowhere: not a run folder (no config.toml)"),
    # predict
    ("predict", ["{root}/nowhere", "{root}/x_ok.npy"], "{root}/nowhere: not a run folder (no config.toml)"),
    ("predict", ["{run}", "{root}/nothing.npy"], "input: '{root}/nothing.npy' not found"),
    ("predict", ["{run}", "{root}/x_wide.npy"], "{root}/x_wide.npy: expected 64 features per row (shape (64,)), "
     "got an array of shape (3, 5)"),
    ("predict", ["{run}", "{root}/not_an_array.npy"], "{root}/not_an_array.npy: cannot read it as npy"),
    ("predict", ["{gpt}", "{root}/x_ok.npy"], "{gpt} is a language model (gpt on shakespeare); to sample text"),
    ("predict", ["{run}", "{root}/x_ok.npy", "--checkpoint", "worst"], "checkpoint: 'worst' is neither a checkpoint"),
    ("predict", ["{run}", "{root}/x_ok.npy", "-o", "{root}/p.txt"], "-o {root}/p.txt: expected a .csv, .npy or .npz"),
    ("predict", ["{run}", "{root}/x_ok.npy", "-o", "{cfg}/p.csv"], "{cfg}: File exists"),
    ("predict", ["{broken_manifest}", "{root}/x_ok.npy"], "{broken_manifest}/checkpoints/best/manifest.json: "
     "corrupted JSON"),
    # export (without onnx: test_export_without_onnx below)
    ("export", ["{root}/nowhere"], "{root}/nowhere: not a run folder (no config.toml)"),
    ("export", ["{run}", "--output", "{root}/m.txt"], "--output {root}/m.txt: expected a .onnx path"),
    ("export", ["{run}", "--output", "{root}/folder.onnx"], "--output {root}/folder.onnx: is a folder; expected a "
     ".onnx file"),
    ("export", ["{run}", "--output", "{cfg}/m.onnx"], "{cfg}: File exists"),
    ("export", ["{run}", "--opset", "99"], "{run}: rg.onnx.export: opset_version must be in 17..21, got 99"),
    ("export", ["{run}", "--checkpoint", "worst"], "checkpoint: 'worst' is neither a checkpoint"),
    ("export", ["{broken_manifest}"], "{broken_manifest}/checkpoints/best/manifest.json: corrupted JSON"),
    ("export", ["{broken_weights}"], "{broken_weights}/checkpoints/best/model.safetensors: truncated or corrupted"),
    # tune (without Optuna: test_journey.py)
    ("tune", [], "tune: give a config with a [search] table, or --show STUDY_DIR"),
    ("tune", ["{root}/bad/no_search.toml"], "[search]: {root}/bad/no_search.toml has no [search] table"),
    ("tune", ["{root}/missing.toml"], "config: file '{root}/missing.toml' not found"),
    # --nproc: the config or run folder is checked once, before any rank starts
    ("train", ["{root}/missing.toml", "--nproc", "2"], "config: file '{root}/missing.toml' not found"),
    ("resume", ["{root}/empty", "--nproc", "2"], "{root}/empty: not a run folder (no config.toml)"),
    ("tune", ["--show", "{root}/empty"], "tune: {root}/empty is not a study folder (no study.json)"),
    # rl (bad RL configs and the RL run folder's errors: tests/rl/test_cli*.py)
    ("rl", ["{root}/missing.toml"], "config: file '{root}/missing.toml' not found"),
    ("rl", ["evaluate", "{root}/empty"], "{root}/empty: not a run folder (no config.toml)"),
    ("rl", ["play", "{run}"], "{run}: not an RL run (its config.toml has no [rl] section)"),
]

# argparse's own errors: usage, then one line naming the flag
USAGE = [
    ("", [], "the following arguments are required: COMMAND"),
    ("", ["trian"], "argument COMMAND: invalid choice: 'trian'"),
    ("train", [], "the following arguments are required: config"),
    ("train", ["{cfg}", "--epochs", "3"], "unrecognized arguments: --epochs 3"),
    ("resume", [], "the following arguments are required: run_dir"),
    ("resume", ["{run}", "--epochs", "x"], "argument --epochs: expected an int >= 1, got 'x'"),
    ("resume", ["{run}", "--epochs", "0"], "argument --epochs: expected an int >= 1, got '0'"),
    ("resume", ["{run}", "--checkpoint", "best"], "unrecognized arguments: --checkpoint best"),
    ("train", ["{cfg}", "--nproc", "0"], "argument --nproc: expected an int >= 1, got '0'"),
    ("resume", ["{run}", "--rank-timeout", "0"], "argument --rank-timeout: expected a finite number > 0, got '0'"),
    ("evaluate", ["{run}", "--checkpoint", "worst"], "argument --checkpoint: invalid choice: 'worst'"),
    ("compare", ["{cfg}"], "the following arguments are required: --optimizers"),
    ("compare", ["{cfg}", "--optimizers", "sgd", "--timed-steps", "-1"],
     "argument --timed-steps: expected an int >= 0, got '-1'"),
    ("lr-find", ["{cfg}", "--num-iter", "1"], "argument --num-iter: expected an int >= 2, got '1'"),
    ("lr-find", ["{cfg}", "--start-lr", "0"], "argument --start-lr: expected a finite number > 0, got '0'"),
    ("lr-find", ["{cfg}", "--end-lr", "inf"], "argument --end-lr: expected a finite number > 0, got 'inf'"),
    ("plot", [], "the following arguments are required: run_dir"),
    ("generate", ["{gpt}", "--max-new-tokens", "-1"], "argument --max-new-tokens: expected an int >= 1, got '-1'"),
    ("generate", ["{gpt}", "--temperature", "-0.5"], "argument --temperature: expected a finite number >= 0"),
    ("generate", ["{gpt}", "--temperature", "nan"], "argument --temperature: expected a finite number >= 0"),
    ("generate", ["{gpt}", "--top-k", "0"], "argument --top-k: expected an int >= 1, got '0'"),
    ("predict", ["{run}"], "the following arguments are required: input"),
    ("predict", ["{run}", "{root}/x_ok.npy", "--batch-size", "x"], "argument --batch-size: expected an int >= 1, got 'x'"),
    ("predict", ["{run}", "{root}/x_ok.npy", "--batch-size", "0"], "argument --batch-size: expected an int >= 1, got '0'"),
    ("export", [], "the following arguments are required: run_dir"),
    ("export", ["{run}", "--format", "tflite"], "argument --format: invalid choice: 'tflite'"),
    ("export", ["{run}", "--quantize", "int4"], "argument --quantize: invalid choice: 'int4'"),
    ("export", ["{run}", "--opset", "13"], "argument --opset: expected an int >= 17, got '13'"),
    ("tune", ["{cfg}", "--workers", "0"], "argument --workers: expected an int >= 1, got '0'"),
    ("tune", ["{cfg}", "--n-trials", "-4"], "argument --n-trials: expected an int >= 1, got '-4'"),
    ("rl", [], "the following arguments are required: CONFIG | {resume,evaluate,play}"),
    ("rl", ["evaluate", "{run}", "--episodes", "0"], "argument --episodes: expected an int >= 1, got '0'"),
]


def _fill(text: str, world: dict) -> str:
    return text.format(**{k: str(v) for k, v in world.items()})


@pytest.mark.filterwarnings("ignore:.*dropped 1 unreadable line:RuntimeWarning")  # the torn metrics.jsonl
@pytest.mark.parametrize("command,argv,expected", CASES, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_command_error_is_one_line_exit_2(command, argv, expected, world):
    rc, _, err = run_main([command, *(_fill(a, world) for a in argv)])
    assert_one_error(command, rc, err, _fill(expected, world))


@pytest.mark.parametrize("command,argv,expected", USAGE, ids=[f"{c or 'retrograd'}-{i}" for i, (c, _, _) in
                                                              enumerate(USAGE)])
def test_usage_error_is_usage_then_one_line_exit_2(command, argv, expected, world):
    rc, out, err = run_main([c for c in [command] if c] + [_fill(a, world) for a in argv])
    assert out == ""
    assert_one_error(command, rc, err, expected, usage=True)


def test_every_command_is_swept():
    assert {c for c, _, _ in CASES} == {c for c, _, _ in USAGE} - {""} == set(cli.COMMANDS)


def test_version_and_help_exit_0_on_stdout(world):
    for argv in (["--version"], ["--help"], *([c, "--help"] for c in cli.COMMANDS)):
        rc, out, err = run_main(argv)
        assert rc == 0 and err == "" and out.strip(), argv
        assert out.startswith(f"retrograd {rg.__version__}" if argv == ["--version"] else "usage: retrograd"), argv


# ---------------------------------------------------------------------- optional packages and data missing
@pytest.fixture
def without(monkeypatch):
    """``without("matplotlib")``: ``import matplotlib`` (and its submodules) raises ImportError."""
    def hide(name):
        for m in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.setitem(sys.modules, m, None)
        monkeypatch.setitem(sys.modules, name, None)
    return hide


def test_plot_without_matplotlib(world, without):
    without("matplotlib")
    rc, _, err = run_main(["plot", world["run"]])
    assert_one_error("plot", rc, err, "rg.train.plots needs matplotlib: pip install 'retrograd[train]'")


def test_train_threads_without_threadpoolctl(world, without, tmp_path):
    without("threadpoolctl")
    rc, _, err = run_main(["train", world["cfg"], "--set", "train.threads=1", "--set", f"run.dir={tmp_path}"])
    assert_one_error("train", rc, err, "train.threads: needs threadpoolctl; install it with: python3 -m pip "
                                       "install 'retrograd[train]'")


def test_train_without_safetensors_says_so_before_training(world, without, tmp_path):
    without("safetensors")
    rc, out, err = run_main(["train", world["cfg"], "--quiet", "--set", f"run.dir={tmp_path}"])
    assert_one_error("train", rc, err, "checkpoints need the 'safetensors' package: pip install 'retrograd[train]'")
    assert list(tmp_path.iterdir()) == []                 # no run folder, nothing trained
    # without checkpoints it trains
    rc, _, err = run_main(["train", world["cfg"], "--quiet", "--set", f"run.dir={tmp_path}",
                           "--set", "train.save_best=false", "--set", "train.save_last=false"])
    assert rc == 0, err


def test_export_without_onnx(world, without, tmp_path):
    without("onnx")
    rc, _, err = run_main(["export", world["run"], "--output", tmp_path / "m.onnx"])
    assert_one_error("export", rc, err, "rg.onnx.export needs the onnx package: pip install 'retrograd[export]'")
    assert list(tmp_path.iterdir()) == []


def test_evaluate_resume_and_compare_without_the_data(world, without, tmp_path):
    without("sklearn")
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    for argv in (["evaluate", run], ["resume", run, "--epochs", "2"],
                 ["compare", world["cfg"], "--optimizers", "sgd", "--set", f"run.dir={tmp_path}"]):
        rc, _, err = run_main(argv)
        assert_one_error(argv[0], rc, err, "sklearn_dataset('digits'): scikit-learn is not installed; install it")


# ---------------------------------------------------------------------- the same in a real process
def test_in_a_process_the_exit_status_is_2_and_stderr_one_line(world):
    """What a shell sees: the status and stderr of `python -m retrograd` (no traceback printed at exit)."""
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(rg.__file__).resolve().parents[1])}
    for argv, line in (
            (["train", world["cfg"], "--bogus"], "retrograd train: error: unrecognized arguments: --bogus"),
            (["generate", world["gpt_bad_vocab"]], "retrograd generate: error: "),
            (["lr-find", world["cfg"], "--start-lr", "1", "--end-lr", "0.5"],
             "retrograd lr-find: error: --start-lr 1 must be below --end-lr 0.5")):
        p = subprocess.run([sys.executable, "-m", "retrograd", *map(str, argv)], capture_output=True, text=True,
                           timeout=120, env=env)
        assert p.returncode == 2 and p.stdout == "", (argv, p.stderr)
        assert "Traceback" not in p.stderr and p.stderr.rstrip("\n").splitlines()[-1].startswith(line), p.stderr
        assert sum("error:" in x for x in p.stderr.splitlines()) == 1, p.stderr
