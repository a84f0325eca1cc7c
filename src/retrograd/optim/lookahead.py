"""Lookahead: slow weights pulled towards the fast weights of any optimizer every k steps."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .optimizer import Optimizer

__all__ = ["Lookahead"]


class Lookahead(Optimizer):
    r"""Lookahead around any retrograd optimizer (the "fast" one).

    The inner optimizer updates the parameters (fast weights :math:`\theta`)
    as usual; every ``k`` of its steps the slow weights :math:`\phi` (a copy of
    the parameters taken at construction) move towards them and the
    parameters restart from there::

        theta_t <- inner.step(theta_{t-1})
        if t % k == 0:
            phi   <- phi + alpha * (theta_t - phi)
            theta_t <- phi

    Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step
    back" (NeurIPS 2019). The slow weights live in flat buffers matching the
    inner optimizer's, so the pull is one whole-buffer operation per
    (group, dtype). ``param_groups``, ``state`` and ``defaults`` are the inner
    optimizer's (so lr schedulers drive it); ``state_dict`` holds the inner
    state dict, the slow weights and the step counter. The inner optimizer's
    own state (Adam's moments) is kept across the pull, as in the paper.
    """

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"Lookahead: expected a retrograd optimizer to wrap, got {type(optimizer).__name__}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"Lookahead: invalid k {k!r}: expected an integer >= 1 (steps between pulls)")
        if not (0.0 <= float(alpha) <= 1.0):
            raise ValueError(f"Lookahead: invalid alpha {alpha!r}: expected 0 <= alpha <= 1")
        # no Optimizer.__init__: the parameters and their buffers belong to the inner optimizer
        self.optimizer = optimizer
        self.k, self.alpha = int(k), float(alpha)
        self._step_pre_hooks, self._step_post_hooks = {}, {}
        self._in_step = False
        self.lookahead_step = 0
        self._slow: list[np.ndarray] = []
        self._sync_slow()

    # the inner optimizer's groups, state and defaults, so that schedulers, hooks and
    # checkpoints see one optimizer
    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, groups: list[dict]) -> None:
        self.optimizer.param_groups = groups

    @property
    def state(self) -> Any:
        return self.optimizer.state

    @property
    def defaults(self) -> dict:
        return self.optimizer.defaults

    def _sync_slow(self) -> None:
        """Slow weights for buffers added since (add_param_group): a copy of the parameters."""
        flats = self.optimizer.flat_params()
        for f in flats[len(self._slow):]:
            self._slow.append(f.copy())

    def add_param_group(self, param_group: dict) -> None:
        """Add a group to the inner optimizer; its slow weights start at its parameters."""
        self.optimizer.add_param_group(param_group)
        self._sync_slow()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none)

    def flat_grads(self) -> list[np.ndarray]:
        return self.optimizer.flat_grads()

    def flat_params(self) -> list[np.ndarray]:
        return self.optimizer.flat_params()

    def step(self, closure: Callable | None = None) -> Any:
        """One step of the inner optimizer; every ``k``-th, the slow/fast pull."""
        for hook in self._step_pre_hooks.values():
            hook(self, (self,), {})
        loss = self.optimizer.step(closure)
        self.lookahead_step += 1
        if self.lookahead_step % self.k == 0:
            self._sync_slow()
            # the flat buffers are current after the inner step (it retakes rebound .data)
            for slow, fast in zip(self._slow, self.optimizer.flat_params()):
                slow += self.alpha * (fast - slow)
                np.copyto(fast, slow)
        for hook in self._step_post_hooks.values():
            hook(self, (self,), {})
        return loss

    step._hooked = True  # the inner optimizer's step runs the global hooks and lr schedules

    def state_dict(self) -> dict:
        """``{"state", "param_groups"}`` of the inner optimizer plus ``"lookahead"``:
        ``slow_weights`` (one array per parameter, by index, copies), ``step``, ``k``, ``alpha``."""
        sd = self.optimizer.state_dict()
        self._sync_slow()
        slow = {}
        i = 0
        for buckets, group in zip(self.optimizer._buckets, self.optimizer.param_groups):
            index = {id(p): j for j, p in enumerate(group["params"], i)}
            for b, s in zip(buckets, self._slow_for(buckets)):
                for i, p in enumerate(b.params):
                    slow[index[id(p)]] = s[b.segment(i)].reshape(p.shape).copy()
            i += len(group["params"])
        sd["lookahead"] = {"slow_weights": slow, "step": self.lookahead_step, "k": self.k, "alpha": self.alpha}
        return sd

    def _slow_for(self, buckets: list) -> list[np.ndarray]:
        # the slow buffers in the order of flat_params(): per group, per bucket
        flat_index = {id(b): j for j, b in enumerate(b for bs in self.optimizer._buckets for b in bs)}
        return [self._slow[flat_index[id(b)]] for b in buckets]

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict from ``Lookahead.state_dict()``."""
        if "lookahead" not in state_dict:
            raise ValueError("Lookahead.load_state_dict: the state dict has no 'lookahead' entry (slow weights "
                             "and step); was it saved from the inner optimizer instead?")
        la = state_dict["lookahead"]
        self._sync_slow()
        slow = la["slow_weights"]
        # check before changing anything
        i = 0
        todo = []
        for buckets, group in zip(self.optimizer._buckets, self.optimizer.param_groups):
            index = {id(p): j for j, p in enumerate(group["params"], i)}
            for b, s in zip(buckets, self._slow_for(buckets)):
                for i, p in enumerate(b.params):
                    j = index[id(p)]
                    if j not in slow:
                        raise ValueError(f"Lookahead.load_state_dict: no slow weights for parameter {j}")
                    v = slow[j]
                    arr = np.asarray(v)
                    if arr.shape != tuple(p.shape):
                        raise ValueError(f"Lookahead.load_state_dict: slow weights of parameter {j} have shape "
                                         f"{arr.shape}, expected {tuple(p.shape)}")
                    todo.append((s[b.segment(i)], arr))
            i += len(group["params"])
        self.optimizer.load_state_dict({"state": state_dict["state"], "param_groups": state_dict["param_groups"]})
        for seg, arr in todo:
            np.copyto(seg, arr.reshape(-1), casting="unsafe")
        self.lookahead_step = int(la["step"])
        self.k, self.alpha = int(la.get("k", self.k)), float(la.get("alpha", self.alpha))

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, optimizer={self.optimizer!r})"
