"""Training: ``Trainer`` (the loop), ``callbacks``, ``metrics``, ``plots``, exact checkpoint/resume.

    trainer = rg.train.Trainer(model, opt, rg.nn.CrossEntropyLoss(), scheduler=sched,
                               callbacks=[rg.train.callbacks.ProgressBar()], run_dir="runs/a")
    history = trainer.fit(train_loader, val_loader, epochs=10)
"""
from . import callbacks, metrics
from .callbacks import (Callback, EarlyStopping, GradientFlow, LRMonitor, MetricLogger, ModelCheckpoint,
                        NaNGuard, ProgressBar)
from .checkpoint import CheckpointError
from .trainer import Trainer, TrainerState, clip_grad_norm_


def __getattr__(name: str):
    # plots imports matplotlib only when asked for
    if name == "plots":
        import importlib
        return importlib.import_module(".plots", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Trainer", "TrainerState", "clip_grad_norm_", "callbacks", "metrics", "plots", "Callback",
           "ProgressBar", "MetricLogger", "EarlyStopping", "ModelCheckpoint", "LRMonitor", "NaNGuard",
           "GradientFlow", "CheckpointError"]
