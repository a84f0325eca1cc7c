"""DQN (Mnih et al., 2015, "Human-level control through deep reinforcement learning"), with the Double-DQN
target (van Hasselt et al., 2016) as an option.

Acting: epsilon-greedy, epsilon falling linearly from ``exploration_initial_eps`` to
``exploration_final_eps`` over the first ``exploration_fraction * total_timesteps`` env steps.
Every transition (s, a, r, s', terminated) goes into a replay buffer of ``buffer_size``. Each iteration
plays ``train_freq`` steps per env; once ``learning_starts`` steps are done it then takes
``gradient_steps`` steps, each on a uniformly drawn minibatch:

    y      = r + gamma (1 - terminated) max_a' Q_target(s', a')                     (DQN)
    y      = r + gamma (1 - terminated) Q_target(s', argmax_a' Q_theta(s', a'))      (Double DQN)
    L      = mean Huber(Q_theta(s, a) - y)      (smooth L1, delta = 1; or the squared error)

(a time-limit cut is not termination: its s' is the real last observation and y bootstraps from it).
The target network is refreshed every ``target_update_interval`` env steps:
theta_target <- tau theta + (1 - tau) theta_target   (tau = 1: a hard copy).
With ``lr_schedule = "linear"`` Adam's step size falls linearly from ``learning_rate`` to 0 over
``total_timesteps``.

Keeping the best policy (``best_eval_interval > 0``; off by default): DQN's greedy policy on CartPole can
collapse late in training, so the run can do what Stable-Baselines3's ``EvalCallback`` does. Every
``best_eval_interval`` env steps once learning has started, and at the iteration that reaches
``total_timesteps``, the greedy policy plays ``best_eval_episodes`` validation episodes (episode i reset
with seed ``best_eval_seed + i``: the same episodes each time, by default disjoint from ``rl.evaluate``'s
10000 + i); when their mean return is at least the best so far (ties go to the later weights), the
weights are copied into ``q_best``. ``act`` (and so
``rl.evaluate``, ``retrograd rl evaluate`` and ``play``) then uses ``q_best``; training itself, the
target network and exploration always use the current network. This is model selection on validation
episodes and costs their env steps, which are not counted in ``env_steps``.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ..engine import no_grad
from ..nn import functional as F
from ..nn.utils import clip_grad_norm_
from ..optim import Adam
from ..random import Generator
from ..tensor import Tensor
from .base import Algorithm, check_range
from .evaluation import evaluate
from .state import load_module_state, module_state
from .envs import VecEnvs
from .policies import QNetwork
from ..versions import bump

__all__ = ["DQN", "ReplayBuffer", "dqn_targets", "linear_schedule"]


def linear_schedule(start: float, end: float, duration: float, t: float) -> float:
    """start -> end linearly over ``duration`` steps, then ``end``."""
    if duration <= 0 or t >= duration:
        return end
    return start + t / duration * (end - start)


def dqn_targets(rewards: np.ndarray, terminated: np.ndarray, next_q_target: np.ndarray, gamma: float,
                next_q_online: np.ndarray | None = None) -> np.ndarray:
    """TD targets y (B,) from next-state action values (B, n_actions); with ``next_q_online`` the Double-DQN
    target (the online net picks a', the target net scores it)."""
    if next_q_online is None:
        best = next_q_target.max(1)
    else:
        best = np.take_along_axis(next_q_target, next_q_online.argmax(1)[:, None], 1)[:, 0]
    return (rewards + gamma * (1.0 - terminated) * best).astype(np.float32)


class ReplayBuffer:
    """A ring buffer of transitions; ``sample`` draws indices uniformly with the given NumPy generator."""

    def __init__(self, capacity: int, obs_shape: tuple) -> None:
        self.capacity = capacity
        self.obs = np.zeros((capacity,) + obs_shape, np.float32)
        self.next_obs = np.zeros((capacity,) + obs_shape, np.float32)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.pos, self.size = 0, 0

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray) -> None:
        for i in range(len(obs)):
            p = self.pos
            self.obs[p], self.actions[p], self.rewards[p] = obs[i], action[i], reward[i]
            self.next_obs[p], self.terminated[p] = next_obs[i], terminated[i]
            self.pos = (p + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple:
        idx = rng.integers(0, self.size, batch_size)
        return self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.terminated[idx]

    def state_dict(self) -> dict:
        n = self.size
        return {"obs": self.obs[:n].copy(), "next_obs": self.next_obs[:n].copy(), "actions": self.actions[:n].copy(),
                "rewards": self.rewards[:n].copy(), "terminated": self.terminated[:n].copy(), "pos": self.pos,
                "size": n}

    def load_state_dict(self, st: dict) -> None:
        n = int(st["size"])
        if n > self.capacity:
            raise ValueError(f"replay buffer state holds {n} transitions, buffer_size is {self.capacity}")
        for k in ("obs", "next_obs", "actions", "rewards", "terminated"):
            getattr(self, k)[:n] = st[k]
        self.pos, self.size = int(st["pos"]), n


class DQN(Algorithm):
    name = "dqn"
    HYPERPARAMETERS: dict[str, Any] = {
        "total_timesteps": 50_000, "num_envs": 1, "gamma": 0.99, "learning_rate": 2.3e-3, "buffer_size": 100_000,
        "learning_starts": 1000, "batch_size": 64, "train_freq": 256, "gradient_steps": 128,
        "target_update_interval": 10, "tau": 1.0, "exploration_fraction": 0.16, "exploration_initial_eps": 1.0,
        "exploration_final_eps": 0.04, "hidden_sizes": [256, 256], "activation": "relu", "double_dqn": False,
        "loss": "huber", "max_grad_norm": 10.0, "normalize_obs": False, "lr_schedule": "constant",
        "best_eval_interval": 0, "best_eval_episodes": 10, "best_eval_seed": 50_000}
    CHOICES = {"activation": ("tanh", "relu"), "loss": ("huber", "mse"), "lr_schedule": ("constant", "linear")}

    def check_hyperparameters(self, hp: dict) -> None:
        super().check_hyperparameters(hp)
        for key in ("buffer_size", "batch_size", "train_freq", "target_update_interval"):
            check_range(self.name, key, hp[key], 1, None)
        check_range(self.name, "best_eval_episodes", hp["best_eval_episodes"], 1, None)
        for key in ("learning_starts", "gradient_steps", "best_eval_interval", "best_eval_seed"):
            check_range(self.name, key, hp[key], 0, None)
        check_range(self.name, "tau", hp["tau"], 0.0, 1.0, lo_open=True)
        for key in ("exploration_fraction", "exploration_initial_eps", "exploration_final_eps"):
            check_range(self.name, key, hp[key], 0.0, 1.0)

    def __init__(self, env_id: str, *, seed: int = 0, **hyper: Any) -> None:
        super().__init__(env_id, seed=seed, **hyper)
        hp = self.hp
        space = gym.make(self.env_id).action_space
        if not isinstance(space, gym.spaces.Discrete):
            raise ValueError(f"dqn: env_id {self.env_id!r} has a continuous action space ({space}); DQN needs a "
                             "Discrete one (use ppo, a2c or reinforce)")
        self.envs = VecEnvs(self.env_id, hp["num_envs"], self.seed, normalize_obs=hp["normalize_obs"])
        obs_space = self.envs.single_observation_space
        self.n_actions = int(space.n)
        self.q = QNetwork(obs_space, space, hp["hidden_sizes"], hp["activation"], self.generator)
        self.q_target = QNetwork(obs_space, space, hp["hidden_sizes"], hp["activation"], self.generator)
        self.q_target.load_state_dict(self.q.state_dict())
        self.optimizer = Adam(self.q.parameters(), lr=hp["learning_rate"])
        self.buffer = ReplayBuffer(hp["buffer_size"], obs_space.shape)
        # the best-evaluated weights (best_eval_interval > 0): act() uses them once best_step >= 0
        # (built from a throwaway generator: the seeded stream stays what it was without this option)
        self.q_best = QNetwork(obs_space, space, hp["hidden_sizes"], hp["activation"], Generator(0))
        self.q_best.load_state_dict(self.q.state_dict())
        self.best_return, self.best_step = 0.0, -1

    def epsilon(self) -> float:
        hp = self.hp
        return linear_schedule(hp["exploration_initial_eps"], hp["exploration_final_eps"],
                               hp["exploration_fraction"] * hp["total_timesteps"], self.env_steps)

    def _epsilon_greedy(self, obs: np.ndarray, eps: float, rng: np.random.Generator,
                        net: QNetwork | None = None) -> np.ndarray:
        explore = rng.random(len(obs)) < eps
        random_actions = rng.integers(0, self.n_actions, len(obs))
        with no_grad():
            greedy = (self.q if net is None else net)(Tensor(obs))._array.argmax(1)
        return np.where(explore, random_actions, greedy)

    def update_target(self) -> None:
        tau = self.hp["tau"]
        for p, tp in zip(self.q.parameters(), self.q_target.parameters()):
            tp._array[...] = p._array if tau == 1.0 else tau * p._array + (1 - tau) * tp._array
            bump(tp)

    def current_lr(self) -> float:
        lr = self.hp["learning_rate"]
        if self.hp["lr_schedule"] == "linear":
            lr *= max(1.0 - self.env_steps / self.hp["total_timesteps"], 0.0)
        return lr

    def validation_return(self, network: QNetwork | None = None) -> float:
        """Mean return of ``network``'s (default: the current network's) greedy policy over the
        ``best_eval_episodes`` validation episodes."""
        greedy = _Greedy(self, self.q if network is None else network)
        return float(evaluate(greedy, self.hp["best_eval_episodes"], self.hp["best_eval_seed"]).mean())

    def _maybe_keep_best(self, before: int, metrics: dict) -> None:
        hp, k = self.hp, self.hp["best_eval_interval"]
        if k <= 0 or self.env_steps < hp["learning_starts"]:
            return
        if self.env_steps // k == before // k and not before < hp["total_timesteps"] <= self.env_steps:
            return
        mean = self.validation_return()
        metrics["val_return"] = mean
        if self.best_step < 0 or mean >= self.best_return:
            self.best_return, self.best_step = mean, self.env_steps
            for p, bp in zip(self.q.parameters(), self.q_best.parameters()):
                bp._array[...] = p._array
                bump(bp)
        metrics["best_val_return"] = self.best_return

    def train_step(self) -> dict:
        hp = self.hp
        obs, actions, rewards, next_obs, terminated = self.buffer.sample(hp["batch_size"], self.generator.np)
        with no_grad():
            next_t = self.q_target(Tensor(next_obs))._array
            next_o = self.q(Tensor(next_obs))._array if hp["double_dqn"] else None
        y = dqn_targets(rewards, terminated, next_t, hp["gamma"], next_o)
        q_sa = self.q(Tensor(obs)).gather(1, Tensor(actions[:, None])).squeeze(1)
        loss = F.smooth_l1_loss(q_sa, Tensor(y)) if hp["loss"] == "huber" else F.mse_loss(q_sa, Tensor(y))
        self.optimizer.zero_grad()
        loss.backward()
        norm = clip_grad_norm_(self.q.parameters(), hp["max_grad_norm"])
        self.optimizer.step()
        return {"loss": float(loss._array), "q_mean": float(q_sa._array.mean()), "grad_norm": float(norm)}

    def train_iteration(self) -> dict:
        hp = self.hp
        returns, lengths = [], []
        n = self.envs.num_envs
        obs = self.envs.obs
        start = self.env_steps
        for _ in range(hp["train_freq"]):
            actions = self._epsilon_greedy(obs, self.epsilon(), self.generator.np)
            step = self.envs.step(actions)
            self.buffer.add(obs, actions, step["reward"], step["final_obs"], step["terminated"])
            returns += step["returns"]
            lengths += step["lengths"]
            obs = step["obs"]
            before = self.env_steps
            self.env_steps += n
            if self.env_steps // hp["target_update_interval"] > before // hp["target_update_interval"]:
                self.update_target()
        sums: dict[str, float] = {}
        steps = hp["gradient_steps"] if self.env_steps >= hp["learning_starts"] and self.buffer.size else 0
        if steps:
            for group in self.optimizer.param_groups:
                group["lr"] = self.current_lr()
        for _ in range(steps):
            for k, v in self.train_step().items():
                sums[k] = sums.get(k, 0.0) + v
        metrics = {k: v / steps for k, v in sums.items()}
        metrics["epsilon"] = self.epsilon()
        self._maybe_keep_best(start, metrics)
        self.iteration += 1
        return {"env_steps": self.env_steps, "episode_returns": [float(r) for r in returns],
                "episode_lengths": [int(x) for x in lengths], "metrics": metrics}

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        o = self.envs.normalize(np.asarray(obs))
        net = self.q_best if self.best_step >= 0 else self.q
        if deterministic:
            with no_grad():
                return net(Tensor(o))._array.argmax(1)
        return self._epsilon_greedy(o, self.hp["exploration_final_eps"], self.act_generator.np, net)

    def state_dict(self) -> dict:
        return {**self._base_state(), "q": module_state(self.q), "q_target": module_state(self.q_target),
                "envs": self.envs.state_dict(), "buffer": self.buffer.state_dict(),
                "best": {"q": module_state(self.q_best), "return": self.best_return, "step": self.best_step}}

    def load_state_dict(self, state: dict) -> None:
        self._load_base_state(state)
        load_module_state(self.q, state["q"])
        load_module_state(self.q_target, state["q_target"])
        self.envs.load_state_dict(state["envs"])
        self.buffer.load_state_dict(state["buffer"])
        load_module_state(self.q_best, state["best"]["q"])
        self.best_return, self.best_step = float(state["best"]["return"]), int(state["best"]["step"])

    def close(self) -> None:
        self.envs.close()


class _Greedy:
    """What ``evaluate`` needs (``make_env``, ``act``) for one Q-network's greedy policy."""

    def __init__(self, algo: DQN, network: QNetwork) -> None:
        self.algo, self.network = algo, network

    def make_env(self, seed: int, render_mode: str | None = None):
        return self.algo.make_env(seed, render_mode)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        with no_grad():
            return self.network(Tensor(self.algo.envs.normalize(np.asarray(obs))))._array.argmax(1)
