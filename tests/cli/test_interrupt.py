"""Ctrl-C during `retrograd train` (issue 13 item 1): the first press finishes the batch and saves
a resumable checkpoint there, so the printed `retrograd resume` works and ends bit-exact with an
uninterrupted run; a second press stops at once and the message says honestly what was lost."""
import signal

import numpy as np
import pytest

import retrograd as rg
from retrograd.train import Callback

from cli_helpers import DIGITS_MLP, FirstStep, summary


class _CtrlC(Callback):
    """A real SIGINT (`presses` of them) to this process at the start of batch `at` of the first epoch."""

    def __init__(self, at: int, presses: int = 1) -> None:
        self.at, self.presses = at, presses

    def on_batch_start(self, trainer, batch_idx, logs):
        if trainer.state.epoch == 0 and batch_idx == self.at:
            for _ in range(self.presses):
                signal.raise_signal(signal.SIGINT)


def _last(run_dir) -> dict:
    return rg.io.load_safetensors(run_dir / "checkpoints" / "last" / "model.safetensors")


@pytest.mark.parametrize("accumulate", [1, 2])
def test_ctrl_c_before_the_first_checkpoint_saves_one_and_resume_is_bit_exact(write_config, run_cli, tmp_path,
                                                                                accumulate):
    # digits: 41 batches of 32 per epoch; no checkpoint before the end of epoch 1 but the interrupt's.
    # With accumulate = 2 the interrupt falls after batch 21 of 41, between the two halves of a step.
    text = DIGITS_MLP.replace("epochs = 2", f"epochs = 2\naccumulate = {accumulate}") + \
        '\n[schedule]\nname = "CosineAnnealingLR"\ninterval = "step"\n'
    rc, _, err = run_cli("train", write_config(text, "full"), "--quiet")
    assert rc == 0, err
    cut = tmp_path / "runs" / "cut"
    rc, _, err = run_cli("train", write_config(text, "cut"), "--quiet", callbacks=[_CtrlC(20)])
    step = 21 // accumulate
    assert rc == 130 and (f"interrupted at epoch 1, batch 21 (optimizer step {step}); saved a checkpoint "
                          f"there; continue with: retrograd resume {cut}") in err, err
    assert "finishing this batch to save a resumable checkpoint" in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # the handler is put back
    assert (cut / "checkpoints" / "last" / "manifest.json").is_file() and not (cut / "summary.json").exists()
    assert (cut / "checkpoints" / "last" / "grads.safetensors").is_file() == (accumulate == 2)
    start = FirstStep()
    rc, _, err = run_cli("resume", cut, "--quiet", callbacks=[start])
    assert rc == 0, err
    assert start.first == (0, 21, step)
    full, resumed = _last(tmp_path / "runs" / "full"), _last(cut)
    assert sorted(full) == sorted(resumed)
    for k in full:
        assert np.array_equal(np.asarray(full[k]), np.asarray(resumed[k])), k
    a, b = summary(tmp_path / "runs" / "full"), summary(cut)
    assert a["final"] == b["final"] and a["test"] == b["test"] and b["status"] == "completed"


def test_a_second_ctrl_c_stops_at_once_and_says_nothing_can_be_resumed(write_config, run_cli, tmp_path):
    cfg = write_config()
    rc, _, err = run_cli("train", cfg, "--quiet", callbacks=[_CtrlC(5, presses=2)])
    cut = tmp_path / "runs" / "c"
    assert rc == 130 and "no checkpoint was saved, so nothing can be resumed and the training so far is lost; " \
        f"start again with: retrograd train {cfg}" in err, err
    assert "continue with" not in err and not (cut / "checkpoints" / "last").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_without_save_last_says_what_was_lost(write_config, run_cli, tmp_path):
    text = DIGITS_MLP.replace("epochs = 2", "epochs = 2\nsave_last = false")
    rc, _, err = run_cli("train", write_config(text), "--quiet", callbacks=[_CtrlC(7)])
    assert rc == 130 and "interrupted at epoch 1, batch 8 (optimizer step 8); no checkpoint was saved" in err, err
