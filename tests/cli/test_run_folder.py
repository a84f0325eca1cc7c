"""Run folders after crashes (issue 12 items 6-8): the CLI's recovery path, torn metrics lines,
leftover copies of interrupted saves."""
import json
import os
import shutil

import numpy as np
import pytest

import retrograd as rg

from cli_helpers import DIGITS_MLP, summary

FAST = DIGITS_MLP.replace("epochs = 2", "epochs = 1\ncheckpoint_every_n_steps = 5")


def _interrupted_between_renames(ckpts):
    """What a save killed between ``rename(last, .last.old-*)`` and ``rename(tmp, last)`` leaves."""
    os.rename(ckpts / "last", ckpts / ".last.old-1a2b3c4d")
    shutil.copytree(ckpts / ".last.old-1a2b3c4d", ckpts / ".last.tmp-k9x8y7z6")  # the new one, complete but unnamed
    (ckpts / ".best.tmp-half").mkdir()
    (ckpts / ".best.tmp-half" / "model.safetensors").write_bytes(b"\0" * 10)  # a save killed mid-write


def _strays(run):
    return sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("."))


def test_resume_and_evaluate_use_the_checkpoint_an_interrupted_save_moved_aside(write_config, run_cli, tmp_path):
    rc, _, err = run_cli("train", write_config(FAST), "--quiet")
    assert rc == 0, err
    run = tmp_path / "runs" / "c"
    ckpts = run / "checkpoints"
    params = rg.io.load_safetensors(ckpts / "last" / "model.safetensors")
    _interrupted_between_renames(ckpts)
    rc, out, err = run_cli("evaluate", run, "--checkpoint", "last")
    assert rc == 0, err          # main: "no checkpoint 'last' (found: .last.old-1a2b3c4d, ...)"
    assert "checkpoints/last is missing; using" in err and ".last.old-1a2b3c4d" in err
    assert json.loads((run / "evaluate_last.json").read_text())["test_accuracy"] == summary(run)["test"]["test_accuracy"]
    assert _strays(run) == [".best.tmp-half", ".last.old-1a2b3c4d", ".last.tmp-k9x8y7z6"]  # evaluate changes nothing
    rc, out, err = run_cli("resume", run, "--quiet", "--epochs", "2")
    assert rc == 0, err
    assert summary(run)["epochs"] == 2
    assert _strays(run) == []    # the next run start put .last.old-* back and removed the leftovers
    after = rg.io.load_safetensors(ckpts / "last" / "model.safetensors")
    assert sorted(after) == sorted(params) and not all(np.array_equal(after[k], params[k]) for k in params)


def test_a_successful_save_removes_leftovers_but_never_the_only_good_copy(tmp_path):
    from retrograd.train import Trainer
    from retrograd.train.checkpoint import remove_stray_copies, stray_copies, tidy_checkpoint

    model = rg.nn.Linear(3, 2)
    trainer = Trainer(model, rg.optim.SGD(model.parameters(), lr=0.1), rg.nn.functional.mse_loss, metrics=())
    last = tmp_path / "last"
    trainer.save_checkpoint(last)
    os.rename(last, tmp_path / ".last.old-00000001")
    (tmp_path / ".last.tmp-00000002").mkdir()
    assert remove_stray_copies(last) == []                  # no good `last`: the old copy is all there is
    assert len(stray_copies(last)) == 2
    (tmp_path / "last").mkdir()                             # an empty, unverifiable `last` protects nothing
    assert remove_stray_copies(last) == [] and len(stray_copies(last)) == 2
    (tmp_path / "last").rmdir()
    assert tidy_checkpoint(last) == last                    # the old copy is renamed back, the rest removed
    assert stray_copies(last) == [] and (last / "manifest.json").is_file()
    os.rename(last, tmp_path / ".last.old-00000003")
    (tmp_path / ".last.tmp-00000004").mkdir()
    trainer.save_checkpoint(last)                           # a successful save cleans up after earlier crashes
    assert stray_copies(last) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_a_torn_last_metrics_line_does_not_crash_resume(write_config, run_cli, tmp_path):
    from test_train_cli import _Interrupt

    rc, _, err = run_cli("train", write_config(FAST, "full"), "--quiet")
    assert rc == 0, err
    rc, _, err = run_cli("train", write_config(FAST, "cut"), "--quiet", callbacks=[_Interrupt(22)])
    assert rc == 130, err
    cut = tmp_path / "runs" / "cut"
    good = (cut / "metrics.jsonl").read_text()
    with open(cut / "metrics.jsonl", "a") as f:
        f.write('{"kind": "step", "epoch": 0, "batch": 22, "lo')      # power loss in the middle of a line
    with pytest.warns(RuntimeWarning, match=r"metrics.jsonl: dropped 1 unreadable line\(s\) \(line 23;"):
        rc, _, err = run_cli("resume", cut, "--quiet")
    assert rc == 0, err       # main: json.decoder.JSONDecodeError: Unterminated string
    rows = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    full = [json.loads(line) for line in (tmp_path / "runs" / "full" / "metrics.jsonl").read_text().splitlines()]
    drop = ("time", "samples_per_sec", "epoch_time")
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows] == \
        [{k: v for k, v in r.items() if k not in drop} for r in full]
    # no good line lost: those up to the checkpoint of step 20 are kept as written (21, 22 are rerun)
    assert (cut / "metrics.jsonl").read_text().startswith("".join(good.splitlines(True)[:20]))
    # a torn line in the middle (a disk that filled up, then got space back) loses only that line
    (cut / "metrics.jsonl").write_text(good.replace('"kind": "step", "epoch": 0, "batch": 3,', '"kind": "st'))
    with pytest.warns(RuntimeWarning, match=r"dropped 1 unreadable line\(s\) \(line 4;.*kept 21"):
        steps, epochs = rg.train.plots.read_metrics(cut)
    assert [r["batch"] for r in steps] == [0, 1, 2] + list(range(4, 22)) and epochs == []
