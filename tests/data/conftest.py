import pathlib

import pytest

import retrograd as rg

FASHION_ROOT = pathlib.Path(rg.data.images.FASHION_MNIST_ROOT)


def _fashion_present() -> bool:
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte"]
    return all((FASHION_ROOT / n).is_file() or (FASHION_ROOT / (n + ".gz")).is_file() for n in names)


@pytest.fixture(scope="session")
def fashion():
    """Both Fashion-MNIST splits, read once per session."""
    if not _fashion_present():
        pytest.skip(f"Fashion-MNIST is not installed under {FASHION_ROOT}; install it with: "
                    f"{rg.data.images.FASHION_MNIST_INSTALL} (.ci/run does)")
    return {"train": rg.data.fashion_mnist("train"), "test": rg.data.fashion_mnist("test")}
