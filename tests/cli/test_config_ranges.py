"""Issue 12, items 15-16: every config value is checked against its documented range; the error
names the key, the value and what was expected, before any data is read or any run folder made."""
import math
import pathlib

import pytest
import torch
from cli_helpers import DIGITS_MLP

from retrograd.train.config import ConfigError, apply_overrides, load_config, tomllib, validate


def _cfg(tmp_path, **sections):
    cfg = tomllib.loads(DIGITS_MLP)
    cfg["run"] = {"dir": str(tmp_path / "runs")}
    for s, v in sections.items():
        if isinstance(v, dict) and isinstance(cfg.get(s), dict):
            cfg[s].update(v)
        else:
            cfg[s] = v
    return cfg


CASES = [  # (id, sections changed, text the one-line message must hold)
    # item 15: crashed with a traceback that named no key
    ("seed", {"train": {"seed": -1}}, "train.seed: must be in [0, 18446744073709551615], got -1"),
    ("label_smoothing_2", {"train": {"label_smoothing": 2.0}}, "train.label_smoothing: must be in [0, 1], got 2.0"),
    ("label_smoothing_nan", {"train": {"label_smoothing": math.nan}},
     "train.label_smoothing: expected a finite number, got nan"),
    ("grad_clip_nan", {"train": {"grad_clip": math.nan}}, "train.grad_clip: expected a finite number, got nan"),
    ("steplr_step_size_0", {"schedule": {"name": "StepLR", "step_size": 0}},
     "schedule.step_size: must be >= 1, got 0"),
    ("warmup_steps", {"schedule": {"name": "warmup_cosine", "peak_lr": 0.01, "warmup_steps": -10, "total_steps": 50}},
     "schedule.warmup_steps: must be >= 0, got -10"),
    ("lr_1e308", {"optim": {"lr": 1e308}}, "optim.lr: must be in [0, 3.4e38 (float32's largest)], got 1e+308"),
    ("optim_str", {"optim": "adam"},
     "[optim]: expected a table of keys, got 'adam' (str); write it as [optim] then name = \"adam\""),
    ("model_int", {"model": 5}, "[model]: expected a table of keys, got 5 (int)"),
    ("schedule_list", {"schedule": [1, 2]}, "[schedule]: expected a table of keys, got [1, 2] (list)"),
    # item 16: accepted silently
    ("lr_inf", {"optim": {"lr": math.inf}}, "optim.lr: expected a finite number, got inf"),
    ("early_stopping", {"train": {"early_stopping": -1}}, "train.early_stopping: must be >= 0, got -1"),
    ("t_max", {"schedule": {"name": "CosineAnnealingLR", "T_max": -5}}, "schedule.T_max: must be >= 1, got -5"),
    ("run_name", {"run": {"name": "../../escaped"}},
     "run.name: '../../escaped' contains '/'; expected one folder name inside run.dir"),
]


@pytest.mark.parametrize("sections,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_out_of_range_values_name_the_key(tmp_path, sections, message):
    with pytest.raises(ConfigError) as info:
        validate(_cfg(tmp_path, **sections))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("sections,message", [CASES[0][1:], CASES[7][1:], CASES[-1][1:]],
                         ids=["seed", "optim_str", "run_name"])
def test_cli_exits_2_with_one_line_and_makes_no_run_folder(tmp_path, write_config, run_cli, sections, message):
    from cli_helpers import to_toml
    cfg = _cfg(tmp_path, **sections)
    runs = pathlib.Path(cfg.pop("run")["dir"])
    flat = {k: v for k, v in cfg.items() if not isinstance(v, dict)}
    text = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in flat.items())
    text += to_toml({k: v for k, v in cfg.items() if isinstance(v, dict)})
    if "run" in sections:
        text += f'\n[run]\nname = "{sections["run"]["name"]}"\n'
        path = tmp_path / "c.toml"
        path.write_text(text + f'dir = "{runs.as_posix()}"\n')
    else:
        path = write_config(text)
    rc, out, err = run_cli("train", path, "--quiet")
    assert rc == 2 and err.startswith("retrograd train: error: ") and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "escaped").exists() and not (runs.exists() and any(runs.iterdir()))


def test_file_that_is_not_utf8(tmp_path, write_config, run_cli):
    path = tmp_path / "bad.toml"
    path.write_bytes(DIGITS_MLP.encode().replace(b'"adam"', b'"ad\xffam"'))
    with pytest.raises(ConfigError, match=r"bad.toml is not valid UTF-8 \(byte 0xff on line 11\); expected a UTF-8"):
        load_config(path)
    rc, _, err = run_cli("train", path, "--quiet")
    assert rc == 2 and "is not valid UTF-8 (byte 0xff on line 11)" in err and "Traceback" not in err


