"""Metrics: plain functions ``(pred, target) -> float`` and accumulators that
give the exact value over a whole evaluation set.

Classification functions take ``pred`` as scores/logits ``(N, C)`` (or
``(N, ..., C)``) and ``target`` as class indices ``(N,)`` (``(N, ...)``);
``mae``, ``rmse`` and ``r2`` take matching shapes; ``perplexity`` takes logits ``(..., C)`` and
indices ``(...)`` and is ``exp`` of the mean cross-entropy (natural log).

A metric accumulator (``Metric``) sums the statistics over batches
(``update``) and computes once (``compute``): accuracy over all samples, F1
from the whole confusion matrix, perplexity from all tokens. ``get_metric``
turns a name (``"accuracy"``, ``"top5_accuracy"``, ``"f1"``, ``"mae"``,
``"perplexity"``) or a callable into one; a callable's per-batch values are
averaged weighted by batch size.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np

from ..tensor import Tensor

__all__ = ["accuracy", "top_k_accuracy", "f1_macro", "mae", "rmse", "r2", "perplexity", "Metric", "Accuracy",
           "TopKAccuracy", "F1Macro", "MAE", "RMSE", "R2", "Perplexity", "CallableMetric", "get_metric", "METRICS"]


def _np(x: Any) -> np.ndarray:
    return x._array if isinstance(x, Tensor) else np.asarray(x)


def _class_pred(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Predicted classes: argmax over the last axis, or a 0.5 threshold for one score per sample."""
    if pred.ndim == target.ndim + 1:
        return pred.argmax(-1)
    if pred.shape == target.shape:
        return (pred > 0.5).astype(np.int64) if pred.dtype.kind == "f" else pred
    raise ValueError(f"metric: pred of shape {pred.shape} does not match target of shape {target.shape} "
                     "(expected pred (N, C) and target (N,), or equal shapes)")


# --------------------------------------------------------------------------- accumulators
class Metric:
    """Accumulates one metric over batches: ``reset()``, ``update(pred, target)``, ``compute()``."""

    name = "metric"

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, pred: Any, target: Any) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError


