"""``GradientFlow``: per-layer gradient, update and activation diagnostics with plain-language verdicts.

Every ``every_n_steps`` optimizer steps it records, for each module that owns
parameters (a "layer", in ``named_modules`` order):

- ``grad_norm``: the L2 norm of the layer's gradients (after accumulation and clipping),
- ``weight_norm`` and ``update_ratio`` = ||w_after - w_before|| / ||w_before||
  (healthy training sits around 1e-3 per step),
- ``act_mean``/``act_std`` of the layer's output (a forward hook),
- ``dead_fraction``: the share of units (features; channels for images) of
  the ReLU that follows the layer whose output is zero for the whole batch;
  for a layer with no ReLU module after it (a functional ``relu`` in
  ``forward``, another activation, or none), the share of the layer's output
  units that get an exactly zero gradient for the whole batch: no learning
  signal reaches them, which is what a dead ReLU means, and what a saturated
  sigmoid or tanh never quite does.

``verdicts()`` compares the layers: gradients that shrink toward the input by
more than ``vanish_ratio`` (vanishing) or grow by more than ``explode_ratio``
(exploding), updates far too large or too small for the weights, dead ReLUs,
collapsed activations; each with what usually helps. ``report()`` is the table
plus verdicts; ``plot(path)`` a heatmap of log10 gradient norms (layers x steps).
"""
from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any

import numpy as np

from .callback import Callback
from .formatting import plural

__all__ = ["GradientFlow"]


def _sci(x: float) -> str:
    return f"{x:.1e}" if x == x else "nan"


