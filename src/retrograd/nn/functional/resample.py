"""Resampling: ``interpolate`` (nearest, linear, bilinear, bicubic, trilinear, area), a separable
``Rule`` whose backward is a ``Rule`` too."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...amp.autocast_mode import outside_autocast
from ...ops import Rule, call
from ...tensor import Tensor, wrap_array
from ._args import _float_input
from .pool import _adaptive_matrix, adaptive_avg_pool1d, adaptive_avg_pool2d


_INTERP_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")
_INTERP_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}  # the spatial rank each mode needs
_CUBIC_A = -0.75


def _interp_scale(n_in: int, n_out: int, align_corners: bool, scale: float | None, dt: type) -> Any:
    """torch's ``area_pixel_compute_scale`` in the weights' dtype: source step per output step; with a
    user ``scale_factor`` (not recomputed) it is ``1 / scale_factor``, not ``in / out``."""
    if align_corners:
        return dt(n_in - 1) / dt(n_out - 1) if n_out > 1 else dt(0)
    if scale is not None and scale > 0:
        return dt(1.0 / scale)
    return dt(n_in) / dt(n_out)


def _interp_taps(n_in: int, n_out: int, cubic: bool, align_corners: bool, scale: float | None,
                 dt: type) -> tuple[np.ndarray, np.ndarray] | None:
    """One axis of the resampling: ``(index, weight)``, each ``(taps, n_out)``, with out[o] =
    sum_k in[index[k, o]] weight[k, o]; ``None`` for a linear axis that keeps its size (torch copies).
    Follows torch's ``area_pixel_compute_source_index`` / ``guard_index_and_lambda`` in ``dt``."""
    if n_in == n_out and not cubic:
        return None
    s = _interp_scale(n_in, n_out, align_corners, scale, dt)
    o = np.arange(n_out).astype(dt)
    real = s * o if align_corners else s * (o + dt(0.5)) - dt(0.5)
    if not (cubic or align_corners):
        real = np.where(real < 0, dt(0), real)  # torch (after OpenCV): clamp the left border for linear
    i0 = np.minimum(np.floor(real).astype(np.int64), n_in - 1)
    t = np.clip(real - i0.astype(dt), dt(0), dt(1))
    if not cubic:
        idx = np.stack([i0, i0 + (i0 < n_in - 1)])
        return idx, np.stack([dt(1) - t, t])
    a = dt(_CUBIC_A)
    conv1 = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # noqa: E731  |x| <= 1
    conv2 = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # noqa: E731  1 < |x| < 2
    t2 = dt(1) - t
    w = np.stack([conv2(t + dt(1)), conv1(t), conv1(t2), conv2(t2 + dt(1))]).astype(dt)
    idx = np.clip(i0[None] + np.arange(-1, 3)[:, None], 0, n_in - 1)  # torch clamps border reads
    return idx, w


def _resample_f(ins, kw):
    x = ins[0]
    for axis, idx, w, _, _ in reversed(kw["plan"]):  # last axis first: torch's nesting, so its rounding
        shape = [1] * x.ndim
        shape[axis] = -1
        acc = None
        for ik, wk in zip(idx, w):
            term = x.take(ik, axis=axis) * wk.astype(x.dtype).reshape(shape)
            acc = term if acc is None else acc.__iadd__(term)
        x = acc
    return x


def _resample_b(g, out, ins, kw, needs):
    return (call(RESAMPLE_BACKWARD, (g,), kw),)
RESAMPLE = Rule("upsample", _resample_f, _resample_b, needs_inputs=False)


def _segments(ik: np.ndarray) -> tuple:
    """For a rising tap index: where each run of equal indices starts (``None`` when every run has
    length 1), and the indices the runs hit, as a slice when evenly spaced (integer up/down factors:
    a slice scatter is much cheaper than a fancy-index one)."""
    st = np.flatnonzero(np.diff(ik, prepend=-1))
    dst = ik[st]
    step = np.diff(dst)
    if len(dst) == 1 or (step == step[0]).all():
        dst = slice(int(dst[0]), int(dst[-1]) + 1, int(step[0]) if len(dst) > 1 else 1)
    return (None if len(st) == len(ik) else st), dst


def _resample_bf(ins, kw):
    """The adjoint: per axis, scatter-add of ``g * weight`` into the tap indices. The indices of
    each tap rise with the output index, so the scatter is a segment sum (``add.reduceat``)."""
    g = ins[0]
    for axis, idx, w, n_in, starts in kw["plan"]:
        shape = [1] * g.ndim
        shape[axis] = -1
        gx = np.zeros(g.shape[:axis] + (n_in,) + g.shape[axis + 1:], dtype=g.dtype)
        lead = (slice(None),) * axis
        for wk, (st, dst) in zip(w, starts):
            c = g * wk.astype(g.dtype).reshape(shape)
            gx[lead + (dst,)] += c if st is None else np.add.reduceat(c, st, axis=axis)
        g = gx
    return g


def _resample_bb(gg, out, ins, kw, needs):
    return (call(RESAMPLE, (gg,), kw),)
