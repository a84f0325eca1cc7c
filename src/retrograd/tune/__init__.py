"""Hyperparameter search on Optuna: grid, random, TPE and CMA-ES samplers, median/Hyperband
pruning, SQLite/journal/PostgreSQL storage, local worker processes and crash-safe resume.

    import retrograd.tune as tune

    def train_fn(cfg, reporter):           # cfg: the config with the trial's values set
        trainer = ...                       # build from cfg; cfg["train"]["seed"] is the trial's seed
        trainer.callbacks.append(tune.PruningCallback(reporter))
        history = trainer.fit(train_loader, val_loader, epochs=cfg["train"]["epochs"])
        return {"val_accuracy": history["val_accuracy"][-1]}

    result = tune.search(cfg, {"optim.lr": {"log_uniform": [1e-4, 1e-1]},
                               "data.batch_size": {"choice": [32, 64, 128]}},
                         train_fn=train_fn, method="tpe", n_trials=30, study_dir="studies/mlp",
                         study_name="mlp")
    result.best_config                      # also written to studies/mlp/mlp-best.toml

``tune`` is generic: the training is the injected ``train_fn``; ``TuneTrainFn`` trains a trial's
config through ``retrograd.train.recipe`` as ``retrograd train`` does (the ``retrograd tune`` command
passes one).
"""
try:
    import optuna as _optuna  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("retrograd.tune needs Optuna: pip install 'retrograd[tune]'") from e

from .pruning import PruningCallback, Reporter, TrialPruned
from .results import TuneResult, format_table, show, toml_dumps, trial_rows
from .space import (DISTRIBUTIONS, SETTINGS, Param, SearchSpace, SearchSpaceError, TuneError, parse_space,
                    split_search_table)
from .storage import open_storage
from .study import METHODS, PRUNERS, objective, recover_interrupted, search, trial_seed
from .train_fn import RLTuneFn, TuneTrainFn

__all__ = ["search", "objective", "show", "PruningCallback", "Reporter", "TrialPruned", "TuneResult",
           "SearchSpace", "SearchSpaceError", "TuneError", "Param", "parse_space", "split_search_table", "trial_seed",
           "recover_interrupted", "open_storage", "format_table", "trial_rows", "toml_dumps", "METHODS",
           "PRUNERS", "DISTRIBUTIONS", "SETTINGS", "TuneTrainFn", "RLTuneFn"]
