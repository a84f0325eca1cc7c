"""A run folder that names a model file (issue 12 item 14): the file's SHA-256 is recorded at
train time and checked before evaluate, resume or generate import it."""
import json
import shutil

import pytest

from cli_helpers import DIGITS_MLP, TINY_MODEL, summary

MODEL = "import pathlib\n" + TINY_MODEL
# what a hostile model file does on import
PAYLOAD = "\npathlib.Path(__file__).with_name('PWNED').write_text('ran')\n"
CONFIG = DIGITS_MLP.replace('name = "mlp"\nsizes = [64, 64, 10]', 'name = "m.py:Tiny"\nhidden = 8') \
    .replace("epochs = 2", "epochs = 1")


@pytest.fixture
def trained(write_config, run_cli, tmp_path):
    (tmp_path / "m.py").write_text(MODEL)
    rc, _, err = run_cli("train", write_config(CONFIG), "--quiet")
    assert rc == 0, err
    return tmp_path / "runs" / "c"


def test_train_records_the_model_files_sha256_and_trusts_it(trained, run_cli, write_config, tmp_path,
                                                            trusted_code_store):
    import hashlib
    import socket

    sha = hashlib.sha256(MODEL.encode()).hexdigest()
    record = json.loads((trained / "model_code.json").read_text())
    assert record == {"file": str(tmp_path / "m.py"), "bytes": len(MODEL), "sha256": sha,
                      "host": socket.gethostname(), "run_dir": str(trained.resolve())}
    assert trusted_code_store.read_text() == f"{sha}  {tmp_path / 'm.py'}\n"
    rc, _, err = run_cli("evaluate", trained)
    assert rc == 0, err
    shutil.move(trained, tmp_path / "moved")           # moving your own run elsewhere on this machine is fine
    rc, _, err = run_cli("evaluate", tmp_path / "moved")
    assert rc == 0, err
    # built-in models have no model file: nothing recorded, nothing checked
    rc, _, err = run_cli("train", write_config(DIGITS_MLP, "builtin"), "--quiet", "--set", "train.epochs=1")
    assert rc == 0, err
    assert not (tmp_path / "runs" / "builtin" / "model_code.json").exists()


@pytest.mark.parametrize("command", [("evaluate",), ("resume", "--epochs", "2"),
                                     ("generate", "--prompt", "a")])
def test_a_changed_model_file_is_not_imported_without_trust(trained, run_cli, tmp_path, command):
    (tmp_path / "m.py").write_text(MODEL + PAYLOAD)
    rc, _, err = run_cli(command[0], trained, *command[1:])
    assert rc == 2
    assert f"retrograd {command[0]}: error: {trained}: refusing to import the model file {tmp_path / 'm.py'}: " \
           "the model file changed since the run recorded it" in err
    assert f"run `retrograd {command[0]} {trained} --trust-model-code` to import it" in err
    assert not (tmp_path / "PWNED").exists()             # main imported it: the payload ran


def test_trust_model_code_imports_it_and_records_the_new_hash(trained, run_cli, tmp_path):
    (tmp_path / "m.py").write_text(MODEL + "\n# a comment\n")
    rc, _, err = run_cli("resume", trained, "--epochs", "2", "--quiet", "--trust-model-code")
    assert rc == 0, err
    assert "--trust-model-code: importing" in err and summary(trained)["epochs"] == 2
    rc, _, err = run_cli("evaluate", trained)           # recorded and trusted now
    assert rc == 0, err


def test_a_folder_from_elsewhere_is_refused_even_with_a_forged_record(trained, run_cli, tmp_path, monkeypatch):
    import hashlib

    # a colleague's run folder, its model file inside, its config naming it relative to the folder
    theirs = tmp_path / "download" / "run"
    shutil.copytree(trained, theirs)
    (theirs / "m.py").write_text(MODEL + PAYLOAD)
    cfg = (theirs / "config.toml").read_text().replace(f'"{tmp_path / "m.py"}:Tiny"', '"m.py:Tiny"')
    (theirs / "config.toml").write_text(cfg)
    record = json.loads((theirs / "model_code.json").read_text())
    record.update(file=str(theirs / "m.py"), sha256=hashlib.sha256((MODEL + PAYLOAD).encode()).hexdigest(),
                  run_dir=str(theirs))                  # a record that matches the file and the place
    (theirs / "model_code.json").write_text(json.dumps(record))
    rc, _, err = run_cli("evaluate", theirs)
    assert rc == 2 and "the folder came from elsewhere" in err
    assert "changed" not in err and "is not among the model code you trained here or trusted" in err
    assert not (theirs / "PWNED").exists()
    (theirs / "model_code.json").unlink()               # a folder with no record at all
    rc, _, err = run_cli("evaluate", theirs)
    assert rc == 2 and "the folder has no valid model_code.json" in err and not (theirs / "PWNED").exists()
    # the same, unchanged code on another machine (another user's trusted list): refused once
    monkeypatch.setenv("RETROGRAD_TRUSTED_CODE", str(tmp_path / "other_machine.txt"))
    rc, _, err = run_cli("evaluate", trained)
    assert rc == 2 and "the folder came from elsewhere (written at " in err and "changed" not in err
    rc, _, err = run_cli("evaluate", trained, "--trust-model-code")
    assert rc == 0, err
    rc, _, err = run_cli("evaluate", trained)
    assert rc == 0, err
