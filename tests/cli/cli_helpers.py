"""Shared by the CLI tests: a small digits config and reading a run's summary."""
import json
import pathlib

from retrograd.train import Callback

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"

DIGITS_MLP = """
[model]
name = "mlp"
sizes = [64, 64, 10]

[data]
name = "digits"
batch_size = 32

[optim]
name = "adam"
lr = 0.003

[train]
epochs = 2
seed = 0
progress = false
"""

# a character-level GPT small enough to train in a second (for generate)
TINY_GPT = """
[model]
name = "gpt"
n_layer = 1
n_head = 2
d_model = 16

[data]
name = "shakespeare"
block_size = 8
batch_size = 16
train_samples = 64
val_samples = 16

[train]
epochs = 1
progress = false
"""

# a model file for `name = "m.py:Tiny"` configs on digits
TINY_MODEL = ("import retrograd.nn as nn\n\n"
              "class Tiny(nn.Module):\n"
              "    def __init__(self, hidden: int = 16):\n"
              "        super().__init__()\n"
              "        self.body = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))\n\n"
              "    def forward(self, x):\n"
              "        return self.body(x)\n")


def summary(run_dir) -> dict:
    return json.loads((pathlib.Path(run_dir) / "summary.json").read_text())


def to_toml(cfg: dict) -> str:
    """A TOML text of a two-level dict of str/int/float/bool/list values (enough for test configs)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)
    return "\n".join(f"[{s}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in keys.items())
                     for s, keys in cfg.items())


class FirstStep(Callback):
    """Records where training (re)starts: (epoch, batch in epoch, optimizer step)."""

    def __init__(self) -> None:
        self.first = None

    def on_batch_start(self, trainer, batch_idx, logs):
        if self.first is None:
            self.first = (trainer.state.epoch, batch_idx, trainer.state.global_step)
