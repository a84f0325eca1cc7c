"""A study in PostgreSQL, shared by two worker processes. .ci/run starts a local server and sets
RETROGRAD_TEST_POSTGRES_URL; without it (or without a reachable server) the test is skipped
with the reason shown (pytest runs with -rs)."""
import copy
import os
import uuid

import optuna
import pytest

import retrograd.tune as tune
from tune_helpers import BASE_CONFIG, train_digits

URL = os.environ.get("RETROGRAD_TEST_POSTGRES_URL")


@pytest.fixture
def postgres_url():
    if not URL:
        pytest.skip("RETROGRAD_TEST_POSTGRES_URL is not set (.ci/run sets it after starting PostgreSQL on "
                    "127.0.0.1)")
    try:
        import psycopg2
    except ImportError as e:
        pytest.skip(f"psycopg2 is not installed ({e}); pip install -e '.[test]'")
    try:
        psycopg2.connect(URL.replace("postgresql+psycopg2://", "postgresql://"), connect_timeout=5).close()
    except psycopg2.OperationalError as e:
        pytest.skip(f"PostgreSQL at {tune.storage.mask_url(URL)} cannot be reached: {str(e).strip()}")
    return URL


def test_postgres_study_shared_by_two_workers(tmp_path, postgres_url):
    name = f"retrograd-test-{uuid.uuid4().hex[:8]}"
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["train"]["epochs"] = 1
    try:
        r = tune.search(cfg, {"optim.lr": {"log_uniform": [1e-2, 2.0]}}, train_fn=train_digits, method="random",
                        n_trials=4, pruner="none", storage=postgres_url, study_dir=tmp_path, study_name=name,
                        workers=2, plots=False)
        assert [t.number for t in r.study.trials] == [0, 1, 2, 3] and r.states == {"COMPLETE": 4}
        assert len({t.params["optim.lr"] for t in r.study.trials}) == 4
        # the study lives in the server: another client sees the same trials
        again = optuna.load_study(study_name=name, storage=tune.open_storage(postgres_url))
        assert [t.value for t in again.trials] == [t.value for t in r.study.trials]
        # study.json keeps the URL without its password
        meta = (tmp_path / "study.json").read_text()
        if "@" in postgres_url and ":" in postgres_url.split("://", 1)[1].split("@")[0]:
            assert "***@" in meta and postgres_url not in meta
        shown = tune.show(tmp_path, storage=postgres_url, plots=False)
        assert shown.rows == r.rows
    finally:
        try:
            optuna.delete_study(study_name=name, storage=tune.open_storage(postgres_url))
        except KeyError:
            pass
