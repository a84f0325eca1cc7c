"""``rg.train.summary``: output shapes and parameter counts against PyTorch's, the collapsed rows
of repeated blocks, the table, and that a summary leaves the model, its RNG and the data as they were."""
import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd import nn
from retrograd.data import DataLoader, TensorDataset
from retrograd.models import GPT
from retrograd.train.model_summary import example_inputs


def _build(self, lib):
    """Conv, batch norm, pool, an LSTM (a tuple output): the same layers in both libraries."""
    self.features = lib.Sequential(lib.Conv2d(1, 4, 3), lib.BatchNorm2d(4), lib.ReLU(), lib.MaxPool2d(2),
                                   lib.Flatten())
    self.fc = lib.Linear(4 * 3 * 3, 12)
    self.rnn = lib.LSTM(3, 5, batch_first=True)
    self.head = lib.Linear(5, 2)


def _forward(self, x):
    h = self.fc(self.features(x)).reshape(x.shape[0], 4, 3)
    out, _ = self.rnn(h)
    return self.head(out[:, -1])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        _build(self, nn)

    forward = _forward


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        _build(self, torch.nn)

    forward = _forward


def _torch_shapes(model, x):
    """Output shape of every module of a torch model in one forward pass, flattened as summary does."""
    found = {}

    def flat(o):
        if isinstance(o, torch.Tensor):
            return [list(o.shape)]
        return [s for x in o for s in flat(x)] if isinstance(o, (tuple, list)) else []

    hooks = [m.register_forward_hook(lambda m, a, o, name=name: found.setdefault(name, flat(o)) and None)
             for name, m in model.named_modules()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return {k: (v[0] if len(v) == 1 else v) for k, v in found.items()}


def test_shapes_and_counts_match_torch():
    ours, theirs = Net(), TorchNet()
    ours.fc.requires_grad_(False)
    theirs.fc.requires_grad_(False)
    s = rg.train.summary(ours, (6, 1, 8, 8))
    expected = _torch_shapes(theirs.eval(), torch.randn(6, 1, 8, 8))
    assert [r.path for r in s.rows] == [n for n, _ in theirs.named_modules()]
    assert {r.path: r.output_shape for r in s.rows} == expected
    assert expected["rnn"] == [[6, 4, 5], [1, 6, 5], [1, 6, 5]]  # out, (h, c): a tuple output, flattened
    total = sum(p.numel() for p in theirs.parameters())
    trainable = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    assert (s.total_params, s.trainable_params, s.non_trainable_params) == (total, trainable, total - trainable)
    assert (total, trainable) == (40 + 8 + 444 + 200 + 12, 40 + 8 + 200 + 12)
    assert s.param_bytes == 4 * total and s.param_mb == pytest.approx(4 * total / 1e6)
    # each row counts what the module owns; the column adds up to the total
    assert {r.path: r.params for r in s.rows if r.params} == {
        n: sum(p.numel() for p in m.parameters(recurse=False)) for n, m in theirs.named_modules()
        if sum(p.numel() for p in m.parameters(recurse=False))}
    assert sum(r.params for r in s.rows) == total
    buffers = sum(b.numel() for b in theirs.buffers())  # running mean, var and the batch count
    assert (s.buffer_values, s.buffer_bytes) == (buffers, 4 * 4 + 4 * 4 + 8)


def test_table_exact():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert str(rg.train.summary(model, (5, 3))).splitlines() == [
        "Layer (type)  Output shape  Param #",
        "===================================",
        "Sequential    [5, 2]             --",
        "├─Linear: 0   [5, 4]             16",
        "├─ReLU: 1     [5, 4]             --",
        "└─Linear: 2   [5, 2]             10",
        "===================================",
        "Total params: 26 (104 B)",
        "Trainable params: 26",
        "Non-trainable params: 0",
        "Input shape: [5, 3]",
    ]


def test_repeated_blocks_collapse_and_still_add_up():
    g = GPT(vocab_size=11, block_size=8, n_layer=4, n_head=2, d_model=16)
    s = rg.train.summary(g, (3, 8), dtypes=["int64"])
    torch_like = {n: sum(p.numel() for p in m.parameters()) for n, m in g.named_modules()}
    (row,) = [r for r in s.rows if r.repeats]
    assert (row.path, row.type, row.repeats, row.output_shape) == ("blocks.1-3", "Block", 3, [3, 8, 16])
    assert row.params == 3 * torch_like["blocks.0"]
    assert not any(r.path.startswith("blocks.2") for r in s.rows)
    assert sum(r.params for r in s.rows) == s.total_params == torch_like[""]
    assert "│ └─Block x 3: 1-3 (same as 0)" in str(s)
    # two blocks: the second is one row too
    s = rg.train.summary(GPT(vocab_size=11, block_size=8, n_layer=2, n_head=2, d_model=16), (3, 8), dtypes=["int64"])
    assert "│ └─Block: 1 (same as 0)         [3, 8, 16]      3,280" in str(s).splitlines()
    # two plain layers stay two rows (collapsing would save none)
    s = rg.train.summary(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), (3, 2))
    assert [r.name for r in s.rows] == ["", "0", "1"]
    # a repeated pattern of several layers (Linear, ReLU) collapses too
    deep = nn.Sequential(nn.Linear(2, 8), *[m for _ in range(5) for m in (nn.Linear(8, 8), nn.ReLU())],
                         nn.Linear(8, 1))
    s = rg.train.summary(deep, (4, 2))
    assert [(r.name, r.type, r.params) for r in s.rows] == [
        ("", "Sequential", 0), ("0", "Linear", 24), ("1", "Linear", 72), ("2", "ReLU", 0),
        ("3-10", "(Linear, ReLU)", 4 * 72), ("11", "Linear", 9)]
    assert "├─(Linear, ReLU) x 4: 3-10 (same as 1-2)" in str(s)


