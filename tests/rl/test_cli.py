"""`retrograd rl`: run folders, logs, plot, checkpoints and exact resume, evaluate, play, errors, with a
stand-in random-policy algorithm (rl_cli_helpers.RandomPolicy) so the command line is tested apart
from rg.rl's real algorithms (test_cli_algorithms.py runs them)."""
import json
import os
import pathlib
import signal

import numpy as np
import pytest
import rl_cli_helpers as fake
from rl_cli_helpers import FAKE_CONFIG
from test_algorithms import tree_equal as assert_same_tree

import retrograd.rl
from retrograd import cli
from retrograd.io.checkpoint import load_tree
from retrograd.train.tensorboard import read_scalars

TIME_KEYS = ("time_s", "steps_per_sec")


@pytest.fixture(autouse=True)
def fake_algorithms(monkeypatch):
    for name in ("ALGORITHMS", "make_algorithm", "evaluate"):
        monkeypatch.setattr(retrograd.rl, name, getattr(fake, name), raising=False)


@pytest.fixture
def rl(capsys):
    """``rl(*argv)`` -> (exit status, stdout, stderr) of ``retrograd rl ...`` in-process."""
    def run(*argv):
        try:
            rc = cli.main(["rl", *map(str, argv)])
        except SystemExit as e:  # argparse
            rc = e.code
        out = capsys.readouterr()
        return rc, out.out, out.err
    return run


@pytest.fixture
def config(tmp_path):
    def write(text=FAKE_CONFIG, name="cart", **rl_keys):
        head, tail = text.split("[algorithm]")
        for k, v in rl_keys.items():  # [rl] keys replaced or added
            lines = [x for x in head.splitlines() if not x.startswith(f"{k} =")]
            head = "\n".join(lines) + f"\n{k} = {json.dumps(v)}\n"
        text = head + "\n[algorithm]" + tail
        path = tmp_path / f"{name}.toml"
        path.write_text(text + f'\n[run]\ndir = "{(tmp_path / "runs").as_posix()}"\n')
        return path
    return write


