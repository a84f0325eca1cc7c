"""``TuneTrainFn``: the ``train_fn`` that trains a trial's config through the recipe, as
``retrograd train`` does (the ``retrograd tune`` command passes one to ``tune.search``)."""
from __future__ import annotations

import json
import math

from ..data.presets import DataBundle, build_data
from ..train.checkpoint import find_generators
from ..train.config import validate
from ..train.recipe import data_seed, make_trainer, prepare
from ..train.runs import final_metrics
from .pruning import PruningCallback

__all__ = ["TuneTrainFn", "RLTuneFn"]


class TuneTrainFn:
    """``train_fn`` for ``rg.tune``: validate a trial's config and train it as ``retrograd train`` does
    (no run folder), reporting the validation metric each epoch through a ``PruningCallback``. The data
    is loaded and split once, with ``data.seed`` (``data_seed`` where the config has none), so every
    trial sees the same split; its augmentation generators restart from their seed in every trial,
    as in a run of its own. A trial thus gives the numbers of ``retrograd train`` on its config with
    ``data.seed`` set (``retrograd tune`` writes it into the base config, so the best config has it)."""

    def __init__(self, config_path: str | None, data_seed: int, quiet: bool = True) -> None:
        self.config_path, self.data_seed, self.quiet = config_path, data_seed, quiet
        self._data: dict[str, tuple[DataBundle, dict]] = {}

    def __call__(self, trial_cfg: dict, reporter) -> dict:
        cfg = validate(trial_cfg, config_path=self.config_path)
        if cfg["data"]["seed"] is None:
            cfg["data"]["seed"] = self.data_seed
        key = json.dumps(cfg["data"], sort_keys=True)
        if key not in self._data:  # one data set in memory at a time
            data = build_data(cfg["data"], data_seed(cfg))
            self._data = {key: (data, {k: g.get_state() for k, g in find_generators(data).items()})}
        data, states = self._data[key]
        for k, g in find_generators(data).items():
            g.set_state(states[k])
        setup = prepare(cfg, data, config_path=self.config_path)
        trainer = make_trainer(setup, None, quiet=self.quiet, checkpoints=False,
                               extra_callbacks=[PruningCallback(reporter)])
        history = trainer.fit(setup.train_loader, setup.val_loader, epochs=cfg["train"]["epochs"])
        metrics = final_metrics(history)
        if trainer.failure:  # NaNGuard stopped the run: a failed trial, not a result (Optuna fails a NaN value)
            reporter.trial.set_user_attr("failure", trainer.failure)
            return {k: math.nan for k in {reporter.metric: None, **reporter.last, **metrics}}
        return metrics


class RLTuneFn:
    """``train_fn`` for an RL config (``retrograd tune`` on a config with ``[rl]``): validate the trial's
    config and train it as ``retrograd rl`` does (no run folder), reporting the mean training return of
    the last ``rl.window`` episodes at each tenth of the run (as ``eval_return_mean``, for the pruner);
    returns ``eval_return_mean``/``eval_return_std`` of the final deterministic policy over
    ``rl.eval_episodes`` evaluation episodes (``retrograd.rl.run.train_for_tune``)."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path

    def __call__(self, trial_cfg: dict, reporter) -> dict:
        from ..rl.config import validate as validate_rl
        from ..rl.run import train_for_tune

        cfg = validate_rl(trial_cfg, config_path=self.config_path)
        return train_for_tune(cfg, lambda tenth, metrics: reporter(tenth, metrics))
