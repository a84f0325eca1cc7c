"""``evaluate(algo, episodes, seed)``: mean return of the deterministic policy over fresh episodes.

Episode ``i`` is played in an env reset with ``seed + i``; up to 16 envs run in lockstep so the policy
sees a batch; how many run together changes only the float rounding of the policy's matrix products.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["evaluate"]


def evaluate(algo: Any, episodes: int = 100, seed: int = 10_000, deterministic: bool = True,
             max_parallel: int = 16) -> np.ndarray:
    """Returns of ``episodes`` episodes (float64 array, in episode order)."""
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"evaluate: episodes must be a positive integer, got {episodes!r}")
    k = min(int(episodes), max_parallel)
    envs = [algo.make_env(seed + j) for j in range(k)]
    returns = np.zeros(episodes)
    episode_of = list(range(k))              # which episode each env is playing (-1: idle)
    obs = [env.reset(seed=seed + j)[0] for j, env in enumerate(envs)]
    nxt = k
    try:
        while True:
            live = [j for j in range(k) if episode_of[j] >= 0]
            if not live:
                break
            actions = algo.act(np.stack([obs[j] for j in live]), deterministic=deterministic)
            for a, j in zip(actions, live):
                o, r, term, trunc, _ = envs[j].step(a)
                returns[episode_of[j]] += float(r)
                if term or trunc:
                    if nxt < episodes:
                        episode_of[j] = nxt
                        o, _ = envs[j].reset(seed=seed + nxt)
                        nxt += 1
                    else:
                        episode_of[j] = -1
                obs[j] = o
    finally:
        for env in envs:
            env.close()
    return returns
