"""Issue 17's RL targets: train each (algorithm, env) for several seeds, evaluate over 100 episodes.

    nice -n 10 python bench/rl_targets.py [cartpole-ppo cartpole-dqn acrobot-ppo pendulum-ppo ...]
        [--seeds 0 1 2] [--json out.json]

Prints one line per run (mean/std of the 100 evaluation returns, env steps, wall and CPU time of the
training, the 1-minute load average when it ended) and a summary
per task: the fraction of seeds that reach the target. Runs on one thread (tiny networks: BLAS threads
only cost time, and more so on a loaded machine).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import retrograd as rg
from retrograd import rl

# name -> (algorithm, env id, env-step budget, target mean return, hyperparameters)
TASKS = {
    "cartpole-ppo": ("ppo", "CartPole-v1", 100_000, 475.0, dict(
        num_envs=8, num_steps=32, num_minibatches=1, update_epochs=20, gamma=0.98, gae_lambda=0.8,
        learning_rate=1e-3, lr_schedule="linear", clip_coef=0.2, clip_schedule="linear", ent_coef=0.0)),
    "cartpole-dqn": ("dqn", "CartPole-v1", 50_000, 475.0, dict()),
    "cartpole-ddqn": ("dqn", "CartPole-v1", 50_000, 475.0, dict(double_dqn=True)),
    "cartpole-dqn-lr1e-3": ("dqn", "CartPole-v1", 50_000, 475.0, dict(learning_rate=1e-3)),
    # Adam's step size annealed linearly to 0 over the budget
    "cartpole-dqn-linear": ("dqn", "CartPole-v1", 50_000, 475.0, dict(lr_schedule="linear")),
    "cartpole-dqn-linear-lr1e-3": ("dqn", "CartPole-v1", 50_000, 475.0, dict(learning_rate=1e-3,
                                                                             lr_schedule="linear")),
    # the same, keeping the weights that did best on 10 validation episodes (every 2560 env steps and at the
    # end): what rl.evaluate then plays (examples/rl_cartpole_dqn.toml)
    "cartpole-dqn-keep-best": ("dqn", "CartPole-v1", 50_000, 475.0, dict(
        lr_schedule="linear", best_eval_interval=2560, best_eval_episodes=10)),
    "cartpole-dqn-keep-best-lr1e-3": ("dqn", "CartPole-v1", 50_000, 475.0, dict(
        learning_rate=1e-3, lr_schedule="linear", best_eval_interval=2560, best_eval_episodes=10)),
    "acrobot-ppo": ("ppo", "Acrobot-v1", 200_000, -100.0, dict(
        num_envs=16, num_steps=256, num_minibatches=64, update_epochs=4, gamma=0.99, gae_lambda=0.94,
        learning_rate=3e-4, normalize_obs=True, normalize_reward=True, ent_coef=0.0)),
    "acrobot-a2c": ("a2c", "Acrobot-v1", 200_000, -100.0, dict(normalize_obs=True, normalize_reward=True,
                                                                num_envs=16)),
    "pendulum-ppo": ("ppo", "Pendulum-v1", 300_000, -300.0, dict(
        num_envs=4, num_steps=1024, num_minibatches=64, update_epochs=10, gamma=0.9, gae_lambda=0.95,
        learning_rate=1e-3, normalize_obs=True, normalize_reward=True, ent_coef=0.0, clip_coef=0.2)),
}


def run(task: str, seed: int, episodes: int = 100) -> dict:
    algo_name, env_id, budget, target, hyper = TASKS[task]
    algo = rl.make_algorithm(algo_name, env_id, seed=seed, total_timesteps=budget, **hyper)
    t0, c0 = time.perf_counter(), time.process_time()
    while algo.env_steps < budget:
        algo.train_iteration()
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    returns = rl.evaluate(algo, episodes=episodes, seed=10_000)
    best_step = getattr(algo, "best_step", -1)
    algo.close()
    return {"best_step": best_step, "task": task, "seed": seed, "env_steps": algo.env_steps, "train_s": round(train_s, 1), "cpu_s": round(cpu_s, 1),
            "mean": float(returns.mean()), "std": float(returns.std()), "target": target,
            "solved": bool(returns.mean() >= target)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("tasks", nargs="*", default=list(TASKS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--json")
    args = p.parse_args()
    rg.set_num_threads(1)
    results = []
    for task in args.tasks:
        for seed in args.seeds:
            r = run(task, seed, args.episodes)
            r["load"] = round(os.getloadavg()[0], 1)
            results.append(r)
            print(f"{task:14s} seed {seed}: {r['mean']:8.1f} +- {r['std']:6.1f}  {r['env_steps']:>7d} steps  "
                  f"{r['train_s']:6.1f} s wall  {r['cpu_s']:6.1f} s cpu  load {r['load']}"
                  + (f"  (kept the weights of step {r['best_step']})" if r["best_step"] >= 0 else ""), flush=True)
            if args.json:
                with open(args.json, "w") as fh:
                    json.dump(results, fh, indent=1)
    for task in args.tasks:
        rs = [r for r in results if r["task"] == task]
        means = ", ".join(f"{r['mean']:.1f}" for r in rs)
        print(f"{task}: {sum(r['solved'] for r in rs)}/{len(rs)} seeds reach {rs[0]['target']}; means {means}")


if __name__ == "__main__":
    sys.exit(main())
