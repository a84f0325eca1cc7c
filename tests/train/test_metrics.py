"""rg.train.metrics against scikit-learn and PyTorch."""
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, mean_absolute_error, top_k_accuracy_score

import retrograd as rg
from retrograd.train import metrics as M

rng = np.random.default_rng(0)
LOGITS = rng.standard_normal((200, 7)).astype(np.float32)
TARGET = rng.integers(0, 7, 200)


def test_accuracy():
    assert M.accuracy(rg.tensor(LOGITS), rg.tensor(TARGET)) == pytest.approx((LOGITS.argmax(1) == TARGET).mean())
    assert M.accuracy(np.array([0.2, 0.7, 0.9]), np.array([0, 1, 0])) == pytest.approx(2 / 3)  # thresholded


def test_top_k_accuracy_matches_sklearn():
    for k in (1, 3, 5):
        assert M.top_k_accuracy(LOGITS, TARGET, k=k) == pytest.approx(
            top_k_accuracy_score(TARGET, LOGITS, k=k, labels=range(7)))
    assert M.get_metric("top3_accuracy").name == "top3_accuracy"


def test_f1_macro_matches_sklearn_and_accumulates():
    pred = LOGITS.argmax(1)
    want = f1_score(TARGET, pred, average="macro")
    assert M.f1_macro(LOGITS, TARGET) == pytest.approx(want)
    m = M.get_metric("f1")
    for i in range(0, 200, 30):  # batch by batch: the confusion counts add up
        m.update(LOGITS[i:i + 30], TARGET[i:i + 30])
    assert m.compute() == pytest.approx(want)


def test_mae_matches_sklearn():
    a, b = rng.standard_normal((50, 2)), rng.standard_normal((50, 2))
    assert M.mae(a, b) == pytest.approx(mean_absolute_error(b, a))


def test_perplexity_is_exp_of_cross_entropy():
    logits = rng.standard_normal((4, 9, 11)).astype(np.float32)
    t = rng.integers(0, 11, (4, 9))
    ce = torch.nn.functional.cross_entropy(torch.from_numpy(logits).reshape(-1, 11), torch.from_numpy(t).reshape(-1))
    assert M.perplexity(logits, t) == pytest.approx(float(torch.exp(ce)), rel=1e-5)
    m = M.Perplexity()
    m.update(logits[:2], t[:2])
    m.update(logits[2:], t[2:])
    assert m.compute() == pytest.approx(float(torch.exp(ce)), rel=1e-5)


def test_callable_metric_weighted_by_batch_size():
    m = M.get_metric(lambda p, t: float(np.mean(p)))
    m.update(np.ones(3), np.zeros(3))
    m.update(np.zeros(1), np.zeros(1))
    assert m.compute() == pytest.approx(0.75)


def test_errors():
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        M.get_metric("auc")
    with pytest.raises(ValueError, match=r"pred of shape \(3, 2, 2\) does not match target of shape \(3,\)"):
        M.accuracy(np.zeros((3, 2, 2)), np.zeros(3))
