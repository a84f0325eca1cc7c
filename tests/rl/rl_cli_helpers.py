"""For the `retrograd rl` tests: a stand-in algorithm that follows rg.rl's Algorithm contract with a
random policy (so the command line's layer is tested apart from the real algorithms), and configs."""
import copy

import gymnasium as gym
import numpy as np


class RandomPolicy:
    """A random policy on one gymnasium env: ``train_iteration`` steps it ``steps_per_iteration``
    times; its state (RNGs, the env's physics and time limit, counters) resumes bitwise.
    ``bias`` makes ``act`` prefer action 0 (a 'trained' policy differs from a fresh one)."""
    HYPERPARAMETERS = {"gamma": 0.99, "steps_per_iteration": 64, "num_envs": 1, "normalize_obs": False,
                       "bias": 0.0, "hidden": [8]}
    discrete_only = False

    def __init__(self, env_id, *, seed=0, **hyper):
        unknown = set(hyper) - set(self.HYPERPARAMETERS)
        if unknown:
            raise TypeError(f"unknown hyperparameters {unknown}")
        self.hyper = {**self.HYPERPARAMETERS, **hyper}
        if not 0 <= self.hyper["gamma"] <= 1:
            raise ValueError(f"random: hyperparameter gamma must satisfy 0.0 <= gamma <= 1.0, got {self.hyper['gamma']}")
        if env_id not in gym.envs.registry:
            raise ValueError(f"env_id: {env_id!r} is not a registered gymnasium environment")
        self.env_id, self.seed = env_id, seed
        self.env = self.make_env(seed)
        if self.discrete_only and not isinstance(self.env.action_space, gym.spaces.Discrete):
            raise ValueError(f"discrete: env_id {env_id!r} has a continuous action space ({self.env.action_space}); "
                             "it needs a discrete one")
        self.rng = np.random.default_rng(seed)
        self.obs, _ = self.env.reset(seed=seed)
        self.env_steps, self.ret, self.length, self.updates = 0, 0.0, 0, 0
        self.weights = np.zeros(4)

    def make_env(self, seed, render_mode=None):
        env = gym.make(self.env_id, render_mode=render_mode)
        env.action_space.seed(seed)
        return env

    def _action(self):
        space = self.env.action_space
        if isinstance(space, gym.spaces.Discrete):
            return int(self.rng.integers(space.n))
        return self.rng.uniform(space.low, space.high).astype(space.dtype)

    def train_iteration(self):
        returns, lengths = [], []
        for _ in range(self.hyper["steps_per_iteration"]):
            self.obs, r, term, trunc, _ = self.env.step(self._action())
            self.ret += float(r)
            self.length += 1
            self.env_steps += 1
            if term or trunc:
                returns.append(self.ret)
                lengths.append(self.length)
                self.ret, self.length = 0.0, 0
                self.obs, _ = self.env.reset()
        self.updates += 1
        self.weights = self.weights + self.rng.normal(size=4)
        return {"env_steps": self.env_steps, "episode_returns": returns, "episode_lengths": lengths,
                "metrics": {"loss": float(self.weights.sum()), "updates": self.updates}}

    def act(self, obs, deterministic=True):
        obs = np.asarray(obs)
        space = self.env.action_space
        if isinstance(space, gym.spaces.Discrete):  # push the pole back: survives longer than random
            return (obs[:, 2] + self.hyper["bias"] > 0).astype(np.int64)
        return np.zeros((len(obs), *space.shape), dtype=space.dtype)

    def state_dict(self):
        u = self.env.unwrapped
        return {"rng": copy.deepcopy(self.rng.bit_generator.state),
                "env_rng": copy.deepcopy(u.np_random.bit_generator.state),
                "env_state": np.array(u.state, dtype=np.float64),
                "elapsed": int(self.env._elapsed_steps) if hasattr(self.env, "_elapsed_steps") else 0,
                "obs": np.asarray(self.obs).copy(), "env_steps": self.env_steps, "ret": self.ret,
                "length": self.length, "updates": self.updates, "weights": self.weights.copy(),
                "steps_beyond": getattr(u, "steps_beyond_terminated", None)}

    def load_state_dict(self, d):
        u = self.env.unwrapped
        self.rng.bit_generator.state = d["rng"]
        u.np_random.bit_generator.state = d["env_rng"]
        u.state = np.array(d["env_state"]) if self.env_id.startswith("CartPole") else d["env_state"]
        self.env._elapsed_steps = d["elapsed"]
        if hasattr(u, "steps_beyond_terminated"):
            u.steps_beyond_terminated = d["steps_beyond"]
        self.obs, self.env_steps, self.ret = d["obs"], d["env_steps"], d["ret"]
        self.length, self.updates, self.weights = d["length"], d["updates"], d["weights"]

    def close(self):
        self.env.close()


class DiscreteOnly(RandomPolicy):
    discrete_only = True


ALGORITHMS = {"random": RandomPolicy, "discrete": DiscreteOnly}


def make_algorithm(name, env_id, *, seed=0, **hyper):
    return ALGORITHMS[name](env_id, seed=seed, **hyper)


def evaluate(algo, episodes=100, seed=10_000):
    env = algo.make_env(seed)
    out = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(algo.act(np.asarray(obs)[None])[0])
            total += float(r)
            done = term or trunc
        out.append(total)
    env.close()
    return np.asarray(out)


FAKE_CONFIG = """
[rl]
algorithm = "random"
env = "CartPole-v1"
total_steps = 640
seed = 3
eval_episodes = 3
checkpoint_every = 2
window = 5
progress = false

[algorithm]
steps_per_iteration = 64
"""
