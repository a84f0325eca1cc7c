"""Training: ``Trainer`` (the loop), ``callbacks``, ``metrics``, ``plots``, exact checkpoint/resume,
``LRFinder`` (the learning-rate range test); both run the training step of ``step``.

    trainer = rg.train.Trainer(model, opt, rg.nn.CrossEntropyLoss(), scheduler=sched,
                               callbacks=[rg.train.callbacks.ProgressBar()], run_dir="runs/a")
    history = trainer.fit(train_loader, val_loader, epochs=10)

A run folder that ``retrograd train`` wrote comes back with ``load_run`` (``predict``): its model
with the best or last weights, in eval mode, built from the run's resolved config::

    run = rg.train.load_run("runs/fashion_mlp")     # best if the run has one, else last
    probs = run.predict_proba(x_new)
"""
from . import callbacks, metrics
from .callbacks import (Callback, EarlyStopping, GradientFlow, LRMonitor, MetricLogger, ModelCheckpoint,
                        NaNGuard, ProgressBar)
from .checkpoint import CheckpointError
from .lr_finder import LRFinder
from .predict import LoadedRun, load_run
from .trainer import Trainer, TrainerState
from ..nn.utils import clip_grad_norm_  # the one clip_grad_norm_ (torch.nn.utils'), kept under rg.train too


def __getattr__(name: str):
    # plots imports matplotlib only when asked for
    if name == "plots":
        import importlib
        return importlib.import_module(".plots", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Trainer", "TrainerState", "LRFinder", "clip_grad_norm_", "callbacks", "metrics", "plots", "Callback",
           "ProgressBar", "MetricLogger", "EarlyStopping", "ModelCheckpoint", "LRMonitor", "NaNGuard",
           "GradientFlow", "CheckpointError", "load_run", "LoadedRun"]
