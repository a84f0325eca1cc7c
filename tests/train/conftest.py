import pytest

from train_helpers import digits_dataset


@pytest.fixture
def digits():
    return digits_dataset()
