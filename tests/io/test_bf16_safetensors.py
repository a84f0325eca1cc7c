"""bfloat16 through safetensors: the same bytes PyTorch writes, and PyTorch's files read back exactly."""
import io
import json

import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors.torch import load_file as torch_load_file
from safetensors.torch import save_file as torch_save_file

import retrograd as rg
from retrograd.tensor import wrap_array
from retrograd.io import import_torch_state_dict, load_safetensors, save_safetensors

BF16 = np.dtype(ml_dtypes.bfloat16)


def _values():
    # exact bfloat16 values, a rounding case, subnormal, inf and nan
    return torch.tensor([[1.5, -2.0, 3.140625], [1e-40, float("inf"), float("nan")]], dtype=torch.bfloat16)


def _bits(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.int16).numpy().view(np.uint16)


def test_save_writes_the_bytes_torch_writes(tmp_path):
    t = _values()
    arr = _bits(t).view(BF16)
    save_safetensors({"w": arr, "b": np.ones(3, np.float32)}, tmp_path / "rg.safetensors")
    meta = {"format": "pt", "retrograd.order": json.dumps(["w", "b"])}
    torch_save_file({"w": t, "b": torch.ones(3)}, str(tmp_path / "torch.safetensors"), metadata=meta)
    ours, theirs = (tmp_path / "rg.safetensors").read_bytes(), (tmp_path / "torch.safetensors").read_bytes()
    n = int.from_bytes(ours[:8], "little")
    assert ours[:8] == theirs[:8] and ours[8 + n:] == theirs[8 + n:]  # same layout, same data bytes
    header = json.loads(ours[8:8 + n])
    assert header == json.loads(theirs[8:8 + n])  # the same header up to the order of metadata keys
    assert header["w"] == {"dtype": "BF16", "shape": [2, 3], "data_offsets": [12, 24]}
    back = torch_load_file(str(tmp_path / "rg.safetensors"))
    assert back["w"].dtype == torch.bfloat16
    np.testing.assert_array_equal(_bits(back["w"]), _bits(t))


def test_torch_written_bf16_reads_back_as_bfloat16(tmp_path):
    t = _values()
    torch_save_file({"w": t, "i": torch.arange(3)}, str(tmp_path / "t.safetensors"))
    out = load_safetensors(tmp_path / "t.safetensors")
    assert out["w"].dtype == BF16 and out["w"].shape == (2, 3)
    np.testing.assert_array_equal(out["w"].view(np.uint16), _bits(t))
    assert out["i"].dtype == np.int64
    # import_torch_state_dict keeps its documented behaviour: bfloat16 becomes float32, exactly
    imp = import_torch_state_dict(tmp_path / "t.safetensors")
    assert imp["w"].dtype == np.float32
    np.testing.assert_array_equal(imp["w"], t.float().numpy())


def test_save_safetensors_takes_a_torch_bf16_tensor(tmp_path):
    t = _values()
    save_safetensors({"w": t}, tmp_path / "w.safetensors")
    np.testing.assert_array_equal(load_safetensors(tmp_path / "w.safetensors")["w"].view(np.uint16), _bits(t))


@pytest.mark.parametrize("to_file", [True, False])
def test_rg_save_load_bf16_tensors_round_trip(tmp_path, to_file):
    w = wrap_array(np.array([[0.5, -1.25], [3.0, 7.5]], dtype=BF16))  # rg.tensor takes bf16 once issue 11 lands
    sd = __import__("collections").OrderedDict(w=w, b=rg.ones(2))
    tree = {"model": sd, "scale": np.array([2.5], BF16)[0], "step": 3}
    for obj in (sd, tree):
        f = tmp_path / "c.pt" if to_file else io.BytesIO()
        rg.save(obj, f)
        if not to_file:
            f.seek(0)
        back = rg.load(f)
        w_back = back["w"] if obj is sd else back["model"]["w"]
        assert w_back.dtype == w.dtype and w_back._array.dtype == BF16
        np.testing.assert_array_equal(w_back._array.view(np.uint16), w._array.view(np.uint16))
        if obj is tree:
            assert back["scale"].dtype == BF16 and float(back["scale"]) == 2.5 and back["step"] == 3
