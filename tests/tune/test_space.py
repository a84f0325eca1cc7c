"""Parsing [search] specs: every bad spec is an error naming its key; grids; TOML output."""
import itertools
import sys

import optuna
import pytest

from retrograd.tune import SearchSpaceError, parse_space, split_search_table, toml_dumps

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@pytest.mark.parametrize("spec,message", [
    ({"optim.lr": {"loguniform": [1e-5, 1e-1]}}, "search.optim.lr: unknown option 'loguniform'"),
    ({"optim.lr": {}}, "search.optim.lr: expected exactly one distribution of log_uniform, uniform, int, choice, got none"),
    ({"optim.lr": {"uniform": [0, 1], "int": [1, 2]}}, "search.optim.lr: expected exactly one distribution"),
    ({"optim.lr": {"log_uniform": [1e-5]}}, "search.optim.lr: log_uniform takes [low, high] (two numbers), got [1e-05]"),
    ({"optim.lr": {"uniform": [1, 2, 3]}}, "search.optim.lr: uniform takes [low, high]"),
    ({"optim.lr": {"uniform": [0.5, 0.5]}}, "search.optim.lr: uniform needs low < high, got [0.5, 0.5]"),
    ({"model.depth": {"int": [6, 1]}}, "search.model.depth: int needs low < high, got [6, 1]"),
    ({"model.depth": {"int": [1.5, 4]}}, "search.model.depth: int bounds must be integers"),
    ({"optim.lr": {"log_uniform": [0, 1]}}, "search.optim.lr: log_uniform needs positive bounds, got [0, 1]"),
    ({"model.depth": {"int": [0, 4], "log": True}}, "search.model.depth: int with log = true needs low >= 1"),
    ({"optim.lr": {"uniform": ["a", 1]}}, "search.optim.lr: uniform bounds must be numbers"),
    ({"data.batch_size": {"choice": []}}, "search.data.batch_size: choice takes a non-empty list"),
    ({"data.batch_size": {"choice": [32, 32]}}, "search.data.batch_size: choice lists a value twice"),
    ({"optim.lr": {"uniform": [0, 1], "step": -0.1}}, "search.optim.lr: step must be a positive number"),
    ({"optim.lr": {"uniform": [0, 1], "grid": [0.5, 2.0]}}, "search.optim.lr: grid value 2.0 is outside [0.0, 1.0]"),
    ({"optim.lr": "0.1"}, "search.optim.lr: expected a table with one of"),
    ({"optim.momentum": {"uniform": [0, 1], "when": "sgd"}}, "search.optim.momentum: when takes a table"),
    ({"a.x": {"choice": [1, 2], "when": {"b.y": 1}}, "b.y": {"choice": [1, 2], "when": {"a.x": 1}}},
     "its when conditions form a cycle"),
])
def test_bad_specs_name_the_key(spec, message):
    with pytest.raises(SearchSpaceError) as e:
        parse_space(spec)
    assert message in str(e.value)


def test_grid_of_a_continuous_parameter_needs_values_or_step():
    space = parse_space({"optim.lr": {"log_uniform": [1e-4, 1e-1]}, "data.batch_size": {"choice": [32, 64]}})
    with pytest.raises(SearchSpaceError, match=r"search.optim.lr: grid search needs a finite set of values, "
                                               r"but log_uniform \[0.0001, 0.1\] is continuous; add grid"):
        space.grid_points({})
    space = parse_space({"optim.lr": {"log_uniform": [1e-4, 1e-1], "grid": [1e-3, 1e-2]},
                         "optim.wd": {"uniform": [0.0, 0.1], "step": 0.05}, "model.depth": {"int": [1, 5], "step": 2}})
    assert space["optim.wd"].grid_values() == [0.0, 0.05, 0.1]
    assert space["model.depth"].grid_values() == [1, 3, 5]
    assert len(space.grid_points({})) == 2 * 3 * 3


