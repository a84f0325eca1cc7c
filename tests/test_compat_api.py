"""PyTorch's module paths, constants, inference_mode, compile, the legacy typed constructors and
Tensor.type, against PyTorch 2.13."""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

import retrograd as rg
import retrograd.nn as nn


# ------------------------------------------------------------------ module paths
def test_utils_data_is_retrograd_data():
    from retrograd.utils.data import DataLoader, Dataset, TensorDataset, random_split
    import retrograd.utils.data as data
    assert (DataLoader, Dataset, TensorDataset, random_split) == (
        rg.data.DataLoader, rg.data.Dataset, rg.data.TensorDataset, rg.data.random_split)
    assert rg.utils.data.DataLoader is data.DataLoader  # reachable after `import retrograd`, as torch.utils.data
    assert set(rg.data.__all__) <= set(dir(data))
    from retrograd.utils.data.dataset import Subset
    from retrograd.utils.data.sampler import RandomSampler
    from retrograd.utils.data.dataloader import default_collate
    assert (Subset, RandomSampler, default_collate) == (rg.data.Subset, rg.data.RandomSampler,
                                                         rg.data.default_collate)


def test_utils_data_loads_a_batch():
    from retrograd.utils.data import DataLoader, TensorDataset
    ds = TensorDataset(rg.arange(10.0).reshape(5, 2), rg.arange(5))
    xb, yb = next(iter(DataLoader(ds, batch_size=2)))
    np.testing.assert_array_equal(xb.numpy(), [[0, 1], [2, 3]])
    np.testing.assert_array_equal(yb.numpy(), [0, 1])


# torch.nn.modules.<sub>: every class that both libraries have there is the retrograd.nn class
SUBMODULES = ["module", "linear", "conv", "activation", "loss", "container", "batchnorm", "normalization", "dropout",
              "sparse", "rnn", "transformer", "pooling", "pixelshuffle", "upsampling", "flatten"]


@pytest.mark.parametrize("sub", SUBMODULES)
def test_nn_modules_paths(sub):
    ours = importlib.import_module(f"retrograd.nn.modules.{sub}")
    theirs = importlib.import_module(f"torch.nn.modules.{sub}")
    assert ours.__all__
    for name in ours.__all__:
        assert hasattr(theirs, name), f"torch.nn.modules.{sub} has no {name}"
        obj = getattr(ours, name)
        assert getattr(nn, name, obj) is obj
        assert getattr(nn.modules, name, obj) is obj
        assert isinstance(obj, type) and issubclass(obj, nn.Module) or name == "Parameter"


def test_nn_modules_common_imports():
    from retrograd.nn.modules.loss import _Loss, _WeightedLoss
    from retrograd.nn.modules.batchnorm import _BatchNorm
    from retrograd.nn.modules.module import Module
    from retrograd.nn.modules import Linear
    assert issubclass(nn.MSELoss, _Loss) and issubclass(nn.CrossEntropyLoss, _WeightedLoss)
    assert issubclass(nn.BatchNorm1d, _BatchNorm) and Module is nn.Module and Linear is nn.Linear


def test_nn_parallel_imports_and_raises_a_clear_error_when_used():
    # training scripts import DDP at the top whether or not they run distributed (nanoGPT's train.py)
    import retrograd.nn.parallel as parallel
    from retrograd.nn.parallel import DataParallel, DistributedDataParallel as DDP, data_parallel
    assert parallel is nn.parallel
    with pytest.raises(ValueError, match="Default process group has not been initialized"):
        DDP(nn.Linear(2, 2), device_ids=[0])  # as PyTorch's before init_process_group
    with pytest.raises(RuntimeError, match="DataParallel is not available: .*call the module directly"):
        DataParallel(nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="data_parallel is not available"):
        data_parallel(nn.Linear(2, 2), rg.ones(1, 2), [0])
    with pytest.raises(AttributeError, match="no attribute 'Foo'"):
        parallel.Foo  # noqa: B018