def test_torch_agrees_on_the_ranges_it_checks():
    # the ranges follow PyTorch's own checks where it has them
    p = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(RuntimeError, match=r"label_smoothing must be between 0.0 and 1.0"):
        torch.nn.functional.cross_entropy(torch.zeros(1, 2), torch.tensor([0]), label_smoothing=2.0)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        torch.optim.Adam(p, lr=-1.0)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        torch.optim.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Expected positive integer T_0"):
        torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(torch.optim.SGD(p, lr=0.1), T_0=0)
    torch.manual_seed(2**64 - 1)  # the top of train.seed's range; torch refuses one more
    with pytest.raises(ValueError, match="Overflow"):
        torch.manual_seed(2**64)
    torch.manual_seed(0)


@pytest.mark.parametrize("sections,message", [
    ({"optim": {"betas": [0.9, 1.0]}}, "optim.betas[1]: must be in [0, 1), got 1.0"),
    ({"optim": {"betas": [0.9, "a"]}}, "optim.betas[1]: expected a number, got 'a' (str)"),
    ({"optim": {"betas": "x"}}, "optim.betas: expected a list, got 'x' (str)"),
    ({"optim": {"lr": -0.1}}, "optim.lr: must be in [0, 3.4e38"),
    ({"optim": {"momentum": 0.9}}, "optim.momentum: unknown key for optimizer Adam; known keys: name, lr,"),
    ({"optim": {"name": "sgd", "momentum": "x"}}, "optim.momentum: expected a number, got 'x' (str)"),
    ({"schedule": {"name": "MultiStepLR", "milestones": "a"}}, "schedule.milestones: expected a list, got 'a' (str)"),
    ({"schedule": {"name": "MultiStepLR", "milestones": [2, -1]}}, "schedule.milestones[1]: must be >= 0, got -1"),
    ({"schedule": {"name": "StepLR", "step_size": 2.5}}, "schedule.step_size: expected an int, got 2.5 (float)"),
    ({"schedule": {"name": "CyclicLR", "base_lr": 0.001, "max_lr": "a"}},
     "schedule.max_lr: expected a number or a list of numbers, got 'a' (str)"),
    ({"schedule": {"name": "CyclicLR", "base_lr": [math.nan], "max_lr": 0.1}},
     "schedule.base_lr[0]: expected a finite number, got nan"),
    ({"schedule": {"name": "CosineAnnealingWarmRestarts", "T_0": 0}}, "schedule.T_0: must be >= 1, got 0"),
    ({"schedule": {"name": "StepLR", "step_size": 2, "bogus": 1}},
     "schedule.bogus: unknown key for schedule 'StepLR'; known keys: name, step_size, gamma"),
    ({"model": {"dropout": 1.5}}, "model.dropout: must be in [0, 1], got 1.5"),
    ({"model": {"sizes": [64, 0, 10]}}, "model.sizes[1]: must be >= 1, got 0"),
    ({"data": {"batch_size": 0}}, "data.batch_size: must be >= 1, got 0"),
    ({"data": {"val_fraction": math.nan}}, "data.val_fraction: expected a finite number, got nan"),
    ({"train": {"grad_clip": 0.0}}, "train.grad_clip: must be in (0, 3.4e38"),
    ({"train": {"epochs": 0}}, "train.epochs: must be >= 1, got 0"),
    ({"run": {"name": ".."}}, "run.name: '..' is '..'; expected one folder name inside run.dir"),
    ({"run": {"name": "a\\b"}}, "run.name: 'a\\\\b' contains '\\\\'"),
    ({"run": {"name": ""}}, "run.name: '' is empty"),
], ids=lambda v: str(v)[:40] if isinstance(v, dict) else "")
def test_kwargs_and_fixed_keys_give_one_clear_line(tmp_path, sections, message):
    with pytest.raises(ConfigError) as info:
        validate(_cfg(tmp_path, **sections))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_run_name_through_a_symlink_outside_is_refused(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "runs" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="run.name: 'link' resolves to .*elsewhere, outside run.dir"):
        validate(_cfg(tmp_path, run={"name": "link"}))


def test_default_run_name_from_a_dotted_config_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"run.name \(default, from .*\.\.\.toml\): '\.\.' is '\.\.'"):
        validate(_cfg(tmp_path), config_path=tmp_path / "...toml")


def test_valid_edges_are_accepted(tmp_path):
    cfg = validate(_cfg(tmp_path, train={"seed": 2**63 - 1, "label_smoothing": 1.0, "early_stopping": 0,
                                         "grad_clip": 1e30},
                        optim={"lr": 0.0, "betas": [0.0, 0.999]},
                        schedule={"name": "CosineAnnealingLR", "T_max": 1}, run={"name": "my-run.2"}))
    assert cfg["train"]["seed"] == 2**63 - 1 and cfg["optim"]["lr"] == 0.0 and cfg["run"]["name"] == "my-run.2"
    assert cfg["schedule"]["T_max"] == 1 and cfg["train"]["early_stopping"] == 0


def test_set_on_a_section_given_as_a_value(tmp_path):
    with pytest.raises(ConfigError, match=r"\[optim\]: expected a table of keys, got 'adam' \(str\)"):
        apply_overrides({"optim": "adam"}, ["optim.lr=0.1"])
