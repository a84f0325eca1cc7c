"""retrograd: backpropagation and the optimizers that use it, on NumPy arrays.

``import retrograd as rg``; names and semantics follow PyTorch.
"""
import math as _math
from typing import Any as _Any

from . import accel, backend
from .accel import get_num_threads, set_num_threads
from .backend import (bool_ as bool, double, float, float16, float32, float64, get_default_dtype, half, int,  # noqa: A004
                      int8, int16, int32, int64, long, set_default_dtype, uint8)
from .backend import bfloat16
from .legacy_types import BFloat16Tensor
from .engine import detect_anomaly, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .random import Generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from .engine import grad
from .tensor import Tensor
from .tensor_math import matmul, where
from .tensor_functions import cat, concat, concatenate, einsum, hstack, pad, stack, vstack
from . import tensor_numpy  # noqa: F401  (fills Tensor's NumPy dispatch tables)
from . import autograd
from . import accelerator, backends, cuda
from . import distributed
from .dtype_info import finfo, iinfo
from .backends import get_float32_matmul_precision, set_float32_matmul_precision
from .devices import device, get_default_device, set_default_device
from .inference import inference_mode, is_inference_mode_enabled
from .legacy_types import (BoolTensor, ByteTensor, CharTensor, DoubleTensor, FloatTensor, HalfTensor, IntTensor,
                           LongTensor, ShortTensor)
from .creation import (arange, as_tensor, bernoulli, empty, empty_like, eye, from_numpy, full, full_like,
                       linspace, logspace, multinomial, normal, ones, ones_like, rand, rand_like, randint,
                       randn, randn_like, randperm, tensor, zeros, zeros_like)

__version__ = "0.1.0"

inf = _math.inf
nan = _math.nan
pi = _math.pi
e = _math.e


def compile(model: _Any = None, **kwargs: _Any) -> _Any:  # noqa: A001  (PyTorch's name)
    """A documented no-op: returns ``model`` (a Module or a function) unchanged, as retrograd has no
    compiler. Accepts ``torch.compile``'s keywords (``mode``, ``fullgraph``, ``dynamic``, ``backend``,
    ``options``, ``disable``, ...) and its decorator forms ``@rg.compile`` and ``@rg.compile(...)``."""
    if model is None:
        return lambda fn: fn
    if not callable(model):
        raise TypeError(f"compile: expected a Module or a function, got {type(model).__name__}")
    return model


def _method(name: str):
    f = getattr(Tensor, name)

    def fn(input, *args, **kwargs):  # noqa: A002
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}(): argument 'input' must be Tensor, not {type(input).__name__}")
        return f(input, *args, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f.__doc__
    return fn


# torch.exp(x) and friends: the Tensor method as a function
for _n in ("exp expm1 log log1p log2 log10 sqrt rsqrt square reciprocal sin cos tan asin acos atan arcsin "
           "arccos arctan sinh cosh tanh sigmoid erf relu abs absolute sign floor ceil round trunc neg "
           "negative clamp clip sum mean var std amax amin max min argmax argmin argsort sort topk "
           "logsumexp prod cumsum cumprod norm softmax log_softmax reshape flatten unflatten permute "
           "transpose swapaxes swapdims movedim moveaxis t squeeze unsqueeze broadcast_to tile flip "
           "fliplr flipud roll split chunk tensor_split unbind tril triu gather take_along_dim "
           "index_select scatter_add masked_fill isnan isinf isfinite any all add sub subtract mul "
           "multiply div divide true_divide pow maximum minimum atan2 arctan2 dot mm bmm clone "
           "detach numel allclose isclose equal logical_not logical_and logical_or repeat_interleave unique narrow "
           "outer ger").split():
    globals()[_n] = _method(_n)
del _n


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> int:  # noqa: A002
    return input.numel()


from . import nn  # noqa: E402
from . import optim  # noqa: E402
from . import data  # noqa: E402
from . import utils  # noqa: E402  (``retrograd.utils.data``: PyTorch's path to ``retrograd.data``)
from . import io  # noqa: E402
from .io import load, save  # noqa: E402
import sys as _sys  # noqa: E402
from .io import serialization  # noqa: E402  (torch.serialization's names: save, load, safe_globals)
_sys.modules.setdefault(__name__ + ".serialization", serialization)  # `import retrograd.serialization`
from . import amp  # noqa: E402
from .amp import autocast  # noqa: E402
from .amp.autocast_mode import (clear_autocast_cache, get_autocast_cpu_dtype, get_autocast_dtype,  # noqa: E402
                                is_autocast_cache_enabled, is_autocast_cpu_enabled, is_autocast_enabled,
                                set_autocast_cache_enabled, set_autocast_dtype, set_autocast_enabled)
# torch.cpu.amp / torch.cuda.amp (deprecated spellings, importable as modules)
cpu = amp.device_amp.cpu
cuda.amp = amp.device_amp.cuda_amp
for _m in (cpu, cpu.amp, cuda.amp):
    _sys.modules.setdefault(_m.__name__, _m)
del _sys, _m

# The training stack, the model zoo and the tuner load on first use (``rg.train``, ``rg.models``,
# ``rg.tune``), so ``import retrograd`` stays the engine, layers, optimizers and data.
_LAZY = ("models", "train", "tune", "onnx", "viz", "distributions", "rl")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'retrograd' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
