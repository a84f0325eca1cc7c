"""PPO: proximal policy optimisation with the clipped surrogate (Schulman et al., 2017, arXiv:1707.06347).

For each rollout of T steps x N envs, advantages come from GAE(lambda) (see ``returns.gae``); then for
``update_epochs`` epochs the batch is shuffled into ``num_minibatches`` minibatches and, on each,

    r_t(theta) = exp(log pi_theta(a_t|s_t) - log pi_old(a_t|s_t))
    A_t       <- (A_t - mean(A)) / (std(A) + 1e-8)                       (if norm_adv, per minibatch)
    L_clip    = mean_t max(-A_t r_t, -A_t clip(r_t, 1 - eps, 1 + eps))    (minimised: the negated objective)
    L_V       = 1/2 mean_t (V_theta(s_t) - R_t)^2,   or with clip_vloss
                1/2 mean_t max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)
    L         = L_clip - c_ent mean_t H[pi_theta(.|s_t)] + c_V L_V

followed by gradient clipping to ``max_grad_norm`` (global L2 norm) and an Adam step. ``clip_coef``
and the learning rate can be annealed linearly to 0 over ``total_timesteps``; with ``target_kl`` an
epoch loop stops early once the approximate KL (mean of (r - 1) - log r) exceeds it.
"""
from __future__ import annotations

import numpy as np

from ..nn.utils import clip_grad_norm_
from ..tensor import Tensor
from .base import check_range
from .onpolicy import ON_POLICY_DEFAULTS, OnPolicyAlgorithm, explained_variance
from .returns import gae

__all__ = ["PPO", "ppo_loss"]


def ppo_loss(new_log_prob: Tensor, old_log_prob: np.ndarray, advantages: np.ndarray, new_value: Tensor,
             old_value: np.ndarray, returns: np.ndarray, entropy: Tensor, *, clip_coef: float, vf_coef: float,
             ent_coef: float, norm_adv: bool = True, clip_vloss: bool = False) -> tuple[Tensor, dict]:
    """The PPO loss on one minibatch (shapes (B,)); returns (loss, {name: float diagnostics})."""
    adv = advantages
    if norm_adv and adv.size > 1:
        adv = (adv - adv.mean()) / (adv.std(ddof=1) + 1e-8)
    adv_t = Tensor(adv.astype(np.float32))
    log_ratio = new_log_prob - Tensor(old_log_prob)
    ratio = log_ratio.exp()
    pg_loss = (-adv_t * ratio).maximum(-adv_t * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()
    ret = Tensor(returns)
    if clip_vloss:
        v_old = Tensor(old_value)
        v_clipped = v_old + (new_value - v_old).clamp(-clip_coef, clip_coef)
        v_loss = 0.5 * (new_value - ret).square().maximum((v_clipped - ret).square()).mean()
    else:
        v_loss = 0.5 * (new_value - ret).square().mean()
    ent = entropy.mean()
    loss = pg_loss - ent_coef * ent + vf_coef * v_loss
    r, lr = ratio._array, log_ratio._array
    info = {"policy_loss": float(pg_loss._array), "value_loss": float(v_loss._array), "entropy": float(ent._array),
            "approx_kl": float(((r - 1) - lr).mean()), "clip_fraction": float((np.abs(r - 1) > clip_coef).mean())}
    return loss, info


class PPO(OnPolicyAlgorithm):
    name = "ppo"
    HYPERPARAMETERS = {**ON_POLICY_DEFAULTS, "learning_rate": 2.5e-4, "num_envs": 8, "num_steps": 128,
                       "num_minibatches": 4, "update_epochs": 4, "clip_coef": 0.2, "clip_schedule": "constant",
                       "clip_vloss": False, "norm_adv": True, "ent_coef": 0.0, "target_kl": 0.0}
    CHOICES = {**OnPolicyAlgorithm.CHOICES, "clip_schedule": ("constant", "linear")}

    def check_hyperparameters(self, hp: dict) -> None:
        super().check_hyperparameters(hp)
        check_range(self.name, "clip_coef", hp["clip_coef"], 0, None, lo_open=True)
        check_range(self.name, "update_epochs", hp["update_epochs"], 1, None)
        check_range(self.name, "num_minibatches", hp["num_minibatches"], 1, hp["num_envs"] * hp["num_steps"])
        check_range(self.name, "target_kl", hp["target_kl"], 0, None)

    def train_iteration(self) -> dict:
        hp = self.hp
        frac = max(1.0 - self.env_steps / hp["total_timesteps"], 0.0)
        lr = self.current_lr()
        clip = hp["clip_coef"] * (frac if hp["clip_schedule"] == "linear" else 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        ro, returns, lengths = self.collect_rollout()
        adv, ret = gae(ro.rewards, ro.values, ro.dones, ro.last_value, hp["gamma"], hp["gae_lambda"])
        B = ro.rewards.size
        b_obs = ro.obs.reshape((B,) + ro.obs.shape[2:])
        b_act = ro.actions.reshape((B,) + ro.actions.shape[2:])
        b_logp, b_adv, b_ret, b_val = (x.reshape(B) for x in (ro.log_probs, adv, ret, ro.values))
        mb = B // hp["num_minibatches"]
        sums: dict[str, float] = {}
        n = 0
        for _ in range(hp["update_epochs"]):
            perm = self.generator.np.permutation(B)
            for start in range(0, mb * hp["num_minibatches"], mb):
                idx = perm[start:start + mb]
                obs = Tensor(b_obs[idx])
                dist = self.policy.distribution(obs)
                loss, info = ppo_loss(dist.log_prob(Tensor(b_act[idx])), b_logp[idx], b_adv[idx],
                                      self.policy.value(obs), b_val[idx], b_ret[idx], self.policy.entropy(dist),
                                      clip_coef=clip, vf_coef=hp["vf_coef"], ent_coef=hp["ent_coef"],
                                      norm_adv=hp["norm_adv"], clip_vloss=hp["clip_vloss"])
                self.optimizer.zero_grad()
                loss.backward()
                info["grad_norm"] = float(clip_grad_norm_(self.policy.parameters(), hp["max_grad_norm"]))
                self.optimizer.step()
                for k, v in info.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
            if hp["target_kl"] and info["approx_kl"] > hp["target_kl"]:
                break
        metrics = {k: v / n for k, v in sums.items()}
        metrics.update(learning_rate=lr, clip_coef=clip, explained_variance=explained_variance(b_val, b_ret))
        return self._finish(returns, lengths, metrics)