RESAMPLE_BACKWARD = Rule("upsample_backward", _resample_bf, _resample_bb, needs_inputs=False)


def _interp_sizes(input: Tensor, nd: int, size: Any, scale_factor: Any,  # noqa: A002
                  recompute_scale_factor: bool | None) -> tuple[tuple, list]:
    """torch's argument handling: ``(output sizes, scale per axis or None)``."""
    in_sz = tuple(input.shape[2:])
    if size is not None and scale_factor is not None:
        raise ValueError("interpolate: only one of size or scale_factor should be defined")
    if size is not None:
        if recompute_scale_factor:
            raise ValueError("interpolate: recompute_scale_factor is not meaningful with an explicit size.")
        sizes = list(size) if isinstance(size, (list, tuple)) else [size] * nd
        if len(sizes) != nd:
            raise ValueError(f"interpolate: Input and output must have the same number of spatial dimensions, "
                             f"but got input with spatial dimensions of {list(in_sz)} and output size of {size}. "
                             "Please provide input tensor in (N, C, d1, d2, ...,dK) format and output size in "
                             "(o1, o2, ...,oK) format.")
        if not all(isinstance(v, (int, np.integer)) for v in sizes):
            raise TypeError("interpolate: expected size to be one of int or Tuple[int] or Tuple[int, int] or "
                            f"Tuple[int, int, int], but got size with types {[type(v) for v in sizes]}")
        return tuple(int(v) for v in sizes), [None] * nd
    if scale_factor is None:
        raise ValueError("interpolate: either size or scale_factor should be defined, got neither (only one of "
                         "size or scale_factor should be defined)")
    sf = list(scale_factor) if isinstance(scale_factor, (list, tuple)) else [scale_factor] * nd
    if len(sf) != nd:
        raise ValueError(f"interpolate: Input and scale_factor must have the same number of spatial dimensions, "
                         f"but got input with spatial dimensions of {list(in_sz)} and scale_factor of shape "
                         f"{scale_factor}. Please provide input tensor in (N, C, d1, d2, ...,dK) format and "
                         "scale_factor in (s1, s2, ...,sK) format.")
    sf = [float(v) for v in sf]
    if not all(math.isfinite(v) for v in sf):
        raise RuntimeError(f"interpolate: scale_factor must be finite, got {scale_factor} (the output size "
                           "cannot be converted to int64)")
    out_sz = tuple(int(math.floor(n * f)) for n, f in zip(in_sz, sf))
    return out_sz, ([None] * nd if recompute_scale_factor else sf)


def _check_interp_sizes(in_sz: tuple, out_sz: tuple) -> None:
    if min(in_sz) > 0 and min(out_sz) > 0:
        return
    names = ("D", "H", "W")[3 - len(in_sz):]
    fmt = lambda sz: "(" + ", ".join(f"{a}: {b}" for a, b in zip(names, sz)) + ")"  # noqa: E731
    raise RuntimeError(f"interpolate: Input and output sizes should be greater than 0, but got input "
                       f"{fmt(in_sz)} output {fmt(out_sz)}")


def _area(x: Tensor, out_sz: tuple) -> Tensor:
    """``mode='area'`` is adaptive average pooling to the output size, as in torch."""
    if min(out_sz) < 0:
        raise RuntimeError(f"interpolate: mode 'area' needs non-negative output sizes, got {out_sz}")
    if len(out_sz) == 1:
        return adaptive_avg_pool1d(x, out_sz[0])
    if len(out_sz) == 2:
        return adaptive_avg_pool2d(x, out_sz)
    n, c, d, h, w = x.shape
    pd = wrap_array(_adaptive_matrix(d, out_sz[0], x.dtype))
    y = (pd @ x.reshape(n, c, d, h * w)).reshape(n * c * out_sz[0], 1, h, w)
    return adaptive_avg_pool2d(y, out_sz[1:]).reshape(n, c, *out_sz)


