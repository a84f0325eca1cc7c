"""rg.save/rg.load as PyTorch users call them: whole modules refused, checkpoints exact, file objects,
map_location/weights_only, torch.serialization's safe_globals."""
import io
import pathlib
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from safetensors.torch import load as torch_load_bytes

import retrograd as rg
from retrograd.io import SafetensorsFileError


def _mlp():
    return rg.nn.Sequential(rg.nn.Linear(4, 8), rg.nn.ReLU(), rg.nn.Linear(8, 3))


def _trained(seed=0, steps=2):
    """A model and an Adam optimizer that has stepped (so its state holds tensors and ints)."""
    rg.manual_seed(seed)
    model = _mlp()
    opt = rg.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.99))
    x = rg.tensor(np.random.default_rng(seed).standard_normal((5, 4)).astype(np.float32))
    for _ in range(steps):
        opt.zero_grad()
        (model(x) ** 2).mean().backward()
        opt.step()
    return model, opt, x


def _same(a, b, path="obj"):
    """Exact equality of two trees: container types, keys and order, leaf types, dtypes, values."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            _same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, (rg.Tensor, np.ndarray)):
        x, y = (a.numpy(), b.numpy()) if isinstance(a, rg.Tensor) else (a, b)
        assert x.dtype == y.dtype and x.shape == y.shape, path
        np.testing.assert_array_equal(x, y, err_msg=path)
        if isinstance(a, rg.Tensor):
            assert a.requires_grad == b.requires_grad, path
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), path
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _roundtrip(obj, tmp_path):
    rg.save(obj, tmp_path / "x.pt")
    return rg.load(tmp_path / "x.pt")


# ----------------------------------------------------------------------------- what may be saved
def test_whole_module_is_refused_with_what_to_do_instead(tmp_path):
    model = _mlp()
    with pytest.raises(TypeError, match=r"whole model \(Sequential\).*rg\.save\(model\.state_dict\(\), f\).*"
                                        r"model\.load_state_dict\(rg\.load\(f\)\)"):
        rg.save(model, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()  # nothing half-written
    # PyTorch (2.6+) refuses to load a whole pickled module by default: same advice, one step earlier here
    buf = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2), buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(buf)


def test_objects_inside_a_checkpoint_are_refused_naming_where(tmp_path):
    model, opt, _ = _trained()
    with pytest.raises(TypeError, match=r"rg\.save: cannot save model: .*Sequential.*never pickles.*"
                                        r"model\.state_dict\(\)"):
        rg.save({"model": model, "epoch": 1}, tmp_path / "c.pt")
    with pytest.raises(TypeError, match=r"cannot save the value: retrograd\.optim.*Adam.*obj\.state_dict\(\)"):
        rg.save(opt, tmp_path / "o.pt")
    with pytest.raises(TypeError, match=r"cannot save cfg\.act: builtins\.function"):
        rg.save({"cfg": {"act": lambda x: x}}, tmp_path / "f.pt")


def test_checkpoint_with_model_and_optimizer_roundtrips_exactly(tmp_path):
    model, opt, x = _trained()
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "best": float("inf"),
            "history": [1.5, 0.75], "name": "run", "note": None, "seed": np.int64(7)}
    back = _roundtrip(ckpt, tmp_path)
    _same(ckpt, back)
    assert isinstance(back["model"], OrderedDict)
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.99)
    assert set(back["optimizer"]["state"]) == {0, 1, 2, 3}  # int keys stay ints
    # resuming from the loaded checkpoint continues exactly as the uninterrupted run
    m2 = _mlp()
    o2 = rg.optim.Adam(m2.parameters(), lr=0.5)
    m2.load_state_dict(back["model"])
    o2.load_state_dict(back["optimizer"])
    for m, o in ((model, opt), (m2, o2)):
        o.zero_grad()
        (m(x) ** 2).mean().backward()
        o.step()
    for a, b in zip(model.parameters(), m2.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_optimizer_state_dict_alone_roundtrips_exactly(tmp_path):
    _, opt, _ = _trained(seed=1, steps=3)
    sd = opt.state_dict()
    _same(sd, _roundtrip(sd, tmp_path))


def test_container_and_tensor_kinds_as_torch_keeps_them(tmp_path):
    """OrderedDict vs dict, ndarray vs Tensor, requires_grad and Parameter come back as saved (as torch.load)."""
    rg_obj = {"od": OrderedDict(b=1, a=2), "d": {"z": 1}, "t": rg.ones(2, requires_grad=True),
              "p": rg.nn.Parameter(rg.ones(2)), "q": rg.nn.Parameter(rg.ones(2), requires_grad=False),
              "x": rg.ones(2), "tup": (1, "a")}
    t_obj = {"od": OrderedDict(b=1, a=2), "d": {"z": 1}, "t": torch.ones(2, requires_grad=True),
             "p": torch.nn.Parameter(torch.ones(2)), "q": torch.nn.Parameter(torch.ones(2), requires_grad=False),
             "x": torch.ones(2), "tup": (1, "a")}
    back = _roundtrip(rg_obj, tmp_path)
    buf = io.BytesIO()
    torch.save(t_obj, buf)
    buf.seek(0)
    tback = torch.load(buf)
    for k in rg_obj:
        assert type(back[k]).__name__ == type(tback[k]).__name__, k
        if isinstance(tback[k], torch.Tensor):
            assert back[k].requires_grad == tback[k].requires_grad, k
    assert list(back["od"]) == ["b", "a"]
    # a flat dict holding NumPy arrays keeps them arrays (not turned into Tensors)
    flat = {"w": np.arange(3.0), "v": rg.ones(1)}
    back = _roundtrip(flat, tmp_path)
    assert type(back) is dict and isinstance(back["w"], np.ndarray) and type(back["v"]) is rg.Tensor


@pytest.mark.parametrize("obj", [rg.arange(6).reshape(2, 3), [rg.ones(1), 2, "x"], 3.5, {}, (None,),
                                 rg.arange(12.0).reshape(3, 4).t()])
def test_other_top_level_values_roundtrip(tmp_path, obj):
    _same(obj if not isinstance(obj, rg.Tensor) else obj.contiguous(), _roundtrip(obj, tmp_path))


def test_state_dict_file_is_a_plain_safetensors_state_dict_for_pytorch(tmp_path):
    model, _, _ = _trained()
    buf = io.BytesIO()
    rg.save(model.state_dict(), buf)
    tsd = torch_load_bytes(buf.getvalue())
    assert sorted(tsd) == sorted(model.state_dict())  # safetensors itself sorts the names
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(tsd[k].numpy(), v.numpy())


# ----------------------------------------------------------------------------- paths and file objects
def _writers(tmp_path):
    p = tmp_path / "ckpt.pt"
    return {
        "str": (lambda obj: rg.save(obj, str(p)), lambda: rg.load(str(p))),
        "pathlib": (lambda obj: rg.save(obj, p), lambda: rg.load(pathlib.Path(p))),
        "open file": (lambda obj: _with_open(p, "wb", lambda f: rg.save(obj, f)),
                      lambda: _with_open(p, "rb", rg.load)),
    }


def _with_open(p, mode, fn):
    with open(p, mode) as f:
        return fn(f)


@pytest.mark.parametrize("kind", ["str", "pathlib", "open file", "BytesIO"])
def test_paths_and_file_objects_all_work(tmp_path, kind):
    model, opt, _ = _trained()
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}
    if kind == "BytesIO":
        buf = io.BytesIO()
        rg.save(ckpt, buf)
        back = rg.load(io.BytesIO(buf.getvalue()))
        buf.seek(0)
        _same(back, rg.load(buf))
    else:
        write, read = _writers(tmp_path)[kind]
        write(ckpt)
        back = read()
    _same(ckpt, back)
    # a state dict alone, through the same route
    sd = model.state_dict()
    if kind == "BytesIO":
        buf = io.BytesIO()
        rg.save(sd, buf)
        buf.seek(0)
        back = rg.load(buf)
    else:
        write(sd)
        back = read()
    _same(sd, back)


def test_stream_reads_exactly_one_object_so_several_can_follow_each_other():
    buf = io.BytesIO()
    rg.save({"a": rg.ones(2)}, buf)
    rg.save([1, 2], buf)
    rg.save(OrderedDict(w=rg.zeros(3)), buf)
    buf.seek(0)
    first, second, third = rg.load(buf), rg.load(buf), rg.load(buf)
    np.testing.assert_array_equal(first["a"].numpy(), np.ones(2, np.float32))
    assert second == [1, 2] and list(third) == ["w"]
    assert buf.read() == b""


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(TypeError, match=r"open it in binary mode: open\(path, 'wb'\)"):
        with open(tmp_path / "t.txt", "w") as f:
            rg.save({"a": 1}, f)
    with pytest.raises(TypeError, match=r"a path \(str or os.PathLike\) or a binary file object with read\(\), "
                                        r"got int"):
        rg.load(3)
    with pytest.raises(FileNotFoundError):
        rg.load(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError):  # as torch
        torch.load(tmp_path / "missing.pt")
    buf = io.BytesIO()
    rg.save({"w": rg.ones(100)}, buf)
    with pytest.raises(SafetensorsFileError, match="truncated"):
        rg.load(io.BytesIO(buf.getvalue()[:-10]))
    with pytest.raises(SafetensorsFileError, match="not a safetensors file"):
        rg.load(io.BytesIO(b"\xff" * 64))


def test_a_torch_save_file_points_to_import_torch_state_dict(tmp_path):
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "w.pt")
    with pytest.raises(SafetensorsFileError, match=r"torch\.save file.*never unpickles.*import_torch_state_dict"):
        rg.load(tmp_path / "w.pt")
    with open(tmp_path / "w.pt", "rb") as f, pytest.raises(SafetensorsFileError, match="torch.save file"):
        rg.load(f)
    buf = io.BytesIO()
    torch.save({"a": 1}, buf, _use_new_zipfile_serialization=False)  # the legacy (bare pickle) format
    with pytest.raises(SafetensorsFileError, match="torch.save file"):
        rg.load(io.BytesIO(buf.getvalue()))


# ----------------------------------------------------------------------------- torch.load's keywords
@pytest.mark.parametrize("where", [None, "cpu", "cpu:0", torch.device("cpu"), {"cuda:0": "cpu"},
                                   lambda storage, loc: storage])
def test_map_location_to_the_cpu_is_accepted(tmp_path, where):
    rg.save({"w": rg.ones(2)}, tmp_path / "w.pt")
    out = rg.load(tmp_path / "w.pt", map_location=where)
    np.testing.assert_array_equal(out["w"].numpy(), np.ones(2, np.float32))


@pytest.mark.parametrize("where", ["cuda", "cuda:1", torch.device("cuda", 0), 0, {"cpu": "cuda:0"}, "mps"])
def test_map_location_to_a_gpu_raises_as_torch_does_without_one(tmp_path, where):
    rg.save({"w": rg.ones(2)}, tmp_path / "w.pt")
    with pytest.raises(RuntimeError, match=r"asks for device .*CPU only; pass map_location='cpu'"):
        rg.load(tmp_path / "w.pt", map_location=where)
    if where == "cuda" and not torch.cuda.is_available():  # torch's error type on a CPU-only machine
        buf = io.BytesIO()
        torch.save({"w": torch.ones(2)}, buf)
        buf.seek(0)
        with pytest.raises(RuntimeError, match="CPU-only machine"):
            torch.load(buf, map_location=where)
    with pytest.raises(TypeError, match="map_location must be None, 'cpu', a device"):
        rg.load(tmp_path / "w.pt", map_location=3.5)


def test_weights_only_and_mmap_change_nothing(tmp_path):
    model, opt, _ = _trained()
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}
    rg.save(ckpt, tmp_path / "c.pt", pickle_protocol=4, _use_new_zipfile_serialization=False)
    for kw in ({}, {"weights_only": True}, {"weights_only": False}, {"weights_only": None}, {"mmap": True},
               {"map_location": "cpu", "weights_only": False}):
        _same(ckpt, rg.load(tmp_path / "c.pt", **kw))
    with pytest.raises(TypeError, match="weights_only must be True, False or None, got 'yes'"):
        rg.load(tmp_path / "c.pt", weights_only="yes")


# ----------------------------------------------------------------------------- safe_globals
class _Cfg:
    pass


def _other():
    pass


def test_safe_globals_exist_as_in_torch_and_change_nothing(tmp_path):
    import retrograd.serialization as ser
    from retrograd.serialization import add_safe_globals, safe_globals
    assert ser is rg.serialization is rg.io.serialization and ser.load is rg.load and ser.save is rg.save
    rg.save({"w": rg.ones(2)}, tmp_path / "w.pt")
    for mod in (ser, torch.serialization):  # the same calls, the same listing
        mod.clear_safe_globals()
        add_safe_globals([_Cfg]) if mod is ser else mod.add_safe_globals([_Cfg])
        ctx = safe_globals if mod is ser else mod.safe_globals
        with ctx([_other, (np.dtype, "numpy.dtype")]):
            assert set(mod.get_safe_globals()) == {_Cfg, _other, (np.dtype, "numpy.dtype")}
            if mod is ser:
                np.testing.assert_array_equal(rg.load(tmp_path / "w.pt")["w"].numpy(), np.ones(2, np.float32))
        assert mod.get_safe_globals() == [_Cfg]
        mod.clear_safe_globals()
        assert mod.get_safe_globals() == []
    assert ser.get_unsafe_globals_in_checkpoint(tmp_path / "w.pt") == []
    with pytest.raises(TypeError, match="expected a class, a function or a"):
        add_safe_globals(["numpy.dtype"])
    with pytest.raises(TypeError, match="expected a list of classes"):
        add_safe_globals(_Cfg)
