"""``rg.models.CNN`` evaluates a large batch without grad in chunks of samples (its conv blocks'
arrays chunk-sized: the peak resident set of ``retrograd train``): the outputs must be those of one
pass over the whole batch, bit for bit, and anything that could see the difference (a hook, train
mode, grad mode, a layer that mixes samples) must get the one pass."""
import numpy as np
import pytest

import retrograd as rg
from retrograd import nn
from retrograd.models import CNN


def _batch(model: CNN, extra: int, channels: int = 1, size: int = 28, dtype=np.float32) -> rg.Tensor:
    n = 2 * model.eval_chunk + extra  # two full chunks and a partial one
    x = np.random.default_rng(0).standard_normal((n, channels, size, size)).astype(dtype)
    return rg.from_numpy(x)


@pytest.mark.parametrize("kwargs,extra", [
    ({}, 7),
    ({"batchnorm": True, "pool": "avg", "padding": "same"}, 1),
    ({"channels": [8, 16, 16], "hidden": [32], "dropout": 0.5, "activation": "gelu"}, 13),
    ({"in_channels": 3, "input_size": 16, "kernel_size": 5, "pool": "none"}, 3),
])
@pytest.mark.parametrize("threads", [1, 2])
def test_chunked_eval_equals_one_pass(kwargs, extra, threads):
    old = rg.get_num_threads()
    rg.set_num_threads(threads)
    try:
        rg.manual_seed(1)
        model = CNN(**kwargs)
        if kwargs.get("batchnorm"):  # running statistics that are not the identity
            model.train()
            with rg.no_grad():
                model(_batch(model, 0, size=28))
        model.eval()
        x = _batch(model, extra, channels=kwargs.get("in_channels", 1), size=kwargs.get("input_size", 28))
        with rg.no_grad():
            one = model.net(x).numpy()  # the whole batch in one pass
        c = model.eval_chunk
        assert _first_conv_batches(model, x) == [c, c, extra]  # it runs in chunks
        with rg.no_grad():
            got = model(x).numpy()
        assert got.dtype == one.dtype and np.array_equal(got, one)
    finally:
        rg.set_num_threads(old)


def test_chunked_eval_float64():
    rg.manual_seed(2)
    model = CNN(channels=[4, 8]).double().eval()
    x = _batch(model, 5, dtype=np.float64)
    with rg.no_grad():
        assert np.array_equal(model(x).numpy(), model.net(x).numpy())


def _first_conv_batches(model: CNN, x: rg.Tensor, grad: bool = False) -> list:
    """The batch sizes the first conv layer ran on (seen without a hook: a hook stops the chunking)."""
    seen = []
    conv = model.net[0]
    orig = type(conv).forward
    conv.forward = lambda inp: seen.append(inp.shape[0]) or orig(conv, inp)
    try:
        if grad:
            model(x)
        else:
            with rg.no_grad():
                model(x)
    finally:
        del conv.forward
    return seen


def test_one_pass_where_a_chunk_would_show():
    rg.manual_seed(3)
    model = CNN(channels=[4, 8])
    x = _batch(model, 3)
    n = x.shape[0]
    c = model.eval_chunk
    assert _first_conv_batches(model.eval(), x) == [c, c, 3]
    # a hook on a conv block sees the whole batch once
    h = model.net[3].register_forward_hook(lambda m, args, out: None)
    assert _first_conv_batches(model, x) == [n]
    h.remove()
    h = model.net.register_forward_pre_hook(lambda m, args: None)
    assert _first_conv_batches(model, x) == [n]
    h.remove()
    # train mode (BatchNorm would use the batch's statistics) and grad mode: one pass
    assert _first_conv_batches(model.train(), x) == [n]
    assert _first_conv_batches(model.eval(), x, grad=True) == [n]
    # BatchNorm without running statistics normalises with the batch's in eval mode too
    bn = CNN(channels=[4], batchnorm=True)
    bn.net[1] = nn.BatchNorm2d(4, track_running_stats=False)
    assert _first_conv_batches(bn.eval(), _batch(bn, 3)) == [2 * bn.eval_chunk + 3]
    # a layer the chunking does not know (it could mix samples)
    odd = CNN(channels=[4])
    odd.net[1] = nn.Softmax(dim=0)
    assert _first_conv_batches(odd.eval(), _batch(odd, 3)) == [2 * odd.eval_chunk + 3]
    # a batch that fits one chunk
    small = rg.from_numpy(np.zeros((model.eval_chunk, 1, 28, 28), np.float32))
    assert _first_conv_batches(model.eval(), small) == [model.eval_chunk]
