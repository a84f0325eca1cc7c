"""DQN's options: keeping the best-evaluated policy (best_eval_interval) and linear learning-rate annealing
(lr_schedule): exact resume, and that evaluating never changes what training does."""
import numpy as np
import pytest
from test_algorithms import SMALL, tree_equal

from retrograd import rl
from retrograd.io.checkpoint import load_tree, save_tree

BEST = dict(SMALL["dqn"], best_eval_interval=32, best_eval_episodes=3, lr_schedule="linear")


def train(algo, iterations):
    return [algo.train_iteration() for _ in range(iterations)]


def test_resume_with_best_keeping_is_bitwise(tmp_path):
    straight = rl.make_algorithm("dqn", "CartPole-v1", seed=5, **BEST)
    logs = train(straight, 6)
    first = rl.make_algorithm("dqn", "CartPole-v1", seed=5, **BEST)
    resumed = train(first, 3)
    assert first.best_step >= 0        # a best policy exists before the checkpoint
    save_tree(tmp_path, "algo", first.state_dict())
    fresh = rl.make_algorithm("dqn", "CartPole-v1", seed=5, **BEST)
    fresh.load_state_dict(load_tree(tmp_path, "algo"))
    resumed += train(fresh, 3)
    assert resumed == logs
    tree_equal(fresh.state_dict(), straight.state_dict())
    obs = np.stack([straight.make_env(s).reset(seed=s)[0] for s in range(8)])
    assert np.array_equal(fresh.act(obs), straight.act(obs))
    for a in (straight, first, fresh):
        a.close()


def test_best_keeping_selects_on_validation_and_leaves_training_alone():
    hyper = dict(BEST, total_timesteps=400, best_eval_episodes=4)
    kept = rl.make_algorithm("dqn", "CartPole-v1", seed=1, **hyper)
    plain = rl.make_algorithm("dqn", "CartPole-v1", seed=1, **dict(hyper, best_eval_interval=0))
    kept_logs, plain_logs = train(kept, 25), train(plain, 25)    # 400 env steps: the budget's end
    evals = [(log["env_steps"], log["metrics"]["val_return"]) for log in kept_logs if "val_return" in log["metrics"]]
    # every 32 env steps from learning_starts on (iterations of 16 steps), and at the budget's end
    assert [s for s, _ in evals] == list(range(32, 401, 32)) + [400]
    assert all("val_return" not in log["metrics"] for log in plain_logs)
    for a, b in zip(kept_logs, plain_logs):   # the same transitions, losses and weights as without evaluation
        assert a["episode_returns"] == b["episode_returns"]
        assert {k: v for k, v in a["metrics"].items() if "val_return" not in k} == b["metrics"]
    tree_equal(rl.state.module_state(kept.q), rl.state.module_state(plain.q))
    best = max(r for _, r in evals)
    assert kept.best_return == best == kept_logs[-1]["metrics"]["best_val_return"]
    assert kept.best_step == max(s for s, r in evals if r == best)     # ties go to the later policy
    assert plain.best_step == -1
    # act() now plays q_best: its validation return is the kept one; without the option act() plays q
    assert rl.evaluate(kept, episodes=4, seed=kept.hp["best_eval_seed"]).mean() == pytest.approx(best, abs=0)
    assert kept.validation_return(kept.q_best) == best
    assert rl.evaluate(plain, episodes=4, seed=kept.hp["best_eval_seed"]).mean() == pytest.approx(evals[-1][1], abs=0)
    for a in (kept, plain):
        a.close()


def test_linear_lr_schedule_and_option_errors():
    algo = rl.make_algorithm("dqn", "CartPole-v1", seed=0, **dict(SMALL["dqn"], lr_schedule="linear",
                                                                   learning_rate=1e-3))
    train(algo, 4)       # the 4th iteration's updates start at 48 of 200 env steps
    assert algo.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - 64 / 200))
    algo.close()
    for key, value in (("best_eval_interval", -1), ("best_eval_episodes", 0), ("lr_schedule", "cosine")):
        with pytest.raises(ValueError, match=key):
            rl.make_algorithm("dqn", "CartPole-v1", **{key: value})
