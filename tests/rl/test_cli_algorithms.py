"""`retrograd rl` with rg.rl's real algorithms (tiny budgets): resume is bitwise an uninterrupted run,
bad configs name the key, `rl play` renders the trained policy, `retrograd tune` on an RL config."""
import json
import pathlib

import numpy as np
import pytest
from test_cli import assert_same_tree, checkpoint, rows, without_times

from retrograd import cli

pytest.importorskip("gymnasium", reason="retrograd rl needs gymnasium (the rl extra)")

PPO = """
[rl]
algorithm = "ppo"
env = "CartPole-v1"
total_steps = {steps}
seed = 5
eval_episodes = 2
checkpoint_every = 1
progress = false

[algorithm]
num_envs = 2
num_steps = 32
num_minibatches = 2
update_epochs = 2
hidden_sizes = [16]
total_timesteps = 256
"""

DQN = """
[rl]
algorithm = "dqn"
env = "CartPole-v1"
total_steps = {steps}
seed = 5
eval_episodes = 2
checkpoint_every = 1
progress = false

[algorithm]
hidden_sizes = [16]
learning_starts = 32
train_freq = 32
gradient_steps = 4
batch_size = 16
buffer_size = 500
target_update_interval = 40
total_timesteps = 256
"""

A2C_PENDULUM = """
[rl]
algorithm = "a2c"
env = "Pendulum-v1"
total_steps = {steps}
seed = 2
eval_episodes = 1
checkpoint_every = 3
progress = false

[algorithm]
num_envs = 2
num_steps = 8
hidden_sizes = [8]
normalize_obs = true
squash = true
total_timesteps = 64
"""


def main(*argv):
    return cli.main([str(a) for a in argv])


def write(tmp_path, text, name, steps):
    path = tmp_path / f"{name}.toml"
    path.write_text(text.format(steps=steps) + f'\n[run]\ndir = "{(tmp_path / "runs").as_posix()}"\n')
    return path


@pytest.mark.parametrize("text,per_iteration", [(PPO, 64), (DQN, 32), (A2C_PENDULUM, 16)],
                         ids=["ppo", "dqn", "a2c-pendulum"])
def test_two_iterations_resume_two_is_four_straight(tmp_path, capsys, text, per_iteration):
    assert main("rl", write(tmp_path, text, "straight", 4 * per_iteration), "--quiet") == 0
    assert main("rl", write(tmp_path, text, "parts", 2 * per_iteration), "--quiet") == 0
    assert main("rl", "resume", tmp_path / "runs" / "parts", "--total-steps", 4 * per_iteration, "--quiet") == 0
    capsys.readouterr()
    a, b = tmp_path / "runs" / "straight", tmp_path / "runs" / "parts"
    sa, sb = checkpoint(a), checkpoint(b)
    assert sa[1]["iteration"] == sb[1]["iteration"] == 4
    assert_same_tree(sa[0], sb[0])  # parameters, optimizer, RNGs, envs, buffers: every bit
    ra, rb = without_times(rows(a)), without_times(rows(b))
    assert len(ra) == 4 and ra == rb
    ea, eb = (json.loads((d / "summary.json").read_text())["eval"] for d in (a, b))
    assert ea == eb


