"""``rg.backends``: PyTorch's ``torch.backends`` flags, so programs that set them run unchanged.

retrograd has one backend, NumPy on the CPU: ``mps.is_available()`` and ``cudnn.is_available()`` are
False and the cuDNN / TF32 flags (``cudnn.benchmark``, ``cudnn.deterministic``,
``cuda.matmul.allow_tf32``) are plain settable attributes with PyTorch's defaults that change nothing
(retrograd's CPU results are deterministic for a given seed)."""
import warnings

from . import cuda, cudnn, mps

__all__ = ["cuda", "cudnn", "mps", "get_float32_matmul_precision", "set_float32_matmul_precision"]

_PRECISIONS = ("highest", "high", "medium")
_precision = ["highest"]


def set_float32_matmul_precision(precision: str) -> None:
    """Recorded and ignored (``rg.set_float32_matmul_precision``): NumPy's float32 matmul is always full
    precision, PyTorch's "highest". An unknown value warns and changes nothing, as in PyTorch."""
    if precision not in _PRECISIONS:
        warnings.warn(f"{precision} is not one of 'highest', 'high', or 'medium'; the "
                      "set_float32_matmul_precision call has no effect", UserWarning, stacklevel=2)
        return
    _precision[0] = precision


def get_float32_matmul_precision() -> str:
    return _precision[0]
