"""Model code named by a run folder, checked before it is imported.

A config whose ``[model] name`` is ``"m.py:MLP"`` makes ``retrograd evaluate``, ``resume`` and
``generate`` import ``m.py``: Python code that runs with your permissions, like PyTorch's
``torch.load`` without ``weights_only``. So:

- ``retrograd train`` records the model file in the run folder's ``model_code.json`` (its absolute
  path, size and SHA-256, with the host and the run folder's absolute path) and adds its SHA-256 to
  this user's list of trusted model code (``trusted_store()``: ``$RETROGRAD_TRUSTED_CODE``, else
  ``$XDG_DATA_HOME/retrograd/trusted_model_code.txt``, else ``~/.local/share/retrograd/...``);
- before a run folder's model file is imported, ``check_model_code`` hashes it and refuses
  (``UntrustedModelCode``, a ``ConfigError``) when the folder has no record, when the file changed
  since the record (another SHA-256 or another path), or when the folder came from elsewhere: the
  file's SHA-256 is not in this user's trusted list, i.e. this user never trained that code on
  this machine nor accepted it with ``--trust-model-code``. A forged record does not help a
  hostile folder: the trusted list lives outside it.

``--trust-model-code`` imports it anyway, adds its SHA-256 to the trusted list and records it as
the run's model code. Only the named file is hashed, not modules it imports itself.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import socket
import sys
from typing import Any

from .config import ConfigError

__all__ = ["RECORD", "UntrustedModelCode", "model_file", "trusted_store", "trusted_hashes", "trust",
           "record_model_code", "check_model_code"]

RECORD = "model_code.json"


class UntrustedModelCode(ConfigError):
    """A run folder's model file that is not imported without ``--trust-model-code``."""


def model_file(cfg: dict, base_dir: pathlib.Path | None) -> pathlib.Path | None:
    """The file a config's ``[model] name = "path.py:Class"`` names (relative paths from
    ``base_dir``, as ``config.validate`` resolves them), or None for a built-in model."""
    from ..models import MODELS

    model = cfg.get("model") if isinstance(cfg, dict) else None
    name = model.get("name") if isinstance(model, dict) else None
    if not isinstance(name, str) or name.lower() in MODELS or ":" not in name:
        return None
    file = name.rsplit(":", 1)[0]
    if not file.endswith(".py"):
        return None
    path = pathlib.Path(file)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path.absolute()


def _sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def trusted_store() -> pathlib.Path:
    """The file listing this user's trusted model code, one ``<sha256>  <path>`` a line."""
    env = os.environ.get("RETROGRAD_TRUSTED_CODE")
    if env:
        return pathlib.Path(env)
    base = os.environ.get("XDG_DATA_HOME") or pathlib.Path.home() / ".local" / "share"
    return pathlib.Path(base) / "retrograd" / "trusted_model_code.txt"


def trusted_hashes() -> set[str]:
    try:
        text = trusted_store().read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return {line.split()[0] for line in text.splitlines() if line.strip()}


def trust(sha256: str, path: pathlib.Path) -> None:
    """Add ``sha256`` to this user's trusted model code (a warning when the list cannot be written)."""
    if sha256 in trusted_hashes():
        return
    store = trusted_store()
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        with open(store, "a", encoding="utf-8") as f:
            f.write(f"{sha256}  {path}\n")
    except OSError as e:
        print(f"retrograd: warning: cannot add {path} to the trusted model code in {store}: {e}", file=sys.stderr)


def _write_record(run_dir: pathlib.Path, path: pathlib.Path, sha: str) -> dict:
    record = {"file": str(path), "bytes": path.stat().st_size, "sha256": sha, "host": socket.gethostname(),
              "run_dir": str(run_dir.resolve())}
    tmp = run_dir / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, run_dir / RECORD)
    return record


def record_model_code(run_dir: pathlib.Path, cfg: dict) -> dict | None:
    """At ``retrograd train``: record the (resolved) config's model file in ``run_dir/model_code.json``
    and trust its SHA-256 (the user just ran it). None for a built-in model."""
    path = model_file(cfg, None)
    if path is None:
        return None
    sha = _sha256(path)
    trust(sha, path)
    return _write_record(run_dir, path, sha)


def _read_record(run_dir: pathlib.Path) -> dict | None:
    try:
        record = json.loads((run_dir / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _where(host: Any, folder: Any) -> str:
    return f"{host}:{folder}"


def check_model_code(run_dir: pathlib.Path, raw_cfg: dict, *, trust_model_code: bool = False,
                     command: str = "") -> None:
    """Before a run folder's model file is imported (``raw_cfg``: its ``config.toml``, not yet
    validated, since validating imports the file): refuse unless the file is the one recorded and
    its SHA-256 is trusted here, or ``trust_model_code``. Built-in models pass."""
    path = model_file(raw_cfg, run_dir.resolve())
    if path is None or not path.is_file():
        return  # built-in, or missing: config.validate names the missing file, nothing is imported
    sha = _sha256(path)
    record = _read_record(run_dir)
    problems = []
    if record is None:
        problems.append(f"the folder has no valid {RECORD} recording the model file's SHA-256 (a folder written "
                        "by hand or by an older retrograd)")
    elif record.get("sha256") != sha or record.get("file") != str(path):
        problems.append(f"the model file changed since the run recorded it: {path} has SHA-256 {sha[:16]}..., "
                        f"the run recorded {str(record.get('sha256'))[:16]}... for {record.get('file')}")
    if sha not in trusted_hashes():
        here = _where(socket.gethostname(), run_dir.resolve())
        came = (f"written at {_where(record.get('host'), record.get('run_dir'))}, now at {here}"
                if record is not None else f"now at {here}")
        problems.append(f"the folder came from elsewhere ({came}): this model file's SHA-256 is not among the model "
                        f"code you trained here or trusted (listed in {trusted_store()})")
    if not problems:
        return
    if not trust_model_code:
        raise UntrustedModelCode(
            f"{run_dir}: refusing to import the model file {path}: {'; '.join(problems)}. A run folder's model "
            f"file is Python code that runs with your permissions; read it, then run "
            f"`retrograd {command or 'COMMAND'} {run_dir} --trust-model-code` to import it.")
    print(f"retrograd: --trust-model-code: importing {path} (SHA-256 {sha}) and recording it as the run's "
          f"model code", file=sys.stderr)
    trust(sha, path)
    _write_record(run_dir, path, sha)
