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


def fruit_table(n: int, seed: int = 0) -> str:
    """A CSV of ``n`` fruits: ``weight`` (g) and ``length`` (cm), numbers; ``color``, categories;
    ``fruit`` (apple, banana or cherry), the class to predict. Seeded; about 1 row in 6 has the
    color of another fruit, and apples and bananas overlap in weight and length."""
    import numpy as np

    rng = np.random.default_rng(seed)
    kinds = {"apple": (150, 30, 9, 2.0, ["red", "green"]), "banana": (135, 30, 12, 4.0, ["yellow"]),
             "cherry": (8, 2, 2, 0.3, ["red"])}
    rows = ["weight,length,color,fruit"]
    for name in rng.choice(list(kinds), size=n):
        w, sw, length, sl, colors = kinds[name]
        color = rng.choice(colors) if rng.random() > 0.25 else rng.choice(["red", "green", "yellow"])
        rows.append(f"{rng.normal(w, sw):.1f},{abs(rng.normal(length, sl)):.1f},{color},{name}")
    return "\n".join(rows) + "\n"
