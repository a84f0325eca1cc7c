"""safetensors save/load, rg.save/rg.load, importing PyTorch weights."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file as torch_load_file
from safetensors.torch import save_file as torch_save_file

import retrograd as rg
from retrograd.io import SafetensorsFileError, import_torch_state_dict, load_safetensors, save_safetensors


def _mlp():
    return rg.nn.Sequential(rg.nn.Linear(4, 8), rg.nn.ReLU(), rg.nn.Linear(8, 3))


def test_safetensors_roundtrip_keeps_names_order_dtypes(tmp_path):
    sd = {"layers.0.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "z.step": np.array(3.0),
          "a.idx": np.arange(4, dtype=np.int64), "mask": np.array([True, False]),
          "half": np.ones(2, np.float16)}
    save_safetensors(sd, tmp_path / "a.safetensors")
    back = load_safetensors(tmp_path / "a.safetensors")
    assert list(back) == list(sd)
    for k in sd:
        assert back[k].dtype == sd[k].dtype and back[k].shape == sd[k].shape
        np.testing.assert_array_equal(back[k], sd[k])


def test_file_saved_by_retrograd_is_read_by_pytorch(tmp_path):
    rg.manual_seed(0)
    model = _mlp()
    rg.save(model.state_dict(), tmp_path / "m.safetensors")
    tsd = torch_load_file(str(tmp_path / "m.safetensors"))
    assert set(tsd) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    tm = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    tm.load_state_dict(tsd)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(tm(torch.from_numpy(x)).detach().numpy(), model(rg.tensor(x)).detach().numpy(), rtol=1e-6)


def test_rg_save_load_state_dict(tmp_path):
    rg.manual_seed(0)
    a = _mlp()
    rg.save(a.state_dict(), tmp_path / "a.safetensors")
    sd = rg.load(tmp_path / "a.safetensors")
    assert all(isinstance(v, rg.Tensor) for v in sd.values())
    assert list(sd) == list(a.state_dict())
    rg.manual_seed(1)
    b = _mlp()
    b.load_state_dict(sd)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())


def test_rg_save_nested_tree(tmp_path):
    obj = {"model": {"w": rg.ones(2, 3)}, "epoch": 3, "betas": (0.9, 0.999), "state": {0: {"step": np.array(2.0)}},
           "name": "run", "best": float("inf")}
    rg.save(obj, tmp_path / "t.safetensors")
    back = rg.load(tmp_path / "t.safetensors")
    assert back["epoch"] == 3 and back["betas"] == (0.9, 0.999) and back["name"] == "run"
    assert back["best"] == float("inf")
    assert isinstance(back["model"]["w"], rg.Tensor) and back["model"]["w"].shape == (2, 3)
    assert float(back["state"][0]["step"]) == 2.0


def test_import_torch_safetensors_with_bf16_and_prefix(tmp_path):
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    sd = {f"module.{k}": v for k, v in tm.state_dict().items()}
    torch_save_file(sd, str(tmp_path / "t.safetensors"))
    imported = import_torch_state_dict(tmp_path / "t.safetensors")
    assert sorted(imported) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    model = _mlp()
    model.load_state_dict(imported)
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(model(rg.tensor(x)).detach().numpy(), tm(torch.from_numpy(x)).detach().numpy(), rtol=1e-6)
    # bfloat16 (NumPy has none): upcast exactly to float32
    w = torch.tensor([[1.5, -2.25], [3.0e-3, 7.0]], dtype=torch.bfloat16)
    torch_save_file({"w": w}, str(tmp_path / "b.safetensors"))
    b = import_torch_state_dict(tmp_path / "b.safetensors")
    assert b["w"].dtype == np.float32
    np.testing.assert_array_equal(b["w"], w.float().numpy())


def test_import_torch_save_file(tmp_path):
    tm = torch.nn.Linear(3, 2)
    torch.save(tm.state_dict(), tmp_path / "w.pt")
    sd = import_torch_state_dict(tmp_path / "w.pt")
    np.testing.assert_array_equal(sd["weight"], tm.weight.detach().numpy())
    m = rg.nn.Linear(3, 2)
    m.load_state_dict(sd)
    np.testing.assert_array_equal(m.bias.detach().numpy(), tm.bias.detach().numpy())


def test_truncated_safetensors_names_the_file(tmp_path):
    p = tmp_path / "m.safetensors"
    rg.save(_mlp().state_dict(), p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(SafetensorsFileError, match="m.safetensors"):
        load_safetensors(p)
    with pytest.raises(SafetensorsFileError, match="no such safetensors file"):
        load_safetensors(tmp_path / "nope.safetensors")


def test_save_rejects_non_arrays(tmp_path):
    with pytest.raises(TypeError, match="'w' is a str"):
        save_safetensors({"w": "x"}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="cannot save f"):
        rg.save({"f": lambda: 0, "w": rg.ones(1)}, tmp_path / "y.safetensors")
