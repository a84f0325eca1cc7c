"""RL configs (retrograd.rl.config): defaults, the resolved config, the generated reference."""
import pathlib

import pytest

from retrograd.rl import ALGORITHMS
from retrograd.rl import config as rlconfig

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_reference_is_up_to_date():
    path = ROOT / "docs" / "rl_config.md"
    assert path.read_text() == rlconfig.reference(), f"regenerate it: {rlconfig.REGENERATE}"
    text = path.read_text()
    for name, cls in ALGORITHMS.items():  # every algorithm and every hyperparameter is listed
        line = next(x for x in text.splitlines() if x.startswith(f"| `{name}` |"))
        assert all(f"`{k}`" in line for k in cls.HYPERPARAMETERS), name
    assert all(f"| `{k}` |" in text for k in rlconfig.RL_SCHEMA["rl"])
    assert all(spec.doc.strip() for spec in rlconfig.RL_SCHEMA["rl"].values())


def test_defaults_filled_and_the_resolved_config_reads_back_the_same():
    raw = {"rl": {"algorithm": "PPO", "env": "CartPole-v1", "total_steps": 3000, "num_envs": 2},
           "algorithm": {"learning_rate": 1, "hidden_sizes": [32]}}
    cfg = rlconfig.validate(raw)
    hyper = cfg["algorithm"]
    assert cfg["rl"]["algorithm"] == "ppo" and "num_envs" not in cfg["rl"]
    assert hyper["num_envs"] == 2 and hyper["learning_rate"] == 1.0 and isinstance(hyper["learning_rate"], float)
    assert hyper["total_timesteps"] == 3000  # the schedules stretch over the run's budget
    assert set(hyper) == set(ALGORITHMS["ppo"].HYPERPARAMETERS)
    assert hyper["gae_lambda"] == ALGORITHMS["ppo"].HYPERPARAMETERS["gae_lambda"]
    from retrograd.train.config import tomllib
    assert rlconfig.validate(tomllib.loads(rlconfig.dumps(cfg))) == cfg
    # a budget set in [algorithm] is kept
    raw["algorithm"]["total_timesteps"] = 10
    assert rlconfig.validate(raw)["algorithm"]["total_timesteps"] == 10


@pytest.mark.parametrize("overrides,expected", [
    (["rl.total_steps=500", "algorithm.gamma=0.5"], {"total_steps": 500, "gamma": 0.5}),
    (["rl.seed=7"], {"seed": 7}),
])
def test_overrides(overrides, expected):
    raw = {"rl": {"algorithm": "dqn", "env": "CartPole-v1"}}
    cfg = rlconfig.validate(rlconfig.apply_overrides(raw, overrides))
    got = {**cfg["rl"], **cfg["algorithm"]}
    assert {k: got[k] for k in expected} == expected
    with pytest.raises(rlconfig.ConfigError, match=r"^algorithm.gamma: expected a number, got \{'x': 1\} \(dict\)"):
        rlconfig.validate(rlconfig.apply_overrides(raw, ["algorithm.gamma.x=1"]))


def test_is_rl_config():
    assert rlconfig.is_rl_config({"rl": {}}) and not rlconfig.is_rl_config({"model": {}})


def test_run_name_is_checked_as_for_train(tmp_path):
    raw = {"rl": {"algorithm": "ppo", "env": "CartPole-v1"}, "run": {"name": "../x", "dir": str(tmp_path)}}
    with pytest.raises(rlconfig.ConfigError, match=r"^run.name: "):
        rlconfig.validate(raw)
    raw["run"] = {"bogus": 1}
    with pytest.raises(rlconfig.ConfigError, match=r"^run.bogus: unknown key; known keys for \[run\]: dir, name, "
                                                    "overwrite"):
        rlconfig.validate(raw)
