"""State trees for a bitwise resume: modules, optimizers and random generators as numpy arrays, Python
scalars, strings, lists and dicts only (what ``io.checkpoint.save_tree`` stores without pickling)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..random import Generator
from ..tensor import Tensor
from ..versions import bump

__all__ = ["module_state", "load_module_state", "optimizer_state", "load_optimizer_state", "generator_state",
           "load_generator_state"]


def module_state(module: Any) -> dict:
    return {k: np.array(v._array) for k, v in module.state_dict().items()}


def load_module_state(module: Any, state: dict) -> None:
    own = module.state_dict()
    if set(own) != set(state):
        raise ValueError(f"module state has keys {sorted(state)}, expected {sorted(own)}")
    for k, t in own.items():
        arr = np.asarray(state[k])
        if arr.shape != t.shape:
            raise ValueError(f"module state {k}: shape {arr.shape}, expected {tuple(t.shape)}")
        t._array[...] = arr
        bump(t)


def optimizer_state(opt: Any) -> dict:
    sd = opt.state_dict()
    return {str(k): {n: (np.array(v._array) if isinstance(v, Tensor) else v) for n, v in st.items()}
            for k, st in sd["state"].items()}


def load_optimizer_state(opt: Any, state: dict) -> None:
    sd = opt.state_dict()
    sd["state"] = {int(k): dict(v) for k, v in state.items()}
    opt.load_state_dict(sd)


def generator_state(gen: Any) -> dict:
    np_gen = gen.np if isinstance(gen, Generator) else gen
    st = np_gen.bit_generator.state
    out = {"bit_generator": st["bit_generator"], "state": dict(st["state"]),
           "has_uint32": int(st["has_uint32"]), "uinteger": int(st["uinteger"])}
    if isinstance(gen, Generator):
        out["seed"] = gen.initial_seed()
    return out


def load_generator_state(gen: Any, state: dict) -> None:
    np_gen = gen.np if isinstance(gen, Generator) else gen
    np_gen.bit_generator.state = {"bit_generator": state["bit_generator"],
                                  "state": {k: int(v) for k, v in state["state"].items()},
                                  "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}
    if isinstance(gen, Generator):
        gen._seed = int(state["seed"])