def test_distributed_answers_as_a_single_process():
    import torch.distributed as tdist

    import retrograd.distributed as dist
    from retrograd.distributed import destroy_process_group, init_process_group
    assert dist is rg.distributed
    assert dist.is_initialized() is tdist.is_initialized() is False
    assert dist.is_available() is True
    with pytest.raises(ValueError, match="backend 'nccl' is not available; retrograd runs its collectives on MPI"):
        init_process_group(backend="nccl")
    for name in ("get_rank", "get_world_size", "barrier"):
        with pytest.raises(ValueError) as theirs:
            getattr(tdist, name)()
        with pytest.raises(ValueError) as ours:
            getattr(dist, name)()
        assert str(ours.value) == str(theirs.value)


def test_backends_is_a_package():
    import retrograd.backends.cudnn as cudnn
    assert cudnn is rg.backends.cudnn


# ------------------------------------------------------------------ constants
def test_constants_as_torch():
    assert (rg.pi, rg.e) == (torch.pi, torch.e) == (math.pi, math.e)
    assert rg.inf == torch.inf == float("inf") and math.isnan(rg.nan) and math.isnan(torch.nan)
    x = rg.tensor([1.0, 2.0]).masked_fill(rg.tensor([True, False]), -rg.inf)
    assert x.tolist() == [-math.inf, 2.0]


# ------------------------------------------------------------------ inference_mode
def test_inference_mode_context_as_torch():
    for lib in (rg, torch):
        assert lib.is_inference_mode_enabled() is False
        x = lib.ones(2, requires_grad=True)
        with lib.inference_mode():
            assert lib.is_inference_mode_enabled() is True and lib.is_grad_enabled() is False
            assert (x * 2).requires_grad is False
            with lib.inference_mode(False):  # torch: turns grad mode back on
                assert lib.is_inference_mode_enabled() is False and lib.is_grad_enabled() is True
            assert lib.is_inference_mode_enabled() is True
        assert lib.is_inference_mode_enabled() is False and lib.is_grad_enabled() is True
        assert (x * 2).requires_grad is True


def test_inference_mode_decorators_as_torch():
    for lib in (rg, torch):
        @lib.inference_mode()
        def f(x):
            return (x * 2).requires_grad, lib.is_inference_mode_enabled()

        @lib.inference_mode
        def g(x):
            return (x * 2).requires_grad, lib.is_inference_mode_enabled()

        x = lib.ones(2, requires_grad=True)
        assert f(x) == g(x) == (False, True)
        assert lib.is_inference_mode_enabled() is False and (x * 2).requires_grad


def test_inference_mode_restores_on_error():
    with pytest.raises(ValueError):
        with rg.inference_mode():
            raise ValueError
    assert rg.is_grad_enabled() and not rg.is_inference_mode_enabled()


def test_inference_mode_inside_no_grad_as_torch():
    for lib in (rg, torch):
        with lib.no_grad():
            with lib.inference_mode():
                assert not lib.is_grad_enabled()
            assert not lib.is_grad_enabled()


# ------------------------------------------------------------------ compile
def test_compile_is_a_documented_no_op():
    model = nn.Linear(2, 2)
    assert rg.compile(model) is model
    assert rg.compile(model, mode="max-autotune", fullgraph=True, dynamic=False, backend="inductor",
                      options={"x": 1}, disable=False) is model

    def f(x):
        return x * 2
    assert rg.compile(f) is f

    @rg.compile
    def g(x):
        return x + 1

    @rg.compile(mode="reduce-overhead")
    def h(x):
        return x - 1
    assert g(1) == 2 and h(1) == 0
    assert "no-op" in rg.compile.__doc__
    with pytest.raises(TypeError, match="Module or a function"):
        rg.compile(3)


# ------------------------------------------------------------------ legacy constructors and Tensor.type
LEGACY = ["FloatTensor", "DoubleTensor", "HalfTensor", "LongTensor", "IntTensor", "ShortTensor", "CharTensor",
          "ByteTensor", "BoolTensor"]


def _same(r, t):
    assert str(r.dtype) == str(t.dtype).removeprefix("torch.")
    assert tuple(r.shape) == tuple(t.shape)


