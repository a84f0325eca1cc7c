"""``rg.backends.cuda``: ``matmul.allow_tf32`` and friends as settable flags with PyTorch's defaults;
no effect (no CUDA on the CPU)."""


class _MatmulFlags:
    """``backends.cuda.matmul``: TF32 / reduced-precision flags (ignored: NumPy computes in full precision)."""

    def __init__(self) -> None:
        self.allow_tf32 = False
        self.allow_fp16_reduced_precision_reduction = True
        self.allow_bf16_reduced_precision_reduction = True


matmul = _MatmulFlags()


def is_built() -> bool:
    return False


def enable_flash_sdp(enabled: bool) -> None:
    """No-op (no CUDA kernels)."""


def enable_mem_efficient_sdp(enabled: bool) -> None:
    """No-op (no CUDA kernels)."""


def enable_math_sdp(enabled: bool) -> None:
    """No-op (retrograd's attention is always the math path)."""
