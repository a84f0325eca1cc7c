"""``rg.backends``: PyTorch's ``torch.backends`` flags, so programs that set them run unchanged.

retrograd has one backend, NumPy on the CPU: ``mps.is_available()`` and ``cudnn.is_available()`` are
False and the cuDNN / TF32 flags (``cudnn.benchmark``, ``cudnn.deterministic``,
``cuda.matmul.allow_tf32``) are plain settable attributes with PyTorch's defaults that change nothing
(retrograd's CPU results are deterministic for a given seed)."""
from . import cuda, cudnn, mps

__all__ = ["cuda", "cudnn", "mps"]