class GradientFlow(Callback):
    def __init__(self, every_n_steps: int = 10, run_dir: str | os.PathLike | None = None, *,
                 vanish_ratio: float = 1e-3, explode_ratio: float = 1e3, max_update_ratio: float = 1e-1,
                 min_update_ratio: float = 1e-6, dead_threshold: float = 0.5) -> None:
        self.every_n_steps = max(1, int(every_n_steps))
        self.run_dir = pathlib.Path(run_dir) if run_dir is not None else None
        self.vanish_ratio = vanish_ratio
        self.explode_ratio = explode_ratio
        self.max_update_ratio = max_update_ratio
        self.min_update_ratio = min_update_ratio
        self.dead_threshold = dead_threshold
        self.records: list[dict] = []
        self.layers: list[str] = []
        self._handles: list = []
        self._active = False
        self._acts: dict[str, dict] = {}
        self._before: dict[str, list[np.ndarray]] = {}
        self._current: dict | None = None

    # ------------------------------------------------------------------ hooks on the model
    def _attach(self, model: Any) -> None:
        from ..nn.activation import ReLU
        self.detach()
        self._layers = [(n or type(m).__name__, m) for n, m in model.named_modules()
                        if any(p is not None for p in m._parameters.values())]
        self.layers = [n for n, _ in self._layers]
        leaves = [(n, m) for n, m in model.named_modules() if not m._modules]
        layer_ids = {id(m): n for n, m in self._layers}
        relu_after: dict[str, Any] = {}
        last = None
        for n, m in leaves:
            if id(m) in layer_ids:
                last = layer_ids[id(m)]
            elif isinstance(m, ReLU) and last is not None and last not in relu_after:
                relu_after[last] = m
        for name, m in self._layers:
            self._handles.append(m.register_forward_hook(self._act_hook(name, by_grad=name not in relu_after)))
        for name, r in relu_after.items():
            self._handles.append(r.register_forward_hook(self._dead_hook(name)))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _act_hook(self, name: str, by_grad: bool):
        def grad_hook(g: Any) -> None:
            self._acts.setdefault(name, {})["dead_fraction"] = _dead(g._array == 0)

        def hook(module: Any, args: tuple, out: Any) -> None:
            if not self._active or not hasattr(out, "_array"):
                return
            a = out._array
            d = self._acts.setdefault(name, {})
            d["act_mean"] = float(a.mean())
            d["act_std"] = float(a.std())
            if by_grad and getattr(out, "requires_grad", False):
                out.register_hook(grad_hook)  # runs in backward, before on_before_step reads it
        return hook

    def _dead_hook(self, name: str):
        def hook(module: Any, args: tuple, out: Any) -> None:
            if self._active and hasattr(out, "_array"):
                self._acts.setdefault(name, {})["dead_fraction"] = _dead(out._array <= 0)
        return hook

    # ------------------------------------------------------------------ trainer hooks
    def on_fit_start(self, trainer: Any) -> None:
        self._attach(trainer.model)

    def on_batch_start(self, trainer: Any, batch_idx: int, logs: dict) -> None:
        # sample the batches that end with the optimizer step we will record
        self._active = trainer.state.global_step % self.every_n_steps == 0
        if self._active and batch_idx % trainer.accumulate == 0:
            self._acts = {}

    def on_before_step(self, trainer: Any, batch_idx: int) -> None:
        if not self._active:
            return
        rec: dict = {"step": trainer.state.global_step, "epoch": trainer.state.epoch, "layers": {}}
        self._before = {}
        for name, m in self._layers:
            ps = [p for p in m._parameters.values() if p is not None]
            g2 = sum(float(np.sum(np.square(p.grad._array, dtype=np.float64))) for p in ps if p.grad is not None)
            w2 = sum(float(np.sum(np.square(p._array, dtype=np.float64))) for p in ps)
            rec["layers"][name] = {"grad_norm": math.sqrt(g2), "weight_norm": math.sqrt(w2),
                                   **self._acts.get(name, {})}
            self._before[name] = [p._array.copy() for p in ps]
        self._current = rec

    def on_batch_end(self, trainer: Any, batch_idx: int, logs: dict) -> None:
        rec = self._current
        if rec is None or trainer._pending:
            return
        for name, m in self._layers:
            ps = [p for p in m._parameters.values() if p is not None]
            d2 = sum(float(np.sum(np.square(p._array.astype(np.float64) - b))) for p, b in zip(ps, self._before[name]))
            w = rec["layers"][name]["weight_norm"]
            rec["layers"][name]["update_ratio"] = math.sqrt(d2) / w if w > 0 else float("nan")
        self.records.append(rec)
        self._current = None
        self._active = False
        self._before = {}

    def on_fit_end(self, trainer: Any) -> None:
        self.detach()
        if self.run_dir is not None and self.records:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.run_dir / "gradient_flow.jsonl", "w") as f:
                for r in self.records:
                    f.write(json.dumps(r) + "\n")
            (self.run_dir / "gradient_flow.txt").write_text(self.report() + "\n")
            self.plot(self.run_dir / "gradient_flow.png")

    # ------------------------------------------------------------------ analysis
    def _summary(self, last: int = 5) -> dict[str, dict]:
        """Per layer: the median of each quantity over the last ``last`` records."""
        recs = self.records[-last:]
        out: dict[str, dict] = {}
        for name in self.layers:
            vals: dict[str, list] = {}
            for r in recs:
                for k, v in r["layers"].get(name, {}).items():
                    vals.setdefault(k, []).append(v)
            out[name] = {k: float(np.nanmedian(v)) if not all(x != x for x in v) else float("nan")
                         for k, v in vals.items()}
        return out

    def verdicts(self) -> list[str]:
        """Plain-language findings about the latest records (empty when all looks healthy)."""
        if not self.records:
            return []
        s = self._summary()
        names = [n for n in self.layers if n in s and "grad_norm" in s[n]]
        out: list[str] = []
        if len(names) >= 2:
            first, last = names[0], names[-1]
            g0, gl = s[first]["grad_norm"], s[last]["grad_norm"]
            i0, il = 1, len(names)
            if gl > 0 and g0 / gl < self.vanish_ratio:
                out.append(f"layer {i0} ({first}) gradient is {_sci(g0 / gl)} of layer {il}'s ({last}): vanishing; "
                           "consider ReLU/He init/BatchNorm/residuals")
            elif gl > 0 and g0 / gl > self.explode_ratio:
                out.append(f"layer {i0} ({first}) gradient is {_sci(g0 / gl)} times layer {il}'s ({last}): "
                           "exploding; consider gradient clipping (grad_clip), a lower lr, normalisation layers or "
                           "smaller init")
        for i, n in enumerate(names, 1):
            d = s[n]
            g = d.get("grad_norm", float("nan"))
            if not math.isfinite(g):
                out.append(f"layer {i} ({n}) gradient is not finite: use NaNGuard to find the op")
                continue
            if g == 0.0:
                out.append(f"layer {i} ({n}) gets no gradient at all: it is cut off from the loss (dead units, "
                           "detach, or an unused branch)")
            u = d.get("update_ratio", float("nan"))
            if u == u and u > self.max_update_ratio:
                out.append(f"layer {i} ({n}) update/weight ratio is {_sci(u)} per step (healthy is about 1e-3): "
                           "updates are too large; lower the lr or clip gradients")
            elif u == u and 0 < u < self.min_update_ratio:
                out.append(f"layer {i} ({n}) update/weight ratio is {_sci(u)} per step: the layer barely learns; "
                           "raise the lr or check its gradient")
            dead = d.get("dead_fraction", float("nan"))
            if dead == dead and dead >= self.dead_threshold:
                out.append(f"layer {i} ({n}): {dead:.0%} of its units are dead (zero ReLU output or zero gradient "
                           "for the whole batch); consider a lower lr, LeakyReLU/GELU, or He init")
            std = d.get("act_std", float("nan"))
            if std == std and std < 1e-4:
                out.append(f"layer {i} ({n}) activations have collapsed (std {_sci(std)}): check init and "
                           "normalisation")
        return out

    def report(self) -> str:
        """A table of the latest per-layer medians, then the verdicts."""
        if not self.records:
            return "GradientFlow: no steps recorded yet"
        s = self._summary()
        head = f"{'#':>3} {'layer':<24} {'grad norm':>10} {'update/w':>10} {'act mean':>10} {'act std':>10} {'dead':>6}"
        lines = [f"GradientFlow: {plural(len(self.records), 'recorded step')} (last at step {self.records[-1]['step']})",
                 head]
        for i, n in enumerate(self.layers, 1):
            d = s.get(n, {})
            dead = d.get("dead_fraction", float("nan"))
            lines.append(f"{i:>3} {n[:24]:<24} {_sci(d.get('grad_norm', float('nan'))):>10} "
                         f"{_sci(d.get('update_ratio', float('nan'))):>10} {d.get('act_mean', float('nan')):>10.3g} "
                         f"{d.get('act_std', float('nan')):>10.3g} {('-' if dead != dead else f'{dead:.0%}'):>6}")
        v = self.verdicts()
        lines.append("verdicts:" if v else "verdicts: none (gradients flow evenly)")
        lines += ["  - " + x for x in v]
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike) -> pathlib.Path:
        from .plots import plot_gradient_flow
        return plot_gradient_flow(self.records, path, layers=self.layers)


def _dead(nonpos: np.ndarray) -> float:
    """Share of units never active across the batch: axis 0 is the batch; for
    (N, C, ...) a channel counts as a unit, for (N, ..., F) a feature does."""
    if nonpos.ndim < 2:
        return float(nonpos.all())
    if nonpos.ndim > 2:
        per_unit = nonpos.reshape(nonpos.shape[0], nonpos.shape[1], -1).all(axis=(0, 2))
    else:
        per_unit = nonpos.all(axis=0)
    return float(per_unit.mean())
