"""Run by tests/cli/test_nproc.py, in one process or as each rank under mpiexec: a small float64 MLP
trained through the recipe (``prepare(cfg, ranks=...)``, ``make_trainer``), the parameters of rank 0
saved to OUT.npz.

    python nproc_driver.py OUT full                  # train every epoch
    python nproc_driver.py OUT part CKPT STEP        # stop after optimizer step STEP, checkpoint to CKPT
    python nproc_driver.py OUT resume CKPT           # continue CKPT to the end

With NPROC_DRIVER_DROPOUT=P in the environment the MLP has dropout P.
"""
import os
import sys

import numpy as np

import retrograd as rg
from retrograd.train import Callback, config, recipe
from retrograd.train.ranks import from_environment, start

CONFIG = {"model": {"name": "mlp", "sizes": [4, 16, 16, 3]},
          "data": {"name": "iris", "batch_size": 16, "train_samples": 98},
          "optim": {"name": "adamw", "lr": 0.01, "weight_decay": 0.1},
          "train": {"epochs": 3, "seed": 3, "grad_clip": 1.0, "progress": False, "metrics": ["accuracy"]}}


class StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_batch_end(self, trainer, batch_idx, logs):
        if trainer.state.global_step == self.step:
            trainer.stop_training = True


def main():
    out, mode = sys.argv[1], sys.argv[2]
    rg.set_default_dtype(rg.float64)
    raw = {k: dict(v) for k, v in CONFIG.items()}
    if os.environ.get("NPROC_DRIVER_DROPOUT"):  # a model that draws random numbers in training
        raw["model"]["dropout"] = float(os.environ["NPROC_DRIVER_DROPOUT"])
    cfg = config.validate(raw)
    ranks = from_environment(timeout=60)
    setup = recipe.prepare(cfg, ranks=ranks)
    start(ranks, setup, rg.__version__, fresh=mode != "resume")
    extra = [StopAt(int(sys.argv[4]))] if mode == "part" else []
    trainer = recipe.make_trainer(setup, None, quiet=True, extra_callbacks=extra)
    trainer.fit(setup.train_loader, setup.val_loader, epochs=cfg["train"]["epochs"],
                resume_from=sys.argv[3] if mode == "resume" else None)
    if mode == "part" and ranks.rank == 0:
        trainer.save_checkpoint(sys.argv[3])
    params = {n: p._array for n, p in setup.model.named_parameters()}
    gathered = ranks.allgather(params, "the parameters of every rank")
    if ranks.rank == 0:
        same = all(all(np.array_equal(g[n], params[n]) for n in params) for g in gathered)
        history = trainer.history["train_loss"] + trainer.history["val_loss"]
        np.savez(out, **params, every_rank_equal=np.array(same), steps=np.array(trainer.state.global_step),
                 history=np.array(history), n_train=np.array(len(setup.data.train)))


if __name__ == "__main__":
    main()