@outside_autocast  # one kernel in PyTorch, on no autocast list
def interpolate(input: Tensor, size: Any = None, scale_factor: Any = None, mode: str = "nearest",  # noqa: A002
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> Tensor:
    """Resize the spatial dims of ``(N, C, *spatial)`` as ``torch.nn.functional.interpolate``.

    ``'nearest'``/``'nearest-exact'`` (torch's index rule ``floor(dst * in / out)``, in float32);
    ``'linear'`` (3-D), ``'bilinear'``/``'bicubic'`` (4-D, cubic A = -0.75 with clamped border reads),
    ``'trilinear'`` (5-D): separable, one gather + weighted sum per axis with torch's source-index
    formula (``1 / scale_factor`` when a scale is given and not recomputed), weights in the input's
    float dtype; backward is the adjoint (a separate Rule, so twice differentiable). ``'area'`` is
    adaptive average pooling. ``antialias=True`` is not implemented.
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"interpolate(): argument 'input' must be Tensor, not {type(input).__name__}")
    if mode not in _INTERP_MODES:
        raise NotImplementedError(f"interpolate: mode {mode!r} is not implemented (expected one of nearest | "
                                  "linear | bilinear | bicubic | trilinear | area | nearest-exact)")
    if mode in ("nearest", "nearest-exact", "area"):
        if align_corners is not None:
            raise ValueError("interpolate: align_corners option can only be set with the interpolating modes: "
                             "linear | bilinear | bicubic | trilinear")
    elif align_corners is None:
        align_corners = False
    nd = input.ndim - 2
    if not 1 <= nd <= 3:
        raise NotImplementedError(f"interpolate: Input Error: Only 3D, 4D and 5D input Tensors supported (got "
                                  f"{input.ndim}D) for the modes: nearest | linear | bilinear | bicubic | trilinear"
                                  f" | area | nearest-exact (got {mode}); input of shape {tuple(input.shape)}")
    if mode in _INTERP_DIMS and _INTERP_DIMS[mode] != nd:
        need = _INTERP_DIMS[mode] + 2
        raise NotImplementedError(f"interpolate: Got {input.ndim}D input, but {mode} mode needs {need}D input "
                                  f"(input of shape {tuple(input.shape)})")
    in_sz = tuple(input.shape[2:])
    out_sz, scales = _interp_sizes(input, nd, size, scale_factor, recompute_scale_factor)
    if antialias:
        if mode not in ("bilinear", "bicubic"):
            raise ValueError("interpolate: Anti-alias option is restricted to bilinear and bicubic modes and "
                             "requires a 4-D tensor as input")
        raise NotImplementedError(f"interpolate: antialias=True is not implemented (mode {mode!r}); "
                                  "use antialias=False")
    if mode == "area":
        return _area(_float_input(input, "interpolate"), out_sz)
    _check_interp_sizes(in_sz, out_sz)
    if mode in ("nearest", "nearest-exact"):
        x = input
        for d, (n, o, sc) in enumerate(zip(in_sz, out_sz, scales)):
            if n == o:
                continue
            scale = np.float32(1.0 / sc) if sc is not None and sc > 0 else np.float32(n) / np.float32(o)
            dst = np.arange(o, dtype=np.float32)
            src = np.floor((dst + np.float32(0.5)) * scale if mode == "nearest-exact" else dst * scale)
            src = np.minimum(src.astype(np.int64), n - 1)
            x = x.index_select(2 + d, wrap_array(src))
        return x
    x = _float_input(input, "interpolate")
    dt = np.float64 if x.dtype == np.float64 else np.float32  # torch's opmath type
    plan = []
    for d, (n, o, sc) in enumerate(zip(in_sz, out_sz, scales)):
        taps = _interp_taps(n, o, mode == "bicubic", align_corners, sc, dt)
        if taps is not None:
            plan.append((2 + d, taps[0], taps[1], n, tuple(_segments(ik) for ik in taps[0])))
    if not plan:
        return x.clone()
    return Tensor._apply(RESAMPLE, (x,), {"plan": tuple(plan)})


def _pixel_factor(input: Tensor, factor: int, op: str, name: str) -> int:  # noqa: A002
    if input.ndim < 3:
        raise RuntimeError(f"{op} expects input to have at least 3 dimensions, but got input with "
                           f"{input.ndim} dimension(s)")
    if int(factor) <= 0:
        raise RuntimeError(f"{op} expects a positive {name}, but got {factor}")
    return int(factor)


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:  # noqa: A002
    """``(*, C r^2, H, W)`` -> ``(*, C, H r, W r)`` (sub-pixel convolution's rearrangement)."""
    r = _pixel_factor(input, upscale_factor, "pixel_shuffle", "upscale_factor")
    *batch, c, h, w = input.shape
    if c % (r * r):
        raise RuntimeError(f"pixel_shuffle expects its input's 'channel' dimension to be divisible by the square "
                           f"of upscale_factor, but input.size(-3)={c} is not divisible by {r * r}")
    nb = len(batch)
    x = input.reshape(*batch, c // (r * r), r, r, h, w)
    x = x.permute(*range(nb), nb, nb + 3, nb + 1, nb + 4, nb + 2)
    return x.reshape(*batch, c // (r * r), h * r, w * r)


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:  # noqa: A002
    """``(*, C, H r, W r)`` -> ``(*, C r^2, H, W)``, the inverse of ``pixel_shuffle``."""
    r = _pixel_factor(input, downscale_factor, "pixel_unshuffle", "downscale_factor")
    *batch, c, h, w = input.shape
    for name, n, k in (("height", h, -2), ("width", w, -1)):
        if n % r:
            raise RuntimeError(f"pixel_unshuffle expects {name} to be divisible by downscale_factor, but "
                               f"input.size({k})={n} is not divisible by {r}")
    nb = len(batch)
    x = input.reshape(*batch, c, h // r, r, w // r, r)
    x = x.permute(*range(nb), nb, nb + 2, nb + 4, nb + 1, nb + 3)
    return x.reshape(*batch, c * r * r, h // r, w // r)
