"""Issue 13's rough edges of the command line: `resume` of a finished run changes nothing, a second
run of a config says where it writes, errors without tracebacks, --version and help texts."""
import pathlib

from retrograd.train import Callback

from cli_helpers import DIGITS_MLP, TINY_GPT, summary

ONE_EPOCH = DIGITS_MLP.replace("epochs = 2", "epochs = 1")


def _files(folder: pathlib.Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class _StopAfterFirstEpoch(Callback):
    def on_epoch_end(self, trainer, epoch, logs):
        trainer.stop_training = True


def test_resume_of_a_finished_run_says_so_and_changes_nothing(write_config, run_cli, tmp_path):
    rc, _, err = run_cli("train", write_config(ONE_EPOCH), "--quiet")
    assert rc == 0, err
    run = tmp_path / "runs" / "c"
    before = _files(run)
    assert "summary.json" in before and "checkpoints/last/model.safetensors" in before
    rc, out, err = run_cli("resume", run, "--quiet")
    assert rc == 0, err
    assert f"{run}: the run is complete: 1 of 1 epoch trained; nothing to resume, nothing changed" in out
    assert _files(run) == before
    # a run that a callback stopped early is finished too, unless --epochs asks for more
    rc, _, err = run_cli("train", write_config(DIGITS_MLP, "s"), "--quiet", callbacks=[_StopAfterFirstEpoch()])
    assert rc == 0 and summary(tmp_path / "runs" / "s")["status"] == "stopped", err
    stopped = tmp_path / "runs" / "s"
    before = _files(stopped)
    rc, out, _ = run_cli("resume", stopped, "--quiet")
    assert rc == 0 and "the run is finished: stopped after 1 of 2 epochs (a callback set stop_training)" in out
    assert _files(stopped) == before
    rc, out, err = run_cli("resume", stopped, "--quiet", "--epochs", "2")
    assert rc == 0 and "resuming" in out and summary(stopped)["epochs"] == 2, err


def test_a_second_train_of_a_config_says_loudly_where_it_writes(write_config, run_cli, tmp_path):
    cfg = write_config(ONE_EPOCH)
    rc, _, err = run_cli("train", cfg, "--quiet")
    assert rc == 0 and "note" not in err, err
    rc, out, err = run_cli("train", cfg, "--quiet")
    runs = tmp_path / "runs"
    assert rc == 0 and f"run folder: {runs / 'c-2'}" in out
    notes = [line for line in err.splitlines() if "note" in line]
    assert notes == [f"retrograd train: note: {runs / 'c'} already holds a run, so this one writes to "
                     f"{runs / 'c-2'} (to choose: --set run.name=NAME, or --set run.overwrite=true to reuse "
                     f"{runs / 'c'})"], err


# ---------------------------------------------------------------------- errors without tracebacks (item 6)
def _one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"retrograd {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_tune_without_optuna_is_one_error_line(write_config, run_cli, monkeypatch):
    import sys

    import retrograd

    for name in [m for m in sys.modules if m == "retrograd.tune" or m.startswith("retrograd.tune.")]:
        monkeypatch.delitem(sys.modules, name)
    if "tune" in vars(retrograd):   # `from . import tune` looks here first (not hasattr: it imports tune)
        monkeypatch.delattr(retrograd, "tune")
    monkeypatch.setitem(sys.modules, "optuna", None)   # `import optuna` raises ImportError
    rc, out, err = run_cli("tune", write_config())
    assert rc == 2 and out == ""
    assert _one_error_line(err, "tune") == "retrograd tune: error: retrograd.tune needs Optuna: pip install " \
        "'retrograd[tune]'"


def test_plot_on_the_folder_compare_writes_redraws_the_comparison(write_config, run_cli, tmp_path):
    rc, _, err = run_cli("compare", write_config(ONE_EPOCH), "--optimizers", "sgd,adam", "--quiet")
    assert rc == 0, err
    folder = tmp_path / "runs" / "c-compare"
    (folder / "comparison.png").unlink()
    rc, out, err = run_cli("plot", folder)
    assert rc == 0 and err == "" and out == f"{folder / 'comparison.png'}\n"
    assert (folder / "comparison.png").stat().st_size > 10_000
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, err = run_cli("plot", empty)
    assert rc == 2 and "nothing to plot: neither a run folder (metrics.jsonl) nor a folder that retrograd " \
        "compare wrote (comparison.json)" in _one_error_line(err, "plot")


def test_generate_into_a_closed_pipe_ends_quietly(write_config, run_cli, tmp_path):
    """`retrograd generate RUN | head`: the reader has gone when the sample is printed; the command
    ends with status 141 (as a tool SIGPIPE ends) and prints nothing, no traceback."""
    import os
    import subprocess
    import sys

    import retrograd

    rc, _, err = run_cli("train", write_config(TINY_GPT, "gpt"), "--quiet")
    assert rc == 0, err
    src = str(pathlib.Path(retrograd.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.Popen([sys.executable, "-m", "retrograd.cli", "generate", str(tmp_path / "runs" / "gpt"),
                          "--max-new-tokens", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.close()             # the reader is gone before the child writes anything
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and err == "", err


# ---------------------------------------------------------------------- --version and help (item 10)
def test_version_prints_the_package_version(capsys):
    import pytest

    import retrograd
    from retrograd import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"retrograd {retrograd.__version__}\n"


def test_every_command_argument_and_flag_has_help():
    import argparse

    from retrograd import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helped = {c.dest: c.help for c in sub._choices_actions}
    assert set(helped) == set(cli.COMMANDS) == set(sub.choices)
    missing = [name for name, h in helped.items() if not (h or "").strip()]
    for name, p in [("retrograd", parser), *sub.choices.items()]:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []
    # the ones issue 13 named, for the record
    text = {name: p.format_help() for name, p in sub.choices.items()}
    assert "the run folder to continue" in text["resume"] and "which checkpoint to evaluate" in text["evaluate"]
    assert "learning rate of the first step" in text["lr-find"] and "--num-iter" in text["lr-find"]
    assert "text the sample starts with" in text["generate"] and "sample only from the k" in text["generate"]
