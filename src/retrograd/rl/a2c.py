"""A2C: synchronous advantage actor-critic (Mnih et al., 2016, "Asynchronous methods for deep RL", its
synchronous variant as in OpenAI Baselines / SB3).

One gradient step per rollout of T steps x N envs (T is small, 5 by default), with n-step / GAE(lambda)
advantages (lambda = 1 gives the paper's n-step returns):

    A_t = GAE(lambda) of the rollout,   R_t = A_t + V_old(s_t)
    L   = -mean_t A_t log pi_theta(a_t|s_t)  +  c_V mean_t (R_t - V_theta(s_t))^2
          - c_ent mean_t H[pi_theta(.|s_t)]

then gradient clipping to ``max_grad_norm`` and an RMSprop step (alpha 0.99, eps 1e-5) or Adam.
"""
from __future__ import annotations

import numpy as np

from ..nn.utils import clip_grad_norm_
from ..tensor import Tensor
from .onpolicy import ON_POLICY_DEFAULTS, OnPolicyAlgorithm, explained_variance
from .returns import gae

__all__ = ["A2C", "a2c_loss"]


def a2c_loss(log_prob: Tensor, advantages: np.ndarray, value: Tensor, returns: np.ndarray, entropy: Tensor, *,
             vf_coef: float, ent_coef: float, norm_adv: bool = False) -> tuple[Tensor, dict]:
    adv = advantages
    if norm_adv and adv.size > 1:
        adv = (adv - adv.mean()) / (adv.std(ddof=1) + 1e-8)
    pg_loss = -(Tensor(adv.astype(np.float32)) * log_prob).mean()
    v_loss = (Tensor(returns) - value).square().mean()
    ent = entropy.mean()
    loss = pg_loss + vf_coef * v_loss - ent_coef * ent
    return loss, {"policy_loss": float(pg_loss._array), "value_loss": float(v_loss._array),
                  "entropy": float(ent._array)}


class A2C(OnPolicyAlgorithm):
    name = "a2c"
    HYPERPARAMETERS = {**ON_POLICY_DEFAULTS, "num_envs": 16, "num_steps": 5, "gae_lambda": 1.0,
                       "learning_rate": 7e-4, "optimizer": "rmsprop", "norm_adv": False}

    def train_iteration(self) -> dict:
        hp = self.hp
        lr = self.current_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        ro, returns, lengths = self.collect_rollout()
        adv, ret = gae(ro.rewards, ro.values, ro.dones, ro.last_value, hp["gamma"], hp["gae_lambda"])
        B = ro.rewards.size
        obs = Tensor(ro.obs.reshape((B,) + ro.obs.shape[2:]))
        dist = self.policy.distribution(obs)
        loss, info = a2c_loss(dist.log_prob(Tensor(ro.actions.reshape((B,) + ro.actions.shape[2:]))),
                              adv.reshape(B), self.policy.value(obs), ret.reshape(B), self.policy.entropy(dist),
                              vf_coef=hp["vf_coef"], ent_coef=hp["ent_coef"], norm_adv=hp["norm_adv"])
        self.optimizer.zero_grad()
        loss.backward()
        info["grad_norm"] = float(clip_grad_norm_(self.policy.parameters(), hp["max_grad_norm"]))
        self.optimizer.step()
        info.update(learning_rate=lr, explained_variance=explained_variance(ro.values.ravel(), ret.ravel()))
        return self._finish(returns, lengths, info)
