"""``rg.backends.mps``: Apple's Metal backend is not available (retrograd runs on the CPU)."""


def is_available() -> bool:
    return False


def is_built() -> bool:
    return False
