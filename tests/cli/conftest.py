"""Helpers for the CLI tests: small configs written to tmp_path, the CLI run in-process."""
import pathlib

import pytest
from cli_helpers import DIGITS_MLP

from retrograd import cli


@pytest.fixture
def write_config(tmp_path):
    """``write_config(text, name="c")`` -> path of a TOML config whose runs go under tmp_path/runs."""
    def write(text: str = DIGITS_MLP, name: str = "c") -> pathlib.Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(text + f'\n[run]\ndir = "{(tmp_path / "runs").as_posix()}"\n')
        return path
    return write


@pytest.fixture
def run_cli(capsys):
    """``run_cli(*argv, callbacks=())`` -> (exit status, stdout, stderr)."""
    def run(*argv, callbacks=()):
        rc = cli.main([str(a) for a in argv], extra_callbacks=callbacks)
        out = capsys.readouterr()
        return rc, out.out, out.err
    return run



@pytest.fixture(autouse=True)
def trusted_code_store(tmp_path, monkeypatch):
    """Each test's own list of trusted model code (``retrograd train`` adds to it), never the user's."""
    path = tmp_path / "trusted_model_code.txt"
    monkeypatch.setenv("RETROGRAD_TRUSTED_CODE", str(path))
    return path
