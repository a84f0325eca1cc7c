"""Seeded random number generators (PyTorch's ``Generator``/``manual_seed`` API on NumPy's PCG64)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .devices import check, is_device


class Generator:
    """A seedable source of randomness; ``rg.manual_seed`` seeds the default one. ``Generator(seed)``, or
    PyTorch's ``Generator(device="cpu")`` / ``Generator("cpu")`` (then seed it with ``manual_seed``).

    Draws come from NumPy's PCG64, so streams differ from PyTorch's while being
    just as reproducible: the same seed gives the same numbers on every run.
    """

    def __init__(self, seed: Any = None, device: Any = None) -> None:
        if seed is not None and is_device(seed):  # torch.Generator("cpu"): PyTorch's first argument is the device
            seed, device = None, seed
        self.device = check(device, "Generator")
        self._seed = int(np.random.SeedSequence().entropy % (2**63)) if seed is None else int(seed)
        self.np = np.random.Generator(np.random.PCG64(self._seed))

    def manual_seed(self, seed: int) -> "Generator":
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
        self._seed = int(seed)
        self.np = np.random.Generator(np.random.PCG64(self._seed))
        return self

    def initial_seed(self) -> int:
        return self._seed

    def seed(self) -> int:
        """Reseed from fresh entropy and return the new seed."""
        s = int(np.random.SeedSequence().entropy % (2**63))
        self.manual_seed(s)
        return s

    def get_state(self) -> dict:
        return {"seed": self._seed, "bit_generator": self.np.bit_generator.state}

    def set_state(self, new_state: dict) -> None:
        self._seed = int(new_state["seed"])
        self.np.bit_generator.state = new_state["bit_generator"]


default_generator = Generator(0)


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (as ``torch.manual_seed``)."""
    return default_generator.manual_seed(seed)


def initial_seed() -> int:
    return default_generator.initial_seed()


def seed() -> int:
    return default_generator.seed()


def get_rng_state() -> dict:
    return default_generator.get_state()


def set_rng_state(new_state: dict) -> None:
    default_generator.set_state(new_state)


def resolve(generator: Generator | None) -> np.random.Generator:
    g = default_generator if generator is None else generator
    if not isinstance(g, Generator):
        raise TypeError(f"generator must be an rg.Generator, got {type(g).__name__}")
    return g.np
