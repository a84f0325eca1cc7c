"""rg.models: MLP, CNN and GPT shapes, parameter counts against PyTorch, causality and sampling."""
import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd.models import CNN, GPT, MLP


def _count(m) -> int:
    return int(sum(p.numel() for p in m.parameters()))


def test_mlp_layers_and_output_match_torch():
    m = MLP([784, 128, 64, 10], activation="tanh", batchnorm=True, dropout=0.1, init="he")
    names = [type(x).__name__ for x in m.net]
    assert names == ["Flatten", "Linear", "BatchNorm1d", "Tanh", "Dropout", "Linear", "BatchNorm1d", "Tanh",
                     "Dropout", "Linear"]
    assert _count(m) == 784 * 128 + 128 + 2 * 128 + 128 * 64 + 64 + 2 * 64 + 64 * 10 + 10
    tm = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.BatchNorm1d(128),
                             torch.nn.Tanh(), torch.nn.Dropout(0.1), torch.nn.Linear(128, 64),
                             torch.nn.BatchNorm1d(64), torch.nn.Tanh(), torch.nn.Dropout(0.1),
                             torch.nn.Linear(64, 10))
    tm.load_state_dict({k.removeprefix("net."): torch.tensor(np.asarray(v)) for k, v in m.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    m.eval(), tm.eval()
    np.testing.assert_allclose(m(rg.tensor(x)).detach().numpy(), tm(torch.tensor(x)).detach().numpy(), atol=1e-5)
    # He init: std sqrt(2 / fan_in), zero biases
    w = m.net[1].weight.detach().numpy()
    assert abs(w.std() - np.sqrt(2 / 784)) < 0.05 * np.sqrt(2 / 784) and not m.net[1].bias.detach().numpy().any()


def test_mlp_rejects_bad_arguments():
    with pytest.raises(ValueError, match="MLP: activation: 'swish' is not one of: relu, leaky_relu, gelu"):
        MLP([4, 2], activation="swish")
    with pytest.raises(ValueError, match=r"MLP: sizes must be at least two positive ints \[in, ..., out\], got \[4\]"):
        MLP([4])


def test_cnn_default_is_the_standard_small_fashion_mnist_cnn():
    m = CNN()
    t = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                            torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                            torch.nn.Flatten(), torch.nn.Linear(64 * 5 * 5, 10))
    assert _count(m) == sum(p.numel() for p in t.parameters()) == 34826
    t.load_state_dict({k.removeprefix("net."): torch.tensor(np.asarray(v)) for k, v in m.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((4, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(m(rg.tensor(x)).detach().numpy(), t(torch.tensor(x)).detach().numpy(), atol=1e-5)
    m2 = CNN(in_channels=1, channels=[8, 16, 32], padding="same", hidden=[64], batchnorm=True, pool="avg",
             input_size=28, num_classes=5)
    assert m2(rg.tensor(x)).shape == (4, 5) and m2.features_out == 32 * 3 * 3
    with pytest.raises(ValueError, match="CNN: input_size 8 is too small for 3 conv blocks"):
        CNN(channels=[8, 8, 8], input_size=8)


def test_gpt_is_causal_and_generates_reproducibly():
    rg.manual_seed(0)
    g = GPT(vocab_size=20, block_size=8, n_layer=2, n_head=2, d_model=16)
    idx = rg.tensor(np.array([[1, 2, 3, 4, 5, 6]]))
    other = rg.tensor(np.array([[1, 2, 3, 9, 9, 9]]))
    a, b = g(idx).detach().numpy(), g(other).detach().numpy()
    assert a.shape == (1, 6, 20)
    np.testing.assert_array_equal(a[:, :3], b[:, :3])       # the future does not leak into the past
    assert not np.allclose(a[:, 3:], b[:, 3:])
    # nanoGPT init: N(0, 0.02), residual projections 0.02/sqrt(2 n_layer)
    assert abs(g.tok.weight.detach().numpy().std() - 0.02) < 0.003
    assert abs(g.blocks[0].out.weight.detach().numpy().std() - 0.01) < 0.0015
    out1 = g.generate(idx, 12, temperature=0.9, top_k=5, generator=rg.Generator(3))
    out2 = g.generate(idx, 12, temperature=0.9, top_k=5, generator=rg.Generator(3))
    assert out1.shape == (1, 18) and np.array_equal(out1.numpy(), out2.numpy())
    assert np.array_equal(out1.numpy()[:, :6], idx.numpy())
    greedy = g.generate(idx, 4, temperature=0)
    top1 = g.generate(idx, 4, top_k=1, generator=rg.Generator(0))
    assert np.array_equal(greedy.numpy(), top1.numpy())       # top_k=1 sampling is greedy decoding
    assert g.training                                          # generate restores the mode
    with pytest.raises(ValueError, match="GPT: sequence length 9 exceeds block_size 8"):
        g(rg.tensor(np.zeros((1, 9), dtype=np.int64)))
