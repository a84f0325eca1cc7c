"""``rg.onnx.export(..., verify=True)``: run the exported graph in onnxruntime on inputs other than
the example's and compare with retrograd. A tracer sees only the ops it records: a model that reads
``tensor._array`` or turns a tensor into NumPy/Python values it then computes with leaves constants
in the graph that hold for the example inputs only. Other inputs show it: each dynamic axis one
shorter (all dynamic axes of one example size together, so inputs that share a length stay
aligned) and every input's values permuted (token ids stay valid ids, masks stay masks)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import no_grad
from ..tensor import Tensor
from .errors import ExportError


def _other_inputs(arrays: list[np.ndarray], axes: list[dict[int, str]], shorten: bool) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    sizes = {a.shape[k] for a, ax in zip(arrays, axes) for k in ax if a.shape[k] > 1} if shorten else set()
    out = []
    for a, ax in zip(arrays, axes):
        b = rng.permutation(a.reshape(-1)).reshape(a.shape)
        for k in ax:
            if a.shape[k] in sizes:
                b = np.take(b, np.arange(a.shape[k] - 1), axis=k)
        out.append(np.ascontiguousarray(b))
    return out


def verify(model: Any, args: tuple, proto: Any, in_names: list[str], out_names: list[str],
           axes: dict[str, dict[int, str]], flatten: Any, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("rg.onnx.export(verify=True) needs onnxruntime: pip install 'retrograd[export]'") from None
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    tensors = [a for a in args if a is not None]
    arrays = [t.numpy() for t in tensors]
    in_axes = [axes.get(n, {}) for n in in_names]
    for shorten in (True, False):  # a model that refuses the shorter inputs is checked on permuted ones
        new = _other_inputs(arrays, in_axes, shorten)
        it = iter(new)
        call = [None if a is None else Tensor(next(it)) for a in args]
        try:
            with no_grad():
                ref = [t.numpy() for t in flatten(model(*call))]
        except (ValueError, RuntimeError, IndexError, TypeError):
            if shorten:
                continue
            raise
        got = sess.run(out_names, dict(zip(in_names, new)))
        for name, r, o in zip(out_names, ref, got):
            if r.shape != o.shape or not np.allclose(o, r, rtol=rtol, atol=atol, equal_nan=True):
                diff = float(np.abs(o - r).max()) if r.shape == o.shape else f"shape {o.shape} != {r.shape}"
                raise ExportError(f"rg.onnx.export: verify: onnxruntime's '{name}' differs from retrograd's on "
                                  f"other inputs of shapes {[a.shape for a in new]} (max |diff| {diff}): the model "
                                  f"computes with values the tracer did not see (NumPy on tensor._array, a cache "
                                  f"keyed by a size, Python numbers read from tensors); they became constants")
        return