def test_depth_and_no_forward_pass():
    g = GPT(vocab_size=11, block_size=8, n_layer=2, n_head=2, d_model=16)
    s = rg.train.summary(g, depth=1)
    assert [r.path for r in s.rows] == ["", "tok", "pos", "drop", "blocks", "ln", "head"]
    assert all(r.output_shape is None for r in s.rows) and s.input_shape is None
    assert s.rows[4].params == sum(p.numel() for p in g.blocks.parameters())
    assert sum(r.params for r in s.rows) == s.total_params


def test_shared_parameters_count_once():
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    s = rg.train.summary(model, input_data=rg.randn(2, 4))
    assert s.total_params == 20 and [r.params for r in s.rows] == [0, 20, 0]


def test_summary_leaves_the_model_and_rng_alone():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))
    model.train()
    model[2].eval()  # a mixed train/eval model keeps each module's own flag
    before = {k: np.array(v) for k, v in model.state_dict().items()}
    state = rg.random.default_generator.get_state()
    rg.train.summary(model, (16, 4))
    after = rg.randn(5).numpy()
    rg.random.default_generator.set_state(state)
    assert np.array_equal(after, rg.randn(5).numpy())  # the summary drew nothing from rg's generator
    assert [m.training for m in model.modules()] == [True, True, True, False, True]
    assert all(np.array_equal(before[k], np.asarray(v)) for k, v in model.state_dict().items())  # running stats too
    assert not model._forward_hooks and not model[0]._forward_hooks


def test_example_inputs_do_not_move_the_loader():
    x, y = rg.randn(10, 3), rg.tensor(np.arange(10))
    a = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, generator=rg.Generator(1))
    b = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, generator=rg.Generator(1))
    (inputs,) = example_inputs(a)
    assert np.array_equal(inputs.numpy(), x.numpy()[:4])
    (inputs,) = example_inputs(a, 20)
    assert inputs.shape == (10, 3)
    assert all(np.array_equal(p[1].numpy(), q[1].numpy()) for p, q in zip(a, b))


def test_bad_arguments():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"summary: input_size must be a shape such as \(32, 784\)"):
        rg.train.summary(model, (2, "x"))
    with pytest.raises(ValueError, match="summary: give input_size or input_data, not both"):
        rg.train.summary(model, (1, 2), input_data=rg.randn(1, 2))
    with pytest.raises(ValueError, match="summary: 2 dtypes for 1 input$"):
        rg.train.summary(model, (1, 2), dtypes=["float32", "int64"])
    with pytest.raises(ValueError, match="summary: depth must be a non-negative int or None, got -1"):
        rg.train.summary(model, depth=-1)
