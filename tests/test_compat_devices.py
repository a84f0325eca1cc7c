"""Devices as PyTorch 2.13 has them on a machine without CUDA: rg.device, device=, .to/.cpu/.cuda,
the cuda / backends / accelerator stubs, set_default_device."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import retrograd as rg
import retrograd.nn as nn

CUDA_MSG = "retrograd runs on the CPU"


# ------------------------------------------------------------------ rg.device
@pytest.mark.parametrize("args", [("cpu",), ("cpu", 0), ("cpu:0",), ("cpu:3",), ("cuda",), ("cuda", 1),
                                  ("cuda:0",), ("mps",), ("meta",)])
def test_device_object_as_torch(args):
    d, t = rg.device(*args), torch.device(*args)
    assert (d.type, d.index, str(d), repr(d)) == (t.type, t.index, str(t), repr(t))
    assert d == rg.device(*args) and hash(d) == hash(rg.device(*args))
    assert rg.device(d) == d  # a device from a device
    assert pickle.loads(pickle.dumps(d)) == d


def test_device_equality_as_torch():
    assert (rg.device("cpu") == rg.device("cpu", 0)) is (torch.device("cpu") == torch.device("cpu", 0)) is False
    # torch.device never equals a string: real code compares .type
    assert (rg.device("cpu") == "cpu") is (torch.device("cpu") == "cpu") is False
    assert rg.device("cpu") != rg.device("cuda")
    assert len({rg.device("cpu"), rg.device("cpu"), rg.device("cpu", 0)}) == 2
    with pytest.raises(RuntimeError, match="accelerator"):  # an int is an accelerator index
        torch.device(0)
    with pytest.raises(RuntimeError, match="accelerator.*" + CUDA_MSG):
        rg.device(0)


@pytest.mark.parametrize("bad,kind", [("gpu", RuntimeError), ("cpu:x", RuntimeError), ("cpu:-1", RuntimeError),
                                      (1.5, TypeError)])
def test_bad_device_errors_as_torch(bad, kind):
    with pytest.raises(kind):
        torch.device(bad)
    with pytest.raises(kind):
        rg.device(bad)


def test_bad_device_names_what_is_expected():
    with pytest.raises(RuntimeError, match="Expected one of cpu, cuda.*device string: gpu"):
        rg.device("gpu")
    with pytest.raises(RuntimeError, match="index"):
        rg.device("cpu:0", 1)


def test_the_usual_device_line_runs():
    device = "cuda" if rg.cuda.is_available() else "cpu"
    dev = rg.device(device)
    x = rg.ones(2, 3, device=dev)
    model = nn.Linear(3, 1).to(dev)
    assert model(x).device.type == "cpu"
    device = rg.device("cuda" if rg.cuda.is_available() else "cpu")  # nanoGPT style
    assert device.type == "cpu" and str(device) == "cpu"


# ------------------------------------------------------------------ Tensor
def test_tensor_device_attributes_as_torch():
    x, t = rg.zeros(2), torch.zeros(2)
    assert x.device == rg.device("cpu") and x.device.type == t.device.type == "cpu"
    assert x.device.index is t.device.index is None
    assert str(x.device) == str(t.device) and repr(x.device) == repr(t.device)
    assert x.is_cuda is t.is_cuda is False and x.is_cpu is t.is_cpu is True
    assert x.get_device() == t.get_device() == -1
    assert x.pin_memory() is x and x.is_pinned() is t.is_pinned() is False


@pytest.mark.parametrize("call", [
    lambda x, m: x.to(m.device("cpu")),
    lambda x, m: x.to("cpu"),
    lambda x, m: x.to("cpu:0"),
    lambda x, m: x.to(device="cpu"),
    lambda x, m: x.to("cpu", m.float64),
    lambda x, m: x.to(m.device("cpu"), m.int64),
    lambda x, m: x.to(device="cpu", dtype=m.float64),
    lambda x, m: x.to(m.float64, non_blocking=True),
    lambda x, m: x.to("cpu", non_blocking=True),
    lambda x, m: x.to(m.zeros(1, dtype=m.int32)),
    lambda x, m: x.cpu(),
])
def test_to_forms_as_torch(call):
    a = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    r, t = call(rg.tensor(a), rg), call(torch.tensor(a), torch)
    assert str(r.dtype) == str(t.dtype).removeprefix("torch.")
    np.testing.assert_array_equal(r.numpy(), t.numpy())


def test_to_same_dtype_returns_self_and_copy_copies():
    x = rg.zeros(3)
    assert x.to("cpu") is x and x.to(rg.float32) is x and x.cpu() is x
    y = x.to("cpu", copy=True)
    assert y is not x and not np.shares_memory(y.numpy(), x.numpy())


def test_to_keeps_the_graph():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    y = x.to("cpu", rg.float64)
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


@pytest.mark.parametrize("call", [
    lambda x: x.cuda(),
    lambda x: x.cuda(0),
    lambda x: x.to("cuda"),
    lambda x: x.to("cuda:1"),
    lambda x: x.to(rg.device("cuda")),
    lambda x: x.to(device="cuda"),
    lambda x: x.to("mps"),
    lambda x: x.to(0),  # an int is a CUDA index, as in torch
])
def test_gpu_requests_raise_a_clear_error(call):
    with pytest.raises(RuntimeError, match=CUDA_MSG) as e:
        call(rg.zeros(2))
    assert "device='cpu'" in str(e.value)


def test_to_rejects_unknown_keywords():
    with pytest.raises(TypeError, match="unexpected keyword"):
        rg.zeros(2).to(dtyp=rg.float64)


# ------------------------------------------------------------------ device= on factories and layers
FACTORIES = [
    lambda d: rg.tensor([1.0], device=d), lambda d: rg.as_tensor([1.0], device=d),
    lambda d: rg.zeros(2, device=d), lambda d: rg.ones(2, device=d), lambda d: rg.empty(2, device=d),
    lambda d: rg.full((2,), 1.0, device=d), lambda d: rg.zeros_like(rg.zeros(2), device=d),
    lambda d: rg.ones_like(rg.zeros(2), device=d), lambda d: rg.empty_like(rg.zeros(2), device=d),
    lambda d: rg.full_like(rg.zeros(2), 3.0, device=d), lambda d: rg.arange(3, device=d),
    lambda d: rg.linspace(0, 1, 3, device=d), lambda d: rg.logspace(0, 1, 3, device=d),
    lambda d: rg.eye(2, device=d), lambda d: rg.rand(2, device=d), lambda d: rg.randn(2, device=d),
    lambda d: rg.randint(0, 3, (2,), device=d), lambda d: rg.randperm(3, device=d),
    lambda d: rg.rand_like(rg.zeros(2), device=d), lambda d: rg.randn_like(rg.zeros(2), device=d),
    lambda d: rg.normal(0.0, 1.0, (2,), device=d), lambda d: rg.zeros(2).new_zeros(2, device=d),
    lambda d: rg.zeros(2).new_ones(2, device=d), lambda d: rg.zeros(2).new_empty(2, device=d),
    lambda d: rg.zeros(2).new_full((2,), 1.0, device=d), lambda d: rg.zeros(2).new_tensor([1.0], device=d),
    lambda d: rg.LongTensor([1], device=d),
]
LAYERS = [
    lambda d: nn.Linear(2, 3, device=d), lambda d: nn.Bilinear(2, 2, 3, device=d),
    lambda d: nn.Embedding(4, 3, device=d), lambda d: nn.LayerNorm(3, device=d), lambda d: nn.RMSNorm(3, device=d),
    lambda d: nn.GroupNorm(1, 2, device=d), lambda d: nn.BatchNorm1d(3, device=d),
    lambda d: nn.BatchNorm2d(3, device=d), lambda d: nn.Conv1d(1, 2, 3, device=d),
    lambda d: nn.Conv2d(1, 2, 3, device=d), lambda d: nn.ConvTranspose2d(1, 2, 3, device=d),
    lambda d: nn.PReLU(device=d), lambda d: nn.RNN(2, 3, device=d), lambda d: nn.LSTM(2, 3, device=d),
    lambda d: nn.GRU(2, 3, device=d), lambda d: nn.LSTMCell(2, 3, device=d),
    lambda d: nn.MultiheadAttention(4, 2, device=d), lambda d: nn.TransformerEncoderLayer(4, 2, 8, device=d),
    lambda d: nn.TransformerDecoderLayer(4, 2, 8, device=d),
]


@pytest.mark.parametrize("make", FACTORIES + LAYERS, ids=[f"f{i}" for i in range(len(FACTORIES))]
                         + [f"layer{i}" for i in range(len(LAYERS))])
def test_device_keyword_takes_the_cpu_and_refuses_cuda(make):
    for d in (None, "cpu", "cpu:0", rg.device("cpu")):
        make(d)
    with pytest.raises(RuntimeError, match=CUDA_MSG):
        make("cuda")
    with pytest.raises(RuntimeError, match=CUDA_MSG):
        make(rg.device("cuda", 0))


def test_layer_device_keyword_is_also_positional_as_torch():
    lin = nn.Linear(2, 3, True, "cpu", rg.float64)
    tl = torch.nn.Linear(2, 3, True, "cpu", torch.float64)
    assert lin.weight.dtype == rg.float64 and tl.weight.dtype == torch.float64


# ------------------------------------------------------------------ Module
def test_module_to_device_and_dtype():
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert m.to("cpu") is m and m.to(rg.device("cpu")) is m and m.cpu() is m
    m.to(rg.device("cpu"), rg.float64)
    assert all(p.dtype == rg.float64 for p in m.parameters())
    m.to(device="cpu", dtype=rg.float32)
    assert all(p.dtype == rg.float32 for p in m.parameters())


@pytest.mark.parametrize("call", [lambda m: m.cuda(), lambda m: m.to("cuda"), lambda m: m.to(device="cuda:0"),
                                  lambda m: m.to(rg.device("mps"))])
def test_module_gpu_requests_raise(call):
    with pytest.raises(RuntimeError, match=CUDA_MSG):
        call(nn.Linear(2, 2))


# ------------------------------------------------------------------ default device
def test_set_default_device():
    assert repr(rg.get_default_device()) == repr(torch.get_default_device()) == "device(type='cpu')"
    rg.set_default_device("cpu")
    rg.set_default_device(rg.device("cpu"))
    rg.set_default_device(None)
    assert rg.zeros(2).device.type == "cpu"
    with pytest.raises(RuntimeError, match=CUDA_MSG):
        rg.set_default_device("cuda")
    assert rg.get_default_device() == rg.device("cpu")


# ------------------------------------------------------------------ cuda / backends / accelerator
def test_cuda_answers_as_torch_without_cuda():
    assert rg.cuda.is_available() is torch.cuda.is_available() is False
    assert rg.cuda.device_count() == torch.cuda.device_count() == 0
    assert rg.cuda.is_initialized() is torch.cuda.is_initialized() is False
    assert rg.cuda.is_bf16_supported() is torch.cuda.is_bf16_supported() is False
    for f in ("manual_seed", "manual_seed_all"):
        assert getattr(rg.cuda, f)(0) is getattr(torch.cuda, f)(0) is None
    for f in ("seed", "seed_all", "empty_cache"):
        assert getattr(rg.cuda, f)() is getattr(torch.cuda, f)() is None
    assert rg.cuda.memory_allocated() == torch.cuda.memory_allocated() == 0
    assert rg.cuda.max_memory_allocated() == torch.cuda.max_memory_allocated() == 0


def test_cuda_seeding_leaves_the_cpu_generator_alone():
    rg.manual_seed(3)
    a = rg.rand(3)
    rg.manual_seed(3)
    rg.cuda.manual_seed_all(123)
    np.testing.assert_array_equal(rg.rand(3).numpy(), a.numpy())


@pytest.mark.parametrize("name", ["synchronize", "current_device", "get_device_name"])
def test_cuda_calls_that_need_a_gpu_raise(name):
    with pytest.raises(AssertionError):  # torch without CUDA
        getattr(torch.cuda, name)()
    with pytest.raises(RuntimeError, match=CUDA_MSG):
        getattr(rg.cuda, name)()


def test_backends_as_torch():
    assert rg.backends.mps.is_available() is torch.backends.mps.is_available() is False
    assert rg.backends.mps.is_built() is torch.backends.mps.is_built() is False
    assert rg.backends.cudnn.is_available() is torch.backends.cudnn.is_available() is False
    for flag in ("enabled", "benchmark", "deterministic", "allow_tf32"):
        assert getattr(rg.backends.cudnn, flag) == getattr(torch.backends.cudnn, flag), flag
    assert rg.backends.cuda.matmul.allow_tf32 == torch.backends.cuda.matmul.allow_tf32
    prev = rg.backends.cudnn.benchmark, rg.backends.cudnn.deterministic, rg.backends.cuda.matmul.allow_tf32
    try:
        rg.backends.cudnn.benchmark = True
        rg.backends.cudnn.deterministic = True
        rg.backends.cuda.matmul.allow_tf32 = True
        assert rg.backends.cudnn.benchmark and rg.backends.cudnn.deterministic
    finally:
        rg.backends.cudnn.benchmark, rg.backends.cudnn.deterministic, rg.backends.cuda.matmul.allow_tf32 = prev


def test_accelerator_as_torch():
    assert rg.accelerator.is_available() is torch.accelerator.is_available() is False
    assert rg.accelerator.current_accelerator() is torch.accelerator.current_accelerator() is None
    assert rg.accelerator.device_count() == torch.accelerator.device_count() == 0
    for name in ("current_device_index", "synchronize"):
        with pytest.raises(RuntimeError):
            getattr(torch.accelerator, name)()
        with pytest.raises(RuntimeError, match="no.*available|none is available"):
            getattr(rg.accelerator, name)()
    # the torch 2.x idiom
    dev = rg.accelerator.current_accelerator().type if rg.accelerator.is_available() else "cpu"
    assert rg.zeros(1, device=dev).device.type == "cpu"


def test_device_as_a_context_manager_as_torch():
    with torch.device("cpu"):
        assert torch.zeros(1).device.type == "cpu"
    with rg.device("cpu") as d:
        assert d == rg.device("cpu") and rg.get_default_device() is d and rg.zeros(1).device.type == "cpu"
    assert rg.get_default_device() == rg.device("cpu")
    with pytest.raises(RuntimeError, match=CUDA_MSG):
        with rg.device("cuda"):
            pass
    assert rg.get_default_device() == rg.device("cpu")


def test_float32_matmul_precision_as_torch():
    prev = torch.get_float32_matmul_precision()
    assert rg.get_float32_matmul_precision() == prev == "highest"
    try:
        for lib in (rg, torch):
            lib.set_float32_matmul_precision("high")  # nanoGPT's line
            assert lib.get_float32_matmul_precision() == "high"
            with pytest.warns(UserWarning, match="no effect"):
                lib.set_float32_matmul_precision("fastest")
            assert lib.get_float32_matmul_precision() == "high"
    finally:
        rg.set_float32_matmul_precision("highest")
        torch.set_float32_matmul_precision(prev)


def test_generator_takes_a_device_as_torch():
    for lib in (rg, torch):
        g = lib.Generator(device="cpu").manual_seed(3)
        h = lib.Generator("cpu").manual_seed(3)
        assert g.device == lib.device("cpu") and h.device.type == "cpu"
        assert lib.rand(3, generator=g).tolist() == lib.rand(3, generator=h).tolist()
    assert rg.Generator(5).initial_seed() == 5  # retrograd's seed-first form still works
    with pytest.raises(RuntimeError, match=CUDA_MSG):
        rg.Generator(device="cuda")


@pytest.mark.parametrize("name", ["FloatTensor", "DoubleTensor", "LongTensor", "BoolTensor"])
def test_cuda_legacy_types_exist_and_refuse(name):
    x = rg.zeros(2)
    assert not isinstance(x, getattr(rg.cuda, name)) and not isinstance(torch.zeros(2), getattr(torch.cuda, name))
    with pytest.raises(RuntimeError, match=CUDA_MSG):
        getattr(rg.cuda, name)([1])
    with pytest.raises(RuntimeError, match=CUDA_MSG):
        x.type(f"torch.cuda.{name}")