def rows(run_dir):
    return [json.loads(x) for x in (pathlib.Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def without_times(rs):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rs]


def checkpoint(run_dir):
    ckpt = pathlib.Path(run_dir) / "checkpoints" / "last"
    return load_tree(ckpt, "algorithm"), load_tree(ckpt, "run")


def test_train_writes_the_run_folder(rl, config, tmp_path):
    rc, out, err = rl(config(), "--set", "rl.total_steps=600")
    assert rc == 0, err
    run = tmp_path / "runs" / "cart"
    assert out.startswith(f"run folder: {run}\n")
    for f in ("config.toml", "metrics.jsonl", "metrics.csv", "log.txt", "returns.png", "summary.json",
              "checkpoints/last/manifest.json", "checkpoints/last/algorithm.json", "checkpoints/last/run.json"):
        assert (run / f).is_file(), f
    rs = rows(run)
    assert [r["iteration"] for r in rs] == list(range(1, 11))  # 64 steps an iteration: 10 reach 600
    assert [r["env_steps"] for r in rs] == [64 * i for i in range(1, 11)]
    episodes = [x for r in rs for x in r["episode_returns"]]
    assert rs[-1]["episodes"] == len(episodes) > 5
    assert rs[-1]["return_mean"] == pytest.approx(np.mean(episodes[-5:]))  # rl.window = 5
    assert rs[-1]["return_min"] == min(episodes[-5:]) and rs[-1]["return_max"] == max(episodes[-5:])
    assert rs[-1]["updates"] == 10  # the algorithm's own metrics
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["env_steps"] == 640 and s["iterations"] == 10
    assert s["total_steps"] == 600
    ev = fake.evaluate(fake.make_algorithm("random", "CartPole-v1"), 3, 10_000)  # the deterministic policy
    assert s["eval"]["returns"] == list(ev) and s["eval"]["mean"] == pytest.approx(ev.mean())
    assert f"evaluation: {ev.mean():.2f} ± {ev.std():.2f} over 3 episodes" in out
    # the resolved config: every hyperparameter written out, the --set value kept
    text = (run / "config.toml").read_text()
    assert "total_steps = 600" in text and "bias = 0.0" in text and "gamma = 0.99" in text
    # CSV: the rows without the per-episode lists
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["iteration", "env_steps", "episodes"] and "episode_returns" not in header
    # TensorBoard: the recent mean against environment steps, and each episode
    (tb,) = (run / "tb").iterdir()
    sc = read_scalars(tb)
    assert [s for s, _ in sc["rollout/return_mean"]] == [r["env_steps"] for r in rs if r["return_mean"] is not None]
    assert [v for _, v in sc["rollout/episode_return"]] == pytest.approx(episodes)
    assert sc["train/loss"][-1][1] == pytest.approx(rs[-1]["loss"])
    assert "100% (640/600 steps) iteration 10: return" in (run / "log.txt").read_text()
    # checkpoints every 2 iterations and at the end: the last is iteration 10
    assert checkpoint(run)[1]["iteration"] == 10


def test_plot_has_labelled_axes_and_legend(rl, config, tmp_path):
    from retrograd.rl.run import read_rows, returns_figure

    assert rl(config())[0] == 0
    fig = returns_figure(read_rows(tmp_path / "runs" / "cart"), 5, "t")
    (ax,) = fig.axes
    assert ax.get_xlabel() == "environment steps" and ax.get_ylabel() == "episode return"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["each episode", "min-max of the last 5 episodes", "mean of the last 5 episodes"]
    (line,) = ax.get_lines()
    rs = read_rows(tmp_path / "runs" / "cart")
    assert list(line.get_ydata()) == pytest.approx([r["return_mean"] for r in rs if r["return_mean"] is not None])


def test_resume_is_bitwise_an_uninterrupted_run(rl, config, tmp_path):
    straight = config(name="straight", total_steps=256)  # 4 iterations
    assert rl(straight)[0] == 0
    parts = config(name="parts", total_steps=128)  # 2 iterations, then resume to 4
    assert rl(parts)[0] == 0
    rc, out, err = rl("resume", tmp_path / "runs" / "parts", "--total-steps", 256)
    assert rc == 0, err
    assert "resuming" in out and "from iteration 2 (128 steps)" in out
    a, b = tmp_path / "runs" / "straight", tmp_path / "runs" / "parts"
    assert_same_tree(checkpoint(a)[0], checkpoint(b)[0])
    assert without_times(rows(a)) == without_times(rows(b))
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["eval"] == sb["eval"] and sa["train_return"] == sb["train_return"] and sb["iterations"] == 4
    # a finished run is left alone, byte for byte
    before = {p: p.read_bytes() for p in b.rglob("*") if p.is_file()}
    rc, out, _ = rl("resume", b)
    assert rc == 0 and "the run is complete (256 of 256 environment steps); nothing to resume" in out
    assert {p: p.read_bytes() for p in b.rglob("*") if p.is_file()} == before


def test_resume_after_a_crash_redoes_the_lines_after_the_checkpoint(rl, config, tmp_path, monkeypatch):
    assert rl(config(name="straight", total_steps=320))[0] == 0
    crashed = config(name="crashed", total_steps=320)
    real = fake.RandomPolicy.train_iteration

    def dies_in_iteration_4(self):
        if self.updates == 3:
            raise RuntimeError("simulated crash")
        return real(self)

    monkeypatch.setattr(fake.RandomPolicy, "train_iteration", dies_in_iteration_4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cli.main(["rl", str(crashed)])
    monkeypatch.setattr(fake.RandomPolicy, "train_iteration", real)
    run = tmp_path / "runs" / "crashed"
    assert len(rows(run)) == 3 and checkpoint(run)[1]["iteration"] == 2  # checkpoint_every = 2
    rc, _, err = rl("resume", run)
    assert rc == 0, err
    assert without_times(rows(run)) == without_times(rows(tmp_path / "runs" / "straight"))
    assert_same_tree(checkpoint(run)[0], checkpoint(tmp_path / "runs" / "straight")[0])


def test_ctrl_c_saves_at_the_iteration_end_and_resume_continues_bitwise(rl, config, tmp_path, monkeypatch):
    assert rl(config(name="straight", total_steps=320))[0] == 0
    real = fake.RandomPolicy.train_iteration

    def ctrl_c_in_iteration_3(self):
        if self.updates == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the handler only sets a flag: the iteration finishes
        return real(self)

    monkeypatch.setattr(fake.RandomPolicy, "train_iteration", ctrl_c_in_iteration_3)
    rc, _, err = rl(config(name="stopped", total_steps=320))
    monkeypatch.setattr(fake.RandomPolicy, "train_iteration", real)
    run = tmp_path / "runs" / "stopped"
    assert rc == 130
    assert err.strip() == (f"retrograd rl: interrupted at iteration 3 (192 environment steps); saved a checkpoint "
                           f"there; continue with: retrograd rl resume {run}")
    assert checkpoint(run)[1]["iteration"] == 3 and not (run / "summary.json").exists()
    assert rl("resume", run)[0] == 0
    assert without_times(rows(run)) == without_times(rows(tmp_path / "runs" / "straight"))
    assert_same_tree(checkpoint(run)[0], checkpoint(tmp_path / "runs" / "straight")[0])


def test_second_run_of_a_config_gets_its_own_folder(rl, config, tmp_path):
    path = config(total_steps=64)
    assert rl(path)[0] == 0
    rc, out, err = rl(path)
    assert rc == 0 and f"run folder: {tmp_path / 'runs' / 'cart-2'}" in out
    assert "already holds a run, so this one writes to" in err


def test_evaluate_prints_mean_and_std_and_writes_it(rl, config, tmp_path):
    assert rl(config(total_steps=64))[0] == 0
    run = tmp_path / "runs" / "cart"
    rc, out, err = rl("evaluate", run, "--episodes", 4, "--seed", 7)
    assert rc == 0, err
    ev = fake.evaluate(fake.make_algorithm("random", "CartPole-v1"), 4, 7)
    assert out == (f"{run} (last checkpoint, 64 environment steps): return {ev.mean():.2f} ± {ev.std():.2f} over 4 "
                   f"episodes (min {ev.min():.2f}, max {ev.max():.2f}; seed 7)\n")
    saved = json.loads((run / "evaluate.json").read_text())
    assert saved["returns"] == list(ev) and saved["episodes"] == 4 and saved["seed"] == 7


def test_play_writes_an_animated_gif(rl, config, tmp_path):
    from PIL import Image

    assert rl(config(total_steps=64), "--set", "algorithm.bias=0.0")[0] == 0
    run = tmp_path / "runs" / "cart"
    gif = tmp_path / "cart.gif"
    rc, out, err = rl("play", run, "--episodes", 2, "--output", gif, "--scale", 0.25, "--fps", 50)
    assert rc == 0, err
    env_returns = fake.evaluate(fake.make_algorithm("random", "CartPole-v1"), 2, 0)  # play: seeds 0, 1
    frames = int(sum(env_returns)) + 2  # CartPole: reward 1 a step; one frame per step plus each reset
    assert out.endswith(f"return {env_returns[0]:.1f}, {env_returns[1]:.1f}; {frames} frames at 50 fps: {gif}\n")
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.size == (150, 100) and im.info["loop"] == 0
        durations = []  # Pillow merges a frame equal to the one before into it, adding its duration
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
        assert sum(durations) == 20 * frames and im.n_frames > frames // 2
    rc, out, _ = rl("play", run)  # default: one episode into the run folder
    assert rc == 0 and (run / "play.gif").is_file()


def test_help_names_the_forms_and_flags(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["rl", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith("usage: retrograd rl")
    for text in ("CONFIG | {resume,evaluate,play} [RUN]", "--total-steps", "--episodes", "--output", "mean ± std",
                 "render episodes into a GIF"):
        assert text in " ".join(out.split()), text


@pytest.mark.parametrize("edit,expected", [
    (("[algorithm]", "[algorithm]\nlearning_rat = 0.1"),
     "algorithm.learning_rat: unknown key for random; known keys: gamma, steps_per_iteration, num_envs, "
     "normalize_obs, bias, hidden"),
    (("[algorithm]", "[algorithm]\ngamma = -0.5"), "algorithm.gamma: hyperparameter gamma must satisfy 0.0 <= gamma <= 1.0, got -0.5"),
    (("[algorithm]", '[algorithm]\ngamma = "high"'), "algorithm.gamma: expected a number, got 'high' (str)"),
    (("[algorithm]", "[algorithm]\nhidden = 8"), "algorithm.hidden: expected a list like [8], got 8 (int)"),
    (("[algorithm]", '[algorithm]\nhidden = [8, "x"]'), "algorithm.hidden[1]: expected an int, got 'x' (str)"),
    (("steps_per_iteration = 64", "steps_per_iteration = 6.5"),
     "algorithm.steps_per_iteration: expected an int, got 6.5 (float)"),
    (('env = "CartPole-v1"', 'env = "Cartwheel-v9"'),
     "rl.env: 'Cartwheel-v9' is not a registered gymnasium environment id; e.g. CartPole-v1"),
    (('env = "CartPole-v1"', 'env = "cartpole-v0"'),
     "rl.env: 'cartpole-v0' is not a registered gymnasium environment id; did you mean CartPole-v0, CartPole-v1?"),
    (('algorithm = "random"', 'algorithm = "discrete"\n'),  # then a continuous env below
     None),
    (('algorithm = "random"', 'algorithm = "sac"'), "rl.algorithm: 'sac' is not one of: random, discrete"),
    (('algorithm = "random"\n', ''), "rl.algorithm: a value is required"),
    (("total_steps = 640", "total_steps = 0"), "rl.total_steps: must be >= 1, got 0"),
    (("total_steps = 640", "total_steps = 1000.5"), "rl.total_steps: expected an int, got 1000.5 (float)"),
    (("seed = 3", "seed = -1"), "rl.seed: must be in [0, 4294967295], got -1"),
    (("window = 5", "windows = 5"), "rl.windows: unknown key; known keys for [rl]: algorithm, env, total_steps"),
    (("[rl]", "[model]\nname = 'mlp'\n[rl]"), "config: unknown section [model]; known sections: rl, algorithm, run "
                                             "(an RL config; [model], [data]"),
    (("[algorithm]", "num_envs = 4\n[algorithm]"), None),
])
def test_bad_configs_name_the_key(rl, config, tmp_path, edit, expected):
    text = FAKE_CONFIG.replace(*edit)
    if edit[1].startswith('algorithm = "discrete"'):
        text = text.replace('env = "CartPole-v1"', 'env = "Pendulum-v1"')
        expected = "rl.env: env_id 'Pendulum-v1' has a continuous action space (Box("
    if edit[1].startswith("num_envs = 4"):  # [rl] num_envs and [algorithm] num_envs disagree
        text += "num_envs = 2\n"
        expected = "rl.num_envs: set twice, 4 here and 2 as algorithm.num_envs; keep one"
    rc, out, err = rl(config(text))
    assert rc == 2 and out == ""
    assert err.startswith("retrograd rl: error: " + expected) and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()  # refused before any folder is made


def test_rl_keys_that_are_hyperparameters(rl, config, tmp_path):
    assert rl(config(num_envs=1, normalize_obs=True, total_steps=64))[0] == 0
    text = (tmp_path / "runs" / "cart" / "config.toml").read_text()
    assert "normalize_obs = true" in text.split("[algorithm]")[1] and "num_envs" not in text.split("[algorithm]")[0]


@pytest.mark.parametrize("argv,expected", [
    (["{cfg}", "--output", "x.gif"], "--output: not for retrograd rl CONFIG; it takes: --set, --quiet"),
    (["evaluate", "{run}", "--set", "rl.seed=1"], "--set: not for retrograd rl evaluate RUN; it takes: --episodes, "
                                                  "--seed"),
    (["resume", "{run}", "--episodes", "3"], "--episodes: not for retrograd rl resume RUN"),
    (["evaluate"], "rl evaluate: expected a run folder, e.g. retrograd rl evaluate runs/rl_cartpole_ppo"),
    (["{cfg}", "{cfg}"], "rl: expected a config, or one of resume, evaluate, play and a run folder; got "),
    (["{tmp}/missing.toml"], "config: file '{tmp}/missing.toml' not found"),
    (["evaluate", "{tmp}"], "{tmp}: not a run folder (no config.toml)"),
    (["resume", "{train_run}"], "{train_run}: not an RL run (its config.toml has no [rl] section); for a run of "
                                "retrograd train use: retrograd resume {train_run}"),
    (["play", "{run}", "--output", "{tmp}/x.png"], "--output {tmp}/x.png: expected a .gif file name"),
    (["play", "{run}", "--output", "{tmp}/no/x.gif"], "--output {tmp}/no/x.gif: the folder {tmp}/no does not exist"),
    (["evaluate", "{empty_run}"], "{empty_run}: no checkpoint 'last' (found: none)"),
    (["resume", "{run}", "--total-steps", "10"], "--total-steps 10: the run's last checkpoint is already at 64 "
                                                 "environment steps; give more"),
    (["{cfg}", "--set", "optim.lr=1"], "--set 'optim.lr=1': unknown section [optim]; known sections: rl, algorithm, "
                                       "run"),
])
def test_command_errors_are_one_line(rl, config, tmp_path, argv, expected):
    cfg = config(total_steps=64)
    assert rl(cfg)[0] == 0
    train_run = tmp_path / "train_run"
    train_run.mkdir()
    (train_run / "config.toml").write_text('[model]\nname = "mlp"\n')
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    (empty_run / "config.toml").write_bytes((tmp_path / "runs" / "cart" / "config.toml").read_bytes())
    names = {"cfg": cfg, "run": tmp_path / "runs" / "cart", "tmp": tmp_path, "train_run": train_run,
             "empty_run": empty_run}
    rc, out, err = rl(*(a.format(**names) for a in argv))
    assert rc == 2 and out == ""
    assert err.startswith("retrograd rl: error: " + expected.format(**names)) and err.count("\n") == 1, err


def test_a_corrupted_checkpoint_is_named(rl, config, tmp_path):
    assert rl(config(total_steps=64))[0] == 0
    run = tmp_path / "runs" / "cart"
    (run / "checkpoints" / "last" / "algorithm.safetensors").write_bytes(b"\0" * 16)
    rc, _, err = rl("evaluate", run)
    assert rc == 2 and err.startswith(f"retrograd rl: error: {run}/checkpoints/last/algorithm.safetensors: "
                                      "truncated or corrupted")


def test_tune_on_an_rl_config_maximises_the_evaluation_return(rl, config, tmp_path, capsys):
    pytest.importorskip("optuna", reason="retrograd tune needs optuna (the tune extra)")
    text = FAKE_CONFIG + '\n[search]\nmethod = "grid"\npruner = "none"\n"algorithm.bias" = {choice = [-1.0, 0.0]}\n'
    cfg = config(text, name="tune_rl", total_steps=128)
    assert cli.main(["tune", str(cfg)]) == 0
    out = capsys.readouterr().out
    study = tmp_path / "runs" / "tune_rl-tune"
    best = study / "tune_rl-best.toml"
    # the fake's deterministic policy returns less with bias -1 (it pushes the pole the wrong way more often)
    scores = {b: fake.evaluate(fake.make_algorithm("random", "CartPole-v1", bias=b), 3, 10_000).mean()
              for b in (-1.0, 0.0)}
    assert scores[0.0] > scores[-1.0]
    assert "2 trials: 2 COMPLETE" in out and f"eval_return_mean {scores[0.0]:.4g} with algorithm.bias=0\n" in out
    assert f"retrograd rl {best}\n" in out
    text = best.read_text()
    assert "bias = 0.0" in text and "[rl]" in text and "[train]" not in text
    assert rl(best)[0] == 0  # the best config is ready to run


def test_progress_bar_on_a_terminal_shows_the_recent_return(tmp_path):
    import io as _io

    from retrograd.rl.run import _Progress

    class Terminal(_io.StringIO):
        def isatty(self):
            return True

    out, log = Terminal(), open(tmp_path / "log.txt", "w")
    bar = _Progress(1000, 0, log, enabled=True, out=out)
    row = {"iteration": 1, "env_steps": 500, "episodes": 7, "return_mean": 21.5, "return_min": 9.0, "return_max": 40.0,
           "window_size": 7, "steps_per_sec": 250.0, "steps_done": 500}
    bar.update(row, 2.0)
    bar.update({**row, "iteration": 2, "env_steps": 1000, "return_mean": 30.25, "steps_done": 1000}, 4.0)
    bar.close()
    log.close()
    text = out.getvalue()
    assert "env steps: 100%" in text and "1000/1000" in text and "return=30.2" in text and "episodes=7" in text
    # the bar's frames stay off the log, which gets one line per tenth
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert [x.split(" iteration")[0] for x in lines] == ["50% (500/1,000 steps)", "100% (1,000/1,000 steps)"]


def test_retrograd_plot_redraws_the_return_plot(rl, config, tmp_path, capsys):
    assert rl(config(total_steps=128))[0] == 0
    run = tmp_path / "runs" / "cart"
    (run / "returns.png").unlink()
    assert cli.main(["plot", str(run)]) == 0
    assert capsys.readouterr().out == f"{run / 'returns.png'}\n" and (run / "returns.png").stat().st_size > 10_000