def test_when_must_refer_to_a_parameter_or_a_config_key():
    space = parse_space({"optim.momentum": {"uniform": [0, 1], "when": {"optim.nme": "sgd"}}})
    with pytest.raises(SearchSpaceError, match="search.optim.momentum: when refers to 'optim.nme', which is "
                                               "neither a searched parameter nor set in the config"):
        space.check_config({"optim": {"name": "sgd"}})
    space.check_config({"optim": {"nme": "sgd"}})  # a fixed config value is a valid condition


def test_nested_tables_equal_dotted_keys_and_settings_split_off():
    # what tomllib gives for `optim.lr = {...}` (a dotted key) and for `"optim.lr" = {...}`
    nested = tomllib.loads('[search]\nmethod = "grid"\nn_trials = 4\noptim.lr = {log_uniform = [1e-4, 1e-1]}\n'
                           'optim.momentum = {uniform = [0.0, 0.9], when = {optim.name = "sgd"}, grid = [0.0, 0.9]}\n'
                           '"optim.name" = {choice = ["sgd", "adam"]}\n')["search"]
    settings, space = split_search_table(nested)
    assert settings == {"method": "grid", "n_trials": 4}
    s = parse_space(space)
    assert sorted(s.names) == ["optim.lr", "optim.momentum", "optim.name"]
    assert s["optim.momentum"].when == (("optim.name", ("sgd",)),)
    assert s.names.index("optim.name") < s.names.index("optim.momentum")  # a condition comes first
    with pytest.raises(SearchSpaceError, match="search.n_trail: unknown setting; the settings are method, "):
        split_search_table({"n_trail": 4})


def test_conditional_grid_points_and_suggestions():
    space = parse_space({"optim.name": {"choice": ["sgd", "adam"]},
                         "optim.momentum": {"uniform": [0.0, 0.99], "grid": [0.0, 0.9], "when": {"optim.name": "sgd"}},
                         "optim.lr": {"choice": [0.01, 0.1]}})
    points = space.grid_points({})
    expected = [{"optim.name": "sgd", "optim.momentum": m, "optim.lr": lr} for m, lr in itertools.product([0.0, 0.9],
                [0.01, 0.1])] + [{"optim.name": "adam", "optim.lr": lr} for lr in [0.01, 0.1]]
    assert sorted(map(str, points)) == sorted(map(str, expected))
    params, cfg = space.suggest(optuna.trial.FixedTrial({"optim.name": "adam", "optim.lr": 0.1}), {"optim": {}})
    assert params == {"optim.name": "adam", "optim.lr": 0.1}
    assert cfg == {"optim": {"name": "adam", "lr": 0.1}}  # no momentum for adam
    params, cfg = space.suggest(optuna.trial.FixedTrial({"optim.name": "sgd", "optim.momentum": 0.5,
                                                         "optim.lr": 0.01}), {"optim": {"nesterov": False}})
    assert cfg == {"optim": {"nesterov": False, "name": "sgd", "momentum": 0.5, "lr": 0.01}}


def test_list_choices_are_stored_as_json_and_decoded():
    space = parse_space({"model.sizes": {"choice": [[64, 32, 10], [64, 128, 10]]}})
    params, cfg = space.suggest(optuna.trial.FixedTrial({"model.sizes": "[64, 128, 10]"}), {})
    assert cfg == {"model": {"sizes": [64, 128, 10]}}
    assert space.decode({"model.sizes": "[64, 32, 10]"}) == {"model.sizes": [64, 32, 10]}


def test_toml_dumps_reads_back():
    cfg = {"model": {"name": "mlp", "sizes": [784, 256, 10], "opts": {"a": 1}}, "optim": {"name": "sgd", "lr": 0.1,
           "nesterov": True, "betas": None}, "run": {"dir": "runs", "name": 'a "quoted" name'}}
    text = toml_dumps(cfg, "best trial 3\nparams: lr")
    assert text.startswith("# best trial 3\n# params: lr\n")
    back = tomllib.loads(text)
    assert back == {"model": {"name": "mlp", "sizes": [784, 256, 10], "opts": {"a": 1}},
                    "optim": {"name": "sgd", "lr": 0.1, "nesterov": True}, "run": {"dir": "runs",
                                                                                   "name": 'a "quoted" name'}}
