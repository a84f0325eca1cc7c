"""A run folder's model as an ONNX file (``retrograd export RUN --format onnx [--quantize int8]``).

    result = export_run("runs/fashion_cnn", quantize="int8")   # RUN/model.int8.onnx
    result["path"], result["max_abs_diff"]

The model comes back with ``load_run`` (best checkpoint if any, else last); example inputs are
made from the run's config: a batch of the input shape the run records (``LoadedRun.input_features``)
for a classifier or regressor, token ids ``(batch, seq)`` for a language model. The batch axis (and a
language model's sequence axis, up to its ``block_size``) is dynamic. The float32 graph is checked
with ``onnx.checker`` and verified in onnxruntime on other inputs (``rg.onnx.export(verify=True)``);
the written file's largest difference from retrograd on a third input is reported. ``quantize="int8"``: onnxruntime's dynamic quantisation
(``quantize_dynamic``: int8 weights, one scale per output channel, of MatMul/Conv/Gather/LSTM; activations
quantised at run time).
"""
from __future__ import annotations

import logging
import os
import pathlib
import tempfile
from typing import Any

import numpy as np

from ..engine import no_grad
from ..onnx import ExportError, export
from ..tensor import Tensor
from .config import ConfigError
from .predict import load_run

FORMATS = ("onnx",)
QUANTIZE = ("int8",)


def example_inputs(run: Any, batch: int = 2, seq: int | None = None) -> np.ndarray:
    """Random inputs in the shape of the run's model inputs (seeded: the same each call)."""
    rng = np.random.default_rng(0)
    if run.task == "language_model":
        block = int(getattr(run.model, "block_size", 0) or run.config["model"].get("block_size") or 8)
        vocab = int(run.config["model"].get("vocab_size") or getattr(run.model, "vocab_size", 2))
        return rng.integers(0, vocab, (batch, min(seq or 8, block))).astype(np.int64)
    want = run.input_features
    if want is None:
        raise ConfigError(f"{run.run_dir}: the run does not record its model's input shape (a model file of your own "
                          f"in a run folder written before inputs.json); export it in Python with rg.onnx.export")
    shape = (want,) if isinstance(want, int) else tuple(want)
    return rng.standard_normal((batch, *shape)).astype(np.float32)


def export_run(run_dir: str | pathlib.Path, output: str | pathlib.Path | None = None, *, fmt: str = "onnx",
               quantize: str | None = None, checkpoint: str | None = None, opset_version: int | None = None,
               trust_model_code: bool = False) -> dict:
    """Write the run's model as ONNX; returns ``{"path", "bytes", "checkpoint", "inputs", "max_abs_diff"}``.

    ``output``: a ``.onnx`` path (default ``RUN/model.onnx``, ``RUN/model.int8.onnx`` quantised); an
    existing file there is replaced (atomically: a failed export leaves the old one)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not one of: {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ConfigError(f"--quantize: {quantize!r} is not one of: {', '.join(QUANTIZE)}")
    run_dir = pathlib.Path(run_dir)
    out = pathlib.Path(output) if output else run_dir / ("model.int8.onnx" if quantize else "model.onnx")
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"--output {out}: expected a .onnx path")
    if out.is_dir():
        raise ConfigError(f"--output {out}: is a folder; expected a .onnx file path")
    run = load_run(run_dir, checkpoint, trust_model_code=trust_model_code, command="export")
    lm = run.task == "language_model"
    x = example_inputs(run)
    dyn = {"input": {0: "batch", 1: "seq"} if lm else {0: "batch"},
           "output": {0: "batch", 1: "seq"} if lm else {0: "batch"}}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=out.parent, prefix=f".{out.stem}.")
    os.close(fd)
    tmp = pathlib.Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private; the export is as any file the user writes
    try:
        try:
            export(run.model, (Tensor(x),), tmp, input_names=["input"], output_names=["output"],
                   dynamic_axes=dyn, opset_version=opset_version, verify=True)
        except ExportError as e:
            raise ConfigError(f"{run_dir}: {e}") from None
        if quantize:
            _quantize_int8(tmp)
        check = example_inputs(run, batch=3, seq=5)  # another batch size (and length) than the example
        diff = _max_abs_diff(run.model, tmp, check)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": str(out), "bytes": out.stat().st_size, "checkpoint": run.describe(), "inputs": list(x.shape),
            "quantize": quantize, "max_abs_diff": diff, "task": run.task}


def _quantize_int8(path: pathlib.Path) -> None:
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise ImportError("--quantize needs onnxruntime: pip install 'retrograd[export]'") from None
    q = path.with_name(path.stem + ".q.onnx")
    quiet = logging.root.manager.disable
    logging.disable(logging.WARNING)  # its advice to run onnxruntime's pre-processing first, on every call
    try:
        # one scale per output channel: MiniLM's embeddings keep cosine 0.990 to float32 (0.956 per tensor)
        quantize_dynamic(str(path), str(q), weight_type=QuantType.QInt8, per_channel=True)
        onnx.checker.check_model(str(q))
        os.replace(q, path)
    finally:
        logging.disable(quiet)
        q.unlink(missing_ok=True)


def _max_abs_diff(model: Any, path: pathlib.Path, x: np.ndarray) -> float | None:
    """The largest |onnxruntime - retrograd| on ``x`` (None without onnxruntime)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    model.eval()
    with no_grad():
        ref = model(Tensor(x)).numpy()
    return float(np.abs(got - ref).max())
