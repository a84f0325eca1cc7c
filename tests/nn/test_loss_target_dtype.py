"""F.binary_cross_entropy refuses a target whose dtype differs from the input's, as PyTorch does (found
by the DCGAN program: `torch.full(..., dtype=torch.float)` labels against a float64 discriminator)."""
import pytest
import torch

import retrograd as rg


@pytest.mark.parametrize("inp, tgt", [("float64", "float32"), ("float32", "float64"), ("float64", "int64"),
                                      ("float64", "bool"), ("float32", "float16")])
def test_binary_cross_entropy_target_dtype_must_match(inp, tgt):
    with pytest.raises(RuntimeError) as theirs:
        torch.nn.BCELoss()(torch.full((3,), 0.5, dtype=getattr(torch, inp)), torch.ones(3, dtype=getattr(torch, tgt)))
    with pytest.raises(RuntimeError) as ours:
        rg.nn.BCELoss()(rg.full((3,), 0.5, dtype=getattr(rg, inp)), rg.ones(3, dtype=getattr(rg, tgt)))
    assert str(theirs.value) in str(ours.value)


def test_binary_cross_entropy_same_dtype_and_weight_of_another_dtype():
    x, t = [0.2, 0.9, 0.5], [0.0, 1.0, 1.0]
    w = [1.0, 2.0, 0.5]
    ref = torch.nn.functional.binary_cross_entropy(torch.tensor(x), torch.tensor(t),
                                                   weight=torch.tensor(w, dtype=torch.float64))
    got = rg.nn.functional.binary_cross_entropy(rg.tensor(x), rg.tensor(t), weight=rg.tensor(w, dtype=rg.float64))
    assert abs(got.item() - ref.item()) < 1e-6 and str(got.dtype).split(".")[-1] == str(ref.dtype).split(".")[-1]
