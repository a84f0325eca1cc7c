"""Several optimizers stepped as one, and the parameter split that Muon needs.

Muon only takes the 2-D weight matrices of hidden layers; embeddings, the output
head, biases and norm gains go to a standard optimizer such as AdamW (Keller
Jordan's Muon post; ``torch.optim.Muon``'s documentation). PyTorch users step two
optimizers; ``CombinedOptimizer`` makes the two one object that a training loop,
a scheduler, gradient clipping and a checkpoint treat as a single optimizer::

    hidden, rest = rg.optim.muon_param_groups(model)
    opt = rg.optim.CombinedOptimizer(rg.optim.Muon(hidden, lr=0.02),
                                     rg.optim.AdamW(rest, lr=3e-4, weight_decay=0.01))
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import numpy as np

from .optimizer import Optimizer, _closure_loss

__all__ = ["CombinedOptimizer", "muon_param_groups"]


def muon_param_groups(model: Any) -> tuple[list, list]:
    """``(hidden_weights, rest)``: the parameters of ``model`` for Muon and for another optimizer.

    Muon gets every 2-D parameter except those of an ``nn.Embedding`` and those of
    the output head (the last ``nn.Linear`` in ``model.modules()`` order, the
    classifier of ``MLP``/``CNN`` and ``GPT``'s ``head``); the rest (biases, norm
    weights, embeddings, the head, convolution kernels, which ``torch.optim.Muon``
    does not take either) goes to ``rest``. Both lists keep ``model.parameters()``'s
    order. Raises ``ValueError`` when the model has no hidden 2-D weight."""
    modules = list(model.modules())
    linears = [m for m in modules if _is_a(m, "Linear")]
    excluded = {id(p) for m in modules if _is_a(m, "Embedding") for p in m.parameters()}
    if linears:
        excluded |= {id(p) for p in linears[-1].parameters()}
    hidden, rest = [], []
    for p in model.parameters():
        (hidden if p.ndim == 2 and id(p) not in excluded else rest).append(p)
    if not hidden:
        raise ValueError(f"muon_param_groups: {type(model).__name__} has no hidden 2-D weight for Muon (it takes "
                         "the weights of hidden Linear layers, not embeddings, the output layer, biases or "
                         "convolution kernels); use another optimizer, or a model with a hidden layer")
    return hidden, rest


class CombinedOptimizer(Optimizer):
    """Several optimizers over disjoint parameters, stepped as one.

    ``param_groups`` is the concatenation of the optimizers' groups (so one lr
    scheduler scales every group from its own initial lr, and ``param_groups[0]``
    is the first optimizer's); ``step``, ``zero_grad``, ``flat_grads`` and
    ``flat_params`` go to each optimizer in order. ``state_dict()`` has PyTorch's
    layout for one optimizer (parameters numbered across all groups in order; each
    group keeps its own optimizer's hyperparameters) plus ``"optimizers"``, the
    class name and group count of each, so ``load_state_dict`` splits it back and a
    resumed run continues exactly. ``Lookahead`` can wrap it.
    """

    def __init__(self, *optimizers: Optimizer) -> None:
        if len(optimizers) == 1 and isinstance(optimizers[0], (list, tuple)):
            optimizers = tuple(optimizers[0])
        if not optimizers:
            raise ValueError("CombinedOptimizer: expected at least one optimizer")
        for o in optimizers:
            if not isinstance(o, Optimizer):
                raise TypeError(f"CombinedOptimizer: expected retrograd optimizers, got {type(o).__name__}")
        seen: set[int] = set()
        for o in optimizers:
            for g in o.param_groups:
                for p in g["params"]:
                    if id(p) in seen:
                        raise ValueError("CombinedOptimizer: a parameter belongs to two of the optimizers; "
                                         "give each parameter to one of them")
                    seen.add(id(p))
        # no Optimizer.__init__: the parameters and their buffers belong to the inner optimizers
        self.optimizers: list[Optimizer] = list(optimizers)
        self._step_pre_hooks, self._step_post_hooks = {}, {}
        self._in_step = False

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    @param_groups.setter
    def param_groups(self, groups: list[dict]) -> None:
        groups = list(groups)
        counts = [len(o.param_groups) for o in self.optimizers]
        if len(groups) != sum(counts):
            raise ValueError(f"CombinedOptimizer: expected {sum(counts)} param groups, got {len(groups)}")
        for o, part in zip(self.optimizers, _split(groups, counts)):
            o.param_groups = part

    @property
    def _buckets(self) -> list:
        return [b for o in self.optimizers for b in o._buckets]

    @property
    def state(self) -> dict:
        return {k: v for o in self.optimizers for k, v in o.state.items()}

    @property
    def defaults(self) -> dict:
        return self.optimizers[0].defaults

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none)

    def flat_grads(self) -> list[np.ndarray]:
        return [f for o in self.optimizers for f in o.flat_grads()]

    def flat_params(self) -> list[np.ndarray]:
        return [f for o in self.optimizers for f in o.flat_params()]

    def step(self, closure: Callable | None = None) -> Any:
        """One step of each optimizer, in order; ``closure`` (re-evaluating the loss) runs once."""
        for hook in self._step_pre_hooks.values():
            hook(self, (self,), {})
        loss = _closure_loss(closure)
        for o in self.optimizers:
            o.step()
        for hook in self._step_post_hooks.values():
            hook(self, (self,), {})
        return loss

    step._hooked = True  # each inner step runs the global hooks and its groups' lr schedules

    def state_dict(self) -> dict:
        state: dict = {}
        groups: list[dict] = []
        offset = 0
        for o in self.optimizers:
            sd = o.state_dict()
            n = sum(len(g["params"]) for g in sd["param_groups"])
            groups += [{**g, "params": [i + offset for i in g["params"]]} for g in sd["param_groups"]]
            state.update({k + offset: v for k, v in sd["state"].items()})
            offset += n
        return {"state": state, "param_groups": groups,
                "optimizers": [{"name": type(o).__name__, "param_groups": len(o.param_groups)}
                               for o in self.optimizers]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict from ``state_dict()`` (``"optimizers"`` may be absent, as in the one
        ``Lookahead`` passes on); on an error every optimizer is left as it was."""
        counts = [len(o.param_groups) for o in self.optimizers]
        saved = state_dict.get("optimizers")
        if saved is not None:
            mine = [{"name": type(o).__name__, "param_groups": n} for o, n in zip(self.optimizers, counts)]
            found = [{"name": s.get("name"), "param_groups": s.get("param_groups")} for s in saved]
            if found != mine:
                raise ValueError(f"CombinedOptimizer.load_state_dict: the state dict is of optimizers "
                                 f"{_names(found)}, this one combines {_names(mine)}")
        groups = state_dict["param_groups"]
        if len(groups) != sum(counts):
            raise ValueError(f"CombinedOptimizer.load_state_dict: the state dict has {len(groups)} param groups, "
                             f"expected {sum(counts)}")
        parts, offset = [], 0
        for part in _split(groups, counts):
            n = sum(len(g["params"]) for g in part)
            local = {k - offset: v for k, v in state_dict["state"].items() if offset <= k < offset + n}
            parts.append({"state": local,
                          "param_groups": [{**g, "params": [i - offset for i in g["params"]]} for g in part]})
            offset += n
        before = [copy.deepcopy(o.state_dict()) for o in self.optimizers]
        done = 0
        try:
            for o, sd in zip(self.optimizers, parts):
                o.load_state_dict(sd)
                done += 1
        except Exception:
            for o, sd in zip(self.optimizers[:done], before):
                o.load_state_dict(sd)
            raise

    def __repr__(self) -> str:
        inner = ",\n".join("  " + repr(o).replace("\n", "\n  ") for o in self.optimizers)
        return f"CombinedOptimizer(\n{inner}\n)"


def _is_a(module: Any, name: str) -> bool:
    """Whether ``module`` is an ``rg.nn.<name>`` (or a subclass): optim sits below nn and does not import it."""
    return any(c.__name__ == name and c.__module__.startswith("retrograd.nn") for c in type(module).__mro__)


def _split(items: Sequence, counts: Sequence[int]) -> list[list]:
    out, i = [], 0
    for n in counts:
        out.append(list(items[i:i + n]))
        i += n
    return out


def _names(specs: list[dict]) -> str:
    return " + ".join(f"{s['name']} ({s['param_groups']} groups)" for s in specs)