@pytest.mark.parametrize("name", LEGACY)
def test_legacy_constructors_as_torch(name):
    R, T = getattr(rg, name), getattr(torch, name)
    for data in ([1, 0, 3], [[1.7, 2.2], [0.0, -0.0]] if name not in ("ByteTensor",) else [[1.7, 2.2]]):
        r, t = R(data), T(data)
        _same(r, t)
        np.testing.assert_array_equal(r.numpy(), t.numpy())
    _same(R(2, 3), T(2, 3))
    _same(R(), T())
    r = R([1, 2])
    assert isinstance(r, R) and isinstance(T([1, 2]), T)
    assert isinstance(r, rg.Tensor) and type(r) is rg.Tensor
    others = [n for n in LEGACY if n != name]
    assert not any(isinstance(r, getattr(rg, n)) for n in others)
    assert R(r) is r


def test_legacy_constructor_errors():
    with pytest.raises(TypeError):
        torch.FloatTensor(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="expected float32"):
        rg.FloatTensor(rg.tensor([1, 2]))
    with pytest.raises(RuntimeError, match="retrograd runs on the CPU"):
        rg.FloatTensor([1.0], device="cuda")


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8",
                                   "bool"])
def test_tensor_type_names_as_torch(dtype):
    r = rg.zeros(2, dtype=getattr(rg, dtype) if dtype != "bool" else rg.bool)
    t = torch.zeros(2, dtype=getattr(torch, dtype))
    assert r.type() == t.type()


@pytest.mark.parametrize("target", ["torch.DoubleTensor", "torch.LongTensor", "LongTensor", "retrograd.IntTensor"])
def test_tensor_type_casts_from_names(target):
    r = rg.tensor([1.5, -2.5]).type(target)
    t = torch.tensor([1.5, -2.5]).type("torch." + target.rpartition(".")[2])
    _same(r, t)
    np.testing.assert_array_equal(r.numpy(), t.numpy())


def test_tensor_type_casts_from_dtypes_and_classes():
    x, tx = rg.tensor([1.5, -2.5]), torch.tensor([1.5, -2.5])
    _same(x.type(rg.float64), tx.type(torch.float64))
    _same(x.type(rg.LongTensor), tx.type(torch.LongTensor))
    assert x.type(rg.float32) is x and x.type("torch.FloatTensor") is x
    # the usual legacy checks in real code
    assert x.type() == "torch.FloatTensor" and x.long().type() == "torch.LongTensor"


def test_tensor_type_errors():
    with pytest.raises(ValueError, match="invalid type"):
        rg.zeros(1).type("torch.FooTensor")
    with pytest.raises(RuntimeError, match="retrograd runs on the CPU"):
        rg.zeros(1).type("torch.cuda.FloatTensor")


def test_type_cast_keeps_the_graph():
    x = rg.tensor([1.0, 2.0], requires_grad=True)
    x.type(rg.DoubleTensor).pow(2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_a_training_script_preamble_runs_unchanged():
    """The device and setup lines of common PyTorch scripts, with only the import changed."""
    import retrograd as torch  # noqa: F811  (the point: the script's own name for the library)
    from retrograd import nn as tnn
    from retrograd.nn import functional as TFn
    from retrograd.utils.data import DataLoader, TensorDataset

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        device_type = "cuda" if "cuda" in device else "cpu"
        torch.manual_seed(1337)
        torch.cuda.manual_seed_all(1337)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        kwargs = {"num_workers": 1, "pin_memory": True} if torch.cuda.is_available() else {}
        ds = TensorDataset(torch.randn(16, 4), torch.randint(0, 3, (16,)))
        loader = DataLoader(ds, batch_size=8, shuffle=True, **kwargs)
        model = tnn.Sequential(tnn.Linear(4, 8), tnn.ReLU(), tnn.Dropout(0.1), tnn.Linear(8, 3)).to(device)
        model = torch.compile(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in loader:
            x, y = x.pin_memory().to(device, non_blocking=True), y.to(device)
            loss = TFn.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode():
            logits = model(torch.zeros(2, 4, device=device))
        assert logits.device.type == device_type == "cpu" and not logits.requires_grad
        onehot = TFn.one_hot(logits.argmax(-1), num_classes=3).type(torch.FloatTensor)
        assert onehot.type() == "torch.FloatTensor" and onehot.sum().item() == 2.0
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark) = saved
