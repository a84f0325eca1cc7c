import functools

import retrograd as rg


@functools.lru_cache(maxsize=1)
def digits_dataset():
    return rg.data.sklearn_dataset("digits")


def mlp(seed: int = 0, dropout: float = 0.0):
    rg.manual_seed(seed)
    layers = [rg.nn.Linear(64, 32), rg.nn.ReLU()]
    if dropout:
        layers.append(rg.nn.Dropout(dropout))
    return rg.nn.Sequential(*layers, rg.nn.Linear(32, 10))
