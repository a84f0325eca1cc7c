import optuna
import pytest

from tune_helpers import digits_split


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield


@pytest.fixture(scope="session")
def digits():
    return digits_split()