@pytest.mark.parametrize("text,edit,expected", [
    (PPO, ("num_envs = 2", "num_envs = 2\ngamma = -0.5"),
     "algorithm.gamma: hyperparameter gamma must satisfy 0.0 <= gamma <= 1.0, got -0.5"),
    (PPO, ("num_envs = 2", "num_envs = 2\nclip_coeff = 0.1"),
     "algorithm.clip_coeff: unknown key for ppo; known keys: total_timesteps, num_envs, num_steps"),
    (PPO, ("num_envs = 2", 'num_envs = 2\nactivation = "gelu"'),
     "algorithm.activation: 'gelu' is not one of: tanh, relu"),
    (PPO, ("num_envs = 2", 'num_envs = 2\nlearning_rate = "fast"'),
     "algorithm.learning_rate: expected a number, got 'fast' (str)"),
    (PPO, ('env = "CartPole-v1"', 'env = "CartPol-v1"'),
     "rl.env: 'CartPol-v1' is not a registered gymnasium environment id; did you mean CartPole-v0, CartPole-v1?"),
    (DQN, ('env = "CartPole-v1"', 'env = "Pendulum-v1"'),
     "rl.env: env_id 'Pendulum-v1' has a continuous action space (Box(-2.0, 2.0, (1,), float32)); DQN needs a "),
    (DQN, ("[rl]", "[rl]\nnum_envs = 0"), "rl.num_envs: must be >= 1, got 0"),
])
def test_bad_configs_name_the_key(tmp_path, capsys, text, edit, expected):
    rc = main("rl", write(tmp_path, text.replace(*edit), "bad", 64))
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("retrograd rl: error: " + expected) and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def test_reinforce_has_no_normalize_obs(tmp_path, capsys):
    text = PPO.replace('"ppo"', '"reinforce"').replace("num_steps = 32\nnum_minibatches = 2\nupdate_epochs = 2\n", "")
    rc = main("rl", write(tmp_path, text.replace("[rl]", "[rl]\nnormalize_obs = true"), "r", 64))
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("retrograd rl: error: rl.normalize_obs: reinforce has no normalize_obs "
                                      "hyperparameter"), err


def test_play_renders_the_trained_policy(tmp_path, capsys):
    from PIL import Image

    from retrograd.rl.play import play_episodes
    from retrograd.rl.run import load_run_algorithm

    assert main("rl", write(tmp_path, PPO, "ppo", 64), "--quiet") == 0
    run = tmp_path / "runs" / "ppo"
    assert main("rl", "play", run, "--scale", 0.2) == 0
    out = capsys.readouterr().out
    _, algo, _ = load_run_algorithm(run)
    frames, returns = play_episodes(algo, 1, 0)
    algo.close()
    assert out.endswith(f"return {returns[0]:.1f}; {len(frames)} frames at 30 fps: {run / 'play.gif'}\n")
    assert len(frames) == int(returns[0]) + 1 and frames[0].shape == (400, 600, 3)  # CartPole: 1 per step
    with Image.open(run / "play.gif") as im:
        assert im.size == (120, 80)
    # evaluate: the same numbers as rg.rl.evaluate
    from retrograd import rl

    assert main("rl", "evaluate", run, "--episodes", 3) == 0
    _, algo, _ = load_run_algorithm(run)
    expected = rl.evaluate(algo, episodes=3, seed=10_000)
    algo.close()
    saved = json.loads((run / "evaluate.json").read_text())
    assert np.array_equal(saved["returns"], expected)


def test_tune_two_trials_on_a_short_cartpole_config(tmp_path, capsys):
    pytest.importorskip("optuna", reason="retrograd tune needs optuna (the tune extra)")
    text = PPO.format(steps=128) + ('\n[search]\nmethod = "random"\nn_trials = 2\nseed = 1\npruner = "none"\n'
                                    '"algorithm.learning_rate" = {log_uniform = [1e-4, 1e-2]}\n')
    path = tmp_path / "cart_tune.toml"
    path.write_text(text + f'\n[run]\ndir = "{(tmp_path / "runs").as_posix()}"\n')
    assert main("tune", path) == 0
    out = capsys.readouterr().out
    study = tmp_path / "runs" / "cart_tune-tune"
    assert "2 trials: 2 COMPLETE" in out and "best: trial " in out and "eval_return_mean" in out
    rows_ = (study / "trials.csv").read_text().splitlines()
    assert len(rows_) == 3 and "eval_return_mean" in rows_[0]
    best = study / "cart_tune-best.toml"
    assert f"retrograd rl {best}\n" in out
    # the best trial's config, trained by retrograd rl, gives the trial's evaluation return
    value = float(out.split("best: trial ")[1].split("eval_return_mean ")[1].split()[0])
    assert main("rl", best, "--quiet") == 0
    s = json.loads((tmp_path / "runs" / "cart_tune-best" / "summary.json").read_text())
    assert s["eval"]["mean"] == pytest.approx(value, rel=1e-3)
    assert pathlib.Path(s["plot"]).is_file()
