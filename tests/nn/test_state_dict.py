"""state_dict / load_state_dict: round trips, PyTorch interchange and error messages."""
import re

import numpy as np
import pytest
import torch

import retrograd as rg


def _model(nn):
    return nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))


def test_round_trip_rg_to_rg_keeps_objects():
    a, b = _model(rg.nn), _model(rg.nn)
    a(rg.randn(6, 4))  # move the running stats
    w = b[0].weight
    res = b.load_state_dict(a.state_dict())
    assert res.missing_keys == [] and res.unexpected_keys == [] and repr(res) == "<All keys matched successfully>"
    assert b[0].weight is w  # copied in place: optimizers holding the parameter keep working
    for (k, va), (k2, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    assert b[1].num_batches_tracked.item() == 1 and b[1].num_batches_tracked.dtype == np.int64
    sd = a.state_dict()
    assert not any(v.requires_grad for v in sd.values())
    assert all(v.requires_grad for k, v in a.state_dict(keep_vars=True).items() if "running" not in k
               and "num_batches" not in k)


def test_torch_to_rg_and_back():
    t = _model(torch.nn)
    t.train()
    t(torch.randn(8, 4))
    r = _model(rg.nn)
    r.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})  # numpy values
    r2 = _model(rg.nn)
    r2.load_state_dict(t.state_dict())  # torch tensors accepted as they are
    t2 = _model(torch.nn)
    t2.load_state_dict({k: torch.tensor(v.numpy()) for k, v in r.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    t.eval(), t2.eval(), r.eval(), r2.eval()
    want = t(torch.tensor(x)).detach().numpy()
    for out in (r(rg.tensor(x)), r2(rg.tensor(x))):
        np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t2(torch.tensor(x)).detach().numpy(), want, rtol=1e-6)


def test_float64_values_cast_into_float32_params():
    m = rg.nn.Linear(2, 2)
    m.load_state_dict({"weight": np.ones((2, 2)), "bias": rg.zeros(2, dtype=rg.float64)})
    assert m.weight.dtype == np.float32 and np.all(m.weight.detach().numpy() == 1)


def test_missing_unexpected_and_mismatched_keys():
    m = _model(rg.nn)
    sd = dict(m.state_dict())
    del sd["0.bias"]
    sd["3.extra"] = np.zeros(1)
    sd["9.weight"] = np.zeros(1)
    sd["3.weight"] = np.zeros((3, 5))
    with pytest.raises(RuntimeError) as e:
        m.load_state_dict(sd)
    msg = str(e.value)
    assert msg.startswith("Error(s) in loading state_dict for Sequential:")
    assert 'Missing key(s) in state_dict: "0.bias".' in msg
    assert 'Unexpected key(s) in state_dict: "9.weight", "3.extra".' in msg
    assert ("size mismatch for 3.weight: copying a param with shape (3, 5) from checkpoint, the shape in "
            "current model is (2, 5).") in msg
    assert msg.index("Missing") < msg.index("Unexpected") < msg.index("size mismatch")


def test_non_strict_returns_keys_but_still_rejects_size_mismatch():
    m = _model(rg.nn)
    sd = dict(m.state_dict())
    del sd["1.running_var"]
    del sd["1.num_batches_tracked"]  # old checkpoints lack it: not reported, as PyTorch
    sd["head.weight"] = np.zeros(2)
    res = m.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["1.running_var"] and res.unexpected_keys == ["head.weight"]
    assert res == (["1.running_var"], ["head.weight"])
    sd["0.weight"] = np.zeros((4, 4))
    with pytest.raises(RuntimeError, match=re.escape("size mismatch for 0.weight")):
        m.load_state_dict(sd, strict=False)


def test_same_error_lists_as_torch():
    t, r = _model(torch.nn), _model(rg.nn)
    sd = {k: v for k, v in t.state_dict().items() if not k.startswith("1.")}
    sd["x.y"] = torch.zeros(1)
    tres = t.load_state_dict(sd, strict=False)
    rres = r.load_state_dict(sd, strict=False)
    assert rres.missing_keys == tres.missing_keys and rres.unexpected_keys == tres.unexpected_keys


def test_buffers_none_and_non_persistent_are_left_out():
    m = rg.nn.BatchNorm1d(3, track_running_stats=False)
    assert list(m.state_dict()) == ["weight", "bias"]
    m.register_buffer("cache", rg.zeros(2), persistent=False)
    assert "cache" not in m.state_dict() and [n for n, _ in m.named_buffers()] == ["cache"]
    loss = rg.nn.CrossEntropyLoss(weight=rg.ones(3))
    assert list(loss.state_dict()) == list(torch.nn.CrossEntropyLoss(weight=torch.ones(3)).state_dict())


def test_bad_state_dict_type():
    with pytest.raises(TypeError, match="Expected state_dict to be dict-like"):
        rg.nn.Linear(1, 1).load_state_dict([1, 2])
