"""Train a small MLP on scikit-learn's digits with a hand-written SGD loop.

Everything here is retrograd's autograd engine: tensors, ops, backward and a
manual parameter update under ``rg.no_grad()``. Run: python examples/train_mlp.py
"""
import numpy as np

import retrograd as rg


def load_digits():
    try:
        from sklearn.datasets import load_digits as _load
    except ModuleNotFoundError:
        raise SystemExit("examples/train_mlp.py needs scikit-learn's digits: "
                         "python3 -m pip install -e '.[examples]'") from None

    d = _load()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    return x, y


def main(epochs: int = 15, batch_size: int = 64, lr: float = 0.1, seed: int = 0) -> float:
    rg.manual_seed(seed)
    x, y = load_digits()
    n_train = 1500
    xtr, ytr, xte, yte = x[:n_train], y[:n_train], x[n_train:], y[n_train:]

    def layer(n_in, n_out):  # PyTorch's Linear init: U(-1/sqrt(n_in), 1/sqrt(n_in))
        bound = 1 / np.sqrt(n_in)
        w = (rg.rand(n_in, n_out) * 2 - 1) * bound
        b = (rg.rand(n_out) * 2 - 1) * bound
        return w.requires_grad_(), b.requires_grad_()

    w1, b1 = layer(64, 128)
    w2, b2 = layer(128, 10)
    params = [w1, b1, w2, b2]

    def forward(xb):
        h = (xb @ w1 + b1).relu()
        return h @ w2 + b2

    def cross_entropy(logits, target):
        logp = logits.log_softmax(-1)
        return -logp[rg.arange(len(target)), target].mean()

    gen = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = gen.permutation(n_train)
        total = 0.0
        for i in range(0, n_train, batch_size):
            idx = order[i:i + batch_size]
            loss = cross_entropy(forward(rg.tensor(xtr[idx])), rg.tensor(ytr[idx]))
            for p in params:
                p.grad = None
            loss.backward()
            with rg.no_grad():
                for p in params:
                    p.sub_(p.grad, alpha=lr)
            total += loss.item() * len(idx)
        with rg.no_grad():
            acc = (forward(rg.tensor(xte)).argmax(-1) == rg.tensor(yte)).float().mean().item()
        print(f"epoch {epoch + 1:2d}  train loss {total / n_train:.4f}  test accuracy {acc:.3f}")
    return acc


if __name__ == "__main__":
    main()
