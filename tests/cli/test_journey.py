"""Issue 13's rough edges of the command line: `resume` of a finished run changes nothing, a second
run of a config says where it writes, errors without tracebacks, --version and help texts."""
import pathlib

from retrograd.train import Callback

from cli_helpers import DIGITS_MLP, summary

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
