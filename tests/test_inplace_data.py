"""``p.data = t`` after an optimizer is built: as in torch, ``p`` and ``t`` share one storage,
the optimizer's step updates it (so ``t`` sees the step), and later in-place changes through
either are seen by the other and by the next step."""
import numpy as np
import pytest
import torch

import retrograd as rg


def _np(t):
    return t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t.detach()._array)


@pytest.mark.parametrize("make", [
    lambda lib, ps: lib.optim.SGD(ps, lr=0.1, momentum=0.9),
    lambda lib, ps: lib.optim.Adam(ps, lr=0.05),
    lambda lib, ps: lib.optim.AdamW(ps, lr=0.05, weight_decay=0.1),
])
def test_rebound_data_is_the_storage_the_optimizer_updates(make):
    rng = np.random.default_rng(0)
    w0, b0, x = rng.normal(size=(3, 4)), rng.normal(size=3), rng.normal(size=(5, 4))
    new_w = rng.normal(size=(3, 4))
    out = []
    for lib in (rg, torch):
        lin = lib.nn.Linear(4, 3).double()
        with lib.no_grad():
            lin.weight.copy_(lib.tensor(w0))
            lin.bias.copy_(lib.tensor(b0))
        opt = make(lib, lin.parameters())
        for step in range(3):
            opt.zero_grad()
            lin(lib.tensor(x)).pow(2).sum().backward()
            opt.step()
            if step == 0:
                t = lib.tensor(new_w)
                lin.weight.data = t  # from now on, lin.weight and t are one storage
            if step == 1:
                t.mul_(0.5)  # seen by the parameter, hence by the next step
        assert np.shares_memory(_np(t), _np(lin.weight))
        out.append((t, lin.weight, lin.bias))
    for a, b in zip(*out):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-12)