class _Mean(Metric):
    """A mean over samples (or tokens): ``update`` adds their values to ``sum`` and
    their number to ``count``; ``compute`` is ``sum / count`` (nan before any)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sum, self.count = 0, 0

    def compute(self) -> float:
        return self.sum / self.count if self.count else float("nan")


class Accuracy(_Mean):
    name = "accuracy"

    def update(self, pred: Any, target: Any) -> None:
        t = _np(target)
        self.sum += int((_class_pred(_np(pred), t) == t).sum())
        self.count += t.size


class TopKAccuracy(_Mean):
    def __init__(self, k: int = 5) -> None:
        self.k = int(k)
        self.name = f"top{self.k}_accuracy"
        super().__init__()

    def update(self, pred: Any, target: Any) -> None:
        p, t = _np(pred), _np(target)
        if p.ndim != t.ndim + 1:
            raise ValueError(f"top_k_accuracy: pred must be scores (N, C) for target (N,), got {p.shape} and "
                             f"{t.shape}")
        k = min(self.k, p.shape[-1])
        top = np.argpartition(-p, k - 1, axis=-1)[..., :k]
        self.sum += int((top == t[..., None]).any(-1).sum())
        self.count += t.size


class F1Macro(Metric):
    """Unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN); a class that
    never occurs in targets or predictions is left out (scikit-learn counts it as 0
    with a warning; ``labels`` fixes the class set when given)."""

    name = "f1"

    def __init__(self, num_classes: int | None = None) -> None:
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        self.tp: dict = {}
        self.fp: dict = {}
        self.fn: dict = {}

    def update(self, pred: Any, target: Any) -> None:
        t = _np(target).reshape(-1).astype(np.int64)
        p = _class_pred(_np(pred), _np(target)).reshape(-1).astype(np.int64)
        n = max(int(t.max(initial=0)), int(p.max(initial=0))) + 1
        if self.num_classes:
            n = max(n, self.num_classes)
        tp = np.bincount(t[p == t], minlength=n)
        fp = np.bincount(p[p != t], minlength=n)
        fn = np.bincount(t[p != t], minlength=n)
        for c in range(n):
            self.tp[c] = self.tp.get(c, 0) + int(tp[c])
            self.fp[c] = self.fp.get(c, 0) + int(fp[c])
            self.fn[c] = self.fn.get(c, 0) + int(fn[c])

    def compute(self) -> float:
        scores = []
        for c in sorted(self.tp):
            tp, fp, fn = self.tp[c], self.fp[c], self.fn[c]
            if tp + fp + fn == 0:
                if self.num_classes:
                    scores.append(0.0)
                continue
            scores.append(2 * tp / (2 * tp + fp + fn))
        return float(np.mean(scores)) if scores else float("nan")


class MAE(_Mean):
    name = "mae"

    def update(self, pred: Any, target: Any) -> None:
        p, t = _np(pred).astype(np.float64), _np(target).astype(np.float64)
        if p.shape != t.shape and p.size == t.size:
            p = p.reshape(t.shape)
        self.sum += float(np.abs(p - t).sum())
        self.count += np.broadcast(p, t).size


def _regression_pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = _np(pred).astype(np.float64), _np(target).astype(np.float64)
    if p.shape != t.shape and p.size == t.size:
        p = p.reshape(t.shape)
    if p.shape != t.shape:
        raise ValueError(f"metric: pred of shape {p.shape} does not match target of shape {t.shape}")
    return p, t


class RMSE(_Mean):
    """Root of the mean squared error over every target value."""

    name = "rmse"

    def update(self, pred: Any, target: Any) -> None:
        p, t = _regression_pair(pred, target)
        self.sum += float(((p - t) ** 2).sum())
        self.count += t.size

    def compute(self) -> float:
        return float(np.sqrt(super().compute()))


class R2(Metric):
    """Coefficient of determination ``1 - SS_res / SS_tot`` over the whole set, per target column
    and averaged over columns (scikit-learn's ``r2_score``, ``multioutput="uniform_average"``); a
    constant target column scores 1 when predicted exactly, else 0 (as scikit-learn)."""

    name = "r2"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.n, self.sum, self.sumsq, self.res = 0, 0.0, 0.0, 0.0

    def update(self, pred: Any, target: Any) -> None:
        p, t = _regression_pair(pred, target)
        p, t = p.reshape(len(t), -1), t.reshape(len(t), -1)
        self.n += len(t)
        self.sum = self.sum + t.sum(0)
        self.sumsq = self.sumsq + (t ** 2).sum(0)
        self.res = self.res + ((t - p) ** 2).sum(0)

    def compute(self) -> float:
        if self.n < 2:
            return float("nan")
        tot = np.maximum(self.sumsq - self.sum ** 2 / self.n, 0.0)
        res = np.asarray(self.res, dtype=np.float64)
        scores = np.where(tot > 0, 1 - res / np.where(tot > 0, tot, 1), np.where(res == 0, 1.0, 0.0))
        return float(np.mean(scores))


class Perplexity(_Mean):
    """``exp(mean over tokens of -log softmax(logits)[target])``; targets equal to
    ``ignore_index`` are left out."""

    name = "perplexity"

    def __init__(self, ignore_index: int = -100) -> None:
        self.ignore_index = ignore_index
        super().__init__()

    def update(self, pred: Any, target: Any) -> None:
        logits = _np(pred).astype(np.float64)
        t = _np(target).astype(np.int64)
        if logits.ndim != t.ndim + 1 or logits.shape[:-1] != t.shape:
            raise ValueError(f"perplexity: logits of shape {logits.shape} do not match targets of shape "
                             f"{t.shape} (expected logits (..., C) and targets (...))")
        logits = logits.reshape(-1, logits.shape[-1])
        t = t.reshape(-1)
        keep = t != self.ignore_index
        logits, t = logits[keep], t[keep]
        m = logits.max(-1, keepdims=True)
        lse = (m[:, 0] + np.log(np.exp(logits - m).sum(-1)))
        self.sum += float((lse - logits[np.arange(len(t)), t]).sum())
        self.count += len(t)

    def compute(self) -> float:
        return float(np.exp(super().compute()))


class CallableMetric(_Mean):
    """A user's ``fn(pred, target) -> float``, averaged over batches weighted by batch size."""

    def __init__(self, fn: Callable, name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "metric")
        super().__init__()

    def update(self, pred: Any, target: Any) -> None:
        n = len(_np(target)) if _np(target).ndim else 1
        v = self.fn(pred, target)
        self.sum += float(v.item() if isinstance(v, Tensor) else v) * n
        self.count += n


# --------------------------------------------------------------------------- functions
def _once(metric: Metric, pred: Any, target: Any) -> float:
    metric.update(pred, target)
    return metric.compute()


def accuracy(pred: Any, target: Any) -> float:
    """Fraction of samples whose argmax class (or thresholded score) equals the target."""
    return _once(Accuracy(), pred, target)


def top_k_accuracy(pred: Any, target: Any, k: int = 5) -> float:
    """Fraction of samples whose target is among the ``k`` highest scores."""
    return _once(TopKAccuracy(k), pred, target)


def f1_macro(pred: Any, target: Any, num_classes: int | None = None) -> float:
    """Macro-averaged F1 over the classes present in targets or predictions."""
    return _once(F1Macro(num_classes), pred, target)


def mae(pred: Any, target: Any) -> float:
    """Mean absolute error."""
    return _once(MAE(), pred, target)


def rmse(pred: Any, target: Any) -> float:
    """Root mean squared error."""
    return _once(RMSE(), pred, target)


def r2(pred: Any, target: Any) -> float:
    """Coefficient of determination (scikit-learn's ``r2_score``)."""
    return _once(R2(), pred, target)


def perplexity(pred: Any, target: Any) -> float:
    """``exp`` of the mean token cross-entropy of logits ``(..., C)`` against indices ``(...)``."""
    return _once(Perplexity(), pred, target)


METRICS: dict[str, Callable[[], Metric]] = {
    "accuracy": Accuracy, "acc": Accuracy, "f1": F1Macro, "f1_macro": F1Macro, "mae": MAE,
    "rmse": RMSE, "r2": R2, "perplexity": Perplexity, "ppl": Perplexity, "top_k_accuracy": TopKAccuracy,
}


def get_metric(spec: Any) -> Metric:
    """A fresh ``Metric`` from a name, a ``Metric`` instance or class, or a callable ``(pred, target)``."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, type) and issubclass(spec, Metric):
        return spec()
    if isinstance(spec, str):
        m = re.fullmatch(r"top[_-]?(\d+)(?:_acc(?:uracy)?)?", spec)
        if m:
            return TopKAccuracy(int(m.group(1)))
        if spec in METRICS:
            metric = METRICS[spec]()
            metric.name = spec if spec not in ("acc", "ppl", "f1_macro") else metric.name
            return metric
        raise ValueError(f"unknown metric {spec!r}; expected one of {sorted(METRICS)}, 'top<k>_accuracy' or a "
                         "callable (pred, target) -> float")
    if callable(spec):
        return CallableMetric(spec)
    raise TypeError(f"metric must be a name or a callable, got {type(spec).__name__}")
