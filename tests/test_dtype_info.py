"""rg.finfo / rg.iinfo against torch.finfo / torch.iinfo (a gap found while porting real programs:
attention code masks with `torch.finfo(dtype).min`)."""
import pytest
import torch

import retrograd as rg


@pytest.mark.parametrize("name", ["float16", "float32", "float64"])
def test_finfo_matches_torch(name):
    ours, theirs = rg.finfo(getattr(rg, name)), torch.finfo(getattr(torch, name))
    for attr in ("bits", "eps", "max", "min", "tiny", "smallest_normal", "resolution", "dtype"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
        assert type(getattr(ours, attr)) is type(getattr(theirs, attr)), attr
    assert repr(ours) == repr(theirs)


def test_finfo_default_dtype():
    assert rg.finfo().dtype == "float32"
    rg.set_default_dtype(rg.float64)
    try:
        assert rg.finfo().eps == torch.finfo(torch.float64).eps
    finally:
        rg.set_default_dtype(rg.float32)


@pytest.mark.parametrize("name", ["uint8", "int8", "int16", "int32", "int64"])
def test_iinfo_matches_torch(name):
    ours, theirs = rg.iinfo(getattr(rg, name)), torch.iinfo(getattr(torch, name))
    for attr in ("bits", "max", "min", "dtype"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    assert repr(ours) == repr(theirs)


def test_wrong_kind_is_a_type_error_naming_the_other_function():
    with pytest.raises(TypeError, match="finfo.*floating point.*int64.*use rg.iinfo"):
        rg.finfo(rg.int64)
    with pytest.raises(TypeError, match="iinfo.*integer.*float32.*use rg.finfo"):
        rg.iinfo(rg.float32)
    with pytest.raises(TypeError):
        torch.finfo(torch.int64)
