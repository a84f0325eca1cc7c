"""Returns and advantages from a rollout, in plain NumPy (no gradient flows through them).

Arrays are time-major, shape (T, N) for T steps of N envs; ``dones[t]`` is 1 where the episode ended
with step t (the value after it is then 0: a truncated episode's bootstrap value is already added to
its last reward by the rollout, see ``OnPolicyAlgorithm``).

GAE (Schulman et al., 2016, "High-dimensional continuous control using generalized advantage estimation"):

    delta_t = r_t + gamma (1 - d_t) V(s_{t+1}) - V(s_t)
    A_t     = delta_t + gamma lambda (1 - d_t) A_{t+1}          (= sum_l (gamma lambda)^l delta_{t+l}
                                                                    within the episode)
    R_t     = A_t + V(s_t)                                       (the value target, TD(lambda) return)
"""
from __future__ import annotations

import numpy as np

__all__ = ["gae", "discounted_returns"]


def gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_value: np.ndarray, gamma: float,
        gae_lambda: float) -> tuple[np.ndarray, np.ndarray]:
    """(advantages, returns), each shaped like ``rewards``; ``last_value`` is V(s_T) of the observation
    after the rollout, shape (N,)."""
    T = rewards.shape[0]
    adv = np.zeros_like(rewards, dtype=np.float64)
    running = np.zeros(rewards.shape[1:], np.float64)
    for t in reversed(range(T)):
        next_value = last_value if t == T - 1 else values[t + 1]
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * live * next_value - values[t]
        running = delta + gamma * gae_lambda * live * running
        adv[t] = running
    return adv.astype(np.float32), (adv + values).astype(np.float32)


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = sum_{k>=t} gamma^(k-t) r_k for one episode's rewards (1-D)."""
    out = np.zeros(len(rewards), np.float64)
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        out[t] = running
    return out.astype(np.float32)
