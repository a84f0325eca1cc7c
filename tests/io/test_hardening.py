"""Issue 12, items 1-4: hostile checkpoint manifests, unlisted files, lax safetensors headers and
trusting rg.load tree metadata. Each test reproduces what the issue found and checks the fix."""
import io
import json
import os
import time
import tracemalloc

import numpy as np
import pytest
from safetensors.numpy import save as st_save

import retrograd as rg
from retrograd.io import (CheckpointError, SafetensorsFileError, import_torch_state_dict, load_safetensors,
                          save_safetensors)
from retrograd.io.checkpoint import load_tree, save_tree, verify_directory

from st_helpers import entry, rehash, rewrite_manifest, small_trainer, st_bytes, trained_checkpoint, two_tensors


# --------------------------------------------------------------------------- 1. manifest paths and entries
@pytest.fixture
def ckpt(tmp_path):
    folder = tmp_path / "run" / "last"
    trained_checkpoint(folder)
    return folder


def _listing(folder):
    return json.loads((folder / "manifest.json").read_text())["files"]


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "dotdot-inside"])
def test_manifest_entry_outside_the_folder_is_refused_without_its_size(ckpt, tmp_path, kind):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"s" * 12345)
    name = {"dotdot": "../../secret.txt", "absolute": str(secret),
            "dotdot-inside": "sub/../../../secret.txt"}[kind]
    files = _listing(ckpt)
    files[name] = {"bytes": 1, "sha256": "0" * 64}
    rewrite_manifest(ckpt, files)
    with pytest.raises(CheckpointError, match="outside the checkpoint folder") as e:
        verify_directory(ckpt)
    assert "12345" not in str(e.value)


def test_manifest_entry_through_a_symlink_is_refused(ckpt, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"s" * 12345)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.bin").write_bytes(b"x" * 4321)
    os.symlink(secret, ckpt / "link.txt")
    os.symlink(outside, ckpt / "dirlink")
    for name in ("link.txt", "dirlink/x.bin"):
        files = _listing(ckpt)
        files[name] = {"bytes": 1, "sha256": "0" * 64}
        rewrite_manifest(ckpt, files)
        with pytest.raises(CheckpointError, match="symbolic link") as e:
            verify_directory(ckpt)
        assert "12345" not in str(e.value) and "4321" not in str(e.value)
        del files[name]


def test_huge_sparse_file_is_not_hashed_beyond_the_declared_size(ckpt):
    big = ckpt / "model.safetensors"
    declared = big.stat().st_size
    with open(big, "r+b") as f:  # a 1 TiB sparse file where the model was
        f.truncate(1 << 40)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=f"{1 << 40} bytes, the manifest records {declared}"):
        verify_directory(ckpt)
    assert time.perf_counter() - t0 < 2.0


def test_hash_reads_no_more_than_the_declared_size(ckpt, monkeypatch):
    # the file grows between the size check and the hash: at most declared + 1 bytes are read
    from retrograd.io import checkpoint as ck
    seen = []
    real = ck._sha256
    monkeypatch.setattr(ck, "_sha256", lambda p, limit=None: seen.append(limit) or real(p, limit))
    verify_directory(ckpt)
    files = _listing(ckpt)
    assert sorted(seen) == sorted(info["bytes"] for info in files.values())
    f = ckpt / "trainer.json"
    f.write_bytes(f.read_bytes() + b" " * (3 << 20))
    assert len(real(f, limit=10)) == 64  # reads 11 bytes, not 3 MiB (a 1 TiB file would hang here)
    assert real(f, limit=10) == __import__("hashlib").sha256(f.read_bytes()[:11]).hexdigest()


@pytest.mark.parametrize("manifest", [
    '{"format": "retrograd-checkpoint"}',                       # no files table
    '{"files": []}',                                             # a list
    '{"files": {"model.safetensors": 5}}',                       # entry not an object
    '{"files": {"model.safetensors": {"sha256": "00"}}}',        # no bytes
    '{"files": {"model.safetensors": {"bytes": "10", "sha256": "' + "0" * 64 + '"}}}',
    '{"files": {"model.safetensors": {"bytes": -1, "sha256": "' + "0" * 64 + '"}}}',
    '{"files": {"model.safetensors": {"bytes": true, "sha256": "' + "0" * 64 + '"}}}',
    '{"files": {"model.safetensors": {"bytes": 10, "sha256": 5}}}',
    '{"files": {"": {"bytes": 10, "sha256": "' + "0" * 64 + '"}}}',
    '[1, 2]', '"files"', '{"files": {', "[" * 100000, b"\xff\xfe{}",
])
def test_malformed_manifest_gives_checkpoint_error(ckpt, manifest):
    m = ckpt / "manifest.json"
    m.write_bytes(manifest if isinstance(manifest, bytes) else manifest.encode())
    with pytest.raises(CheckpointError, match="manifest"):
        verify_directory(ckpt)


def test_manifest_that_is_a_symlink_or_huge_is_refused(ckpt, tmp_path):
    m = ckpt / "manifest.json"
    with open(m, "r+b") as f:
        f.truncate(1 << 40)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="MiB"):
        verify_directory(ckpt)
    assert time.perf_counter() - t0 < 2.0
    m.unlink()
    (tmp_path / "m.json").write_text('{"files": {}}')
    os.symlink(tmp_path / "m.json", m)
    with pytest.raises(CheckpointError, match="not a regular file"):
        verify_directory(ckpt)


# --------------------------------------------------------------------------- 2. unlisted files are never loaded
def test_empty_files_table_does_not_load_replaced_weights(ckpt):
    fresh = small_trainer(seed=1)
    before = {k: v.numpy().copy() for k, v in fresh.model.state_dict().items()}
    rg.save(rg.nn.Sequential(rg.nn.Linear(3, 4), rg.nn.Tanh(), rg.nn.Linear(4, 2)).state_dict(),
            ckpt / "model.safetensors")  # replaced weights, and a manifest that lists nothing
    rewrite_manifest(ckpt, {})
    with pytest.raises(CheckpointError, match="model.safetensors: not listed in the checkpoint's manifest"):
        fresh.load_checkpoint(ckpt)
    for k, v in fresh.model.state_dict().items():  # the trainer is left as it was
        np.testing.assert_array_equal(v.numpy(), before[k])


def test_unlisted_grads_file_is_not_loaded(ckpt):
    save_safetensors({"0": np.full((4, 3), 100.0, np.float32)}, ckpt / "grads.safetensors")
    tr = small_trainer(seed=1)
    tr.load_checkpoint(ckpt)
    assert all(p.grad is None for p in tr.params)  # the stray file did not become a gradient
    # listed (as a mid-accumulation save writes it), it is loaded
    files = _listing(ckpt)
    files["grads.safetensors"] = {"bytes": 0, "sha256": "0" * 64}
    rewrite_manifest(ckpt, files)
    rehash(ckpt)
    tr2 = small_trainer(seed=1)
    tr2.load_checkpoint(ckpt)
    np.testing.assert_array_equal(tr2.params[0].grad.numpy(), np.full((4, 3), 100.0, np.float32))


def test_load_tree_reads_only_listed_files(tmp_path):
    save_tree(tmp_path, "opt", {"w": np.ones(3), "lr": 0.1})
    with pytest.raises(CheckpointError, match="not listed"):
        load_tree(tmp_path, "opt", files={})
    with pytest.raises(CheckpointError, match="missing"):  # its arrays are not listed: not read
        load_tree(tmp_path, "opt", files={"opt.json": {}})
    back = load_tree(tmp_path, "opt", files={"opt.json": {}, "opt.safetensors": {}})
    np.testing.assert_array_equal(back["w"], np.ones(3))


# --------------------------------------------------------------------------- 3. strict safetensors reading
def _write(tmp_path, blob, name="w.safetensors"):
    p = tmp_path / name
    p.write_bytes(blob)
    return p


def _bad(header_change, data_change=None):
    header, data = two_tensors()
    header_change(header)
    return st_bytes(header, data if data_change is None else data_change(data))


@pytest.mark.parametrize("case,blob,match", [
    ("overlap", _bad(lambda h: h.update(b=entry("F32", (4,), 16, 32)), lambda d: d[:32]),
     "tensor 'b'.*overlap tensor 'a'"),
    ("gap", _bad(lambda h: h.update(b=entry("F32", (4,), 28, 44)), lambda d: d + b"\0" * 4),
     "tensor 'b'.*gap of 4 bytes"),
    ("negative shape", _bad(lambda h: h.update(a=entry("F32", (-2, -3), 0, 24))), "tensor 'a'.*negative"),
    ("non-string metadata", _bad(lambda h: h.update(__metadata__={"format": 5})), "__metadata__"),
    ("metadata not an object", _bad(lambda h: h.update(__metadata__=[1])), "__metadata__"),
    ("offsets past the end", _bad(lambda h: None, lambda d: d[:32]), "truncated.*end at data byte 40.*32"),
    ("offsets far past the end", _bad(lambda h: h.update(b=entry("F32", (1 << 40,), 24, 24 + (1 << 42)))),
     "truncated"),
    ("dtype/byte length", _bad(lambda h: h.update(b=entry("F64", (4,), 24, 40))),
     r"tensor 'b'.*shape \(4,\) of F64 needs 32 bytes.*give 16"),
    ("shape/byte length", _bad(lambda h: h.update(a=entry("F32", (2, 2), 0, 24))),
     r"tensor 'a'.*shape \(2, 2\) of F32 needs 16 bytes"),
    ("unknown dtype", _bad(lambda h: h.update(a={**h["a"], "dtype": "F128"})), "tensor 'a'.*dtype 'F128'"),
    ("shape not ints", _bad(lambda h: h.update(a={**h["a"], "shape": [2, "3"]})), "tensor 'a'.*shape"),
    ("shape bools", _bad(lambda h: h.update(a={**h["a"], "shape": [True, 6]})), "tensor 'a'.*shape"),
    ("offsets not a pair", _bad(lambda h: h.update(a={**h["a"], "data_offsets": [0]})), "tensor 'a'.*offsets"),
    ("reversed offsets", _bad(lambda h: h.update(a={**h["a"], "data_offsets": [24, 0]})), "tensor 'a'"),
    ("missing field", _bad(lambda h: h["a"].pop("dtype")), "tensor 'a'.*lacks dtype"),
    ("entry not an object", _bad(lambda h: h.update(a=[1, 2])), "tensor 'a'"),
    ("too many dims", _bad(lambda h: h.update(a={**h["a"], "shape": [1] * 70 + [6]})), "dimensions"),
    ("trailing data", _bad(lambda h: None, lambda d: d + b"x" * 8), "40.*48"),
])
def test_import_torch_state_dict_is_strict(tmp_path, case, blob, match):
    p = _write(tmp_path, blob)
    with pytest.raises(SafetensorsFileError, match=match):
        import_torch_state_dict(p)
    with pytest.raises(SafetensorsFileError, match=match):
        load_safetensors(p)


def test_duplicate_keys_are_refused(tmp_path):
    header, data = two_tensors()
    raw = json.dumps(header)[:-1] + ', "a": ' + json.dumps(entry("F32", (4,), 24, 40)) + "}"
    p = _write(tmp_path, st_bytes(raw, data))
    with pytest.raises(SafetensorsFileError, match="'a' appears twice"):
        import_torch_state_dict(p)
    with pytest.raises(SafetensorsFileError, match="'a' appears twice"):
        rg.load(p)


def test_bool_bytes_other_than_0_and_1_are_refused(tmp_path):
    p = _write(tmp_path, st_bytes({"m": entry("BOOL", (3,), 0, 3)}, b"\x00\x01\x07"))
    with pytest.raises(SafetensorsFileError, match="tensor 'm'.*BOOL"):
        load_safetensors(p)


def test_bf16_in_a_tensor_name_does_not_switch_readers(tmp_path):
    # a corrupted file whose tensor is named BF16 (so the safetensors error message held "BF16"): it was
    # handed to the lax reader, which returned bytes 8-16 of a gapped file as if nothing were wrong
    p = _write(tmp_path, st_bytes({"BF16": entry("F32", (2,), 8, 16)}, b"\0" * 16))
    with pytest.raises(SafetensorsFileError, match="tensor 'BF16'.*gap of 8 bytes"):
        load_safetensors(p)
    good = _write(tmp_path, st_save({"BF16.weight": np.arange(3, dtype=np.float32)}), "good.safetensors")
    out = load_safetensors(good)
    assert out["BF16.weight"].dtype == np.float32
    np.testing.assert_array_equal(out["BF16.weight"], [0, 1, 2])


def test_valid_files_of_every_dtype_still_load(tmp_path):
    sd = {"f64": np.linspace(0, 1, 5), "f32": np.ones((2, 0, 3), np.float32), "f16": np.float16([1.5, -2]),
          "i64": np.arange(-3, 3), "i32": np.int32([7]), "i16": np.int16([-1]), "i8": np.int8([-5, 5]),
          "u8": np.uint8([255]), "u16": np.uint16([65535]), "u32": np.uint32([1]), "u64": np.uint64([2 ** 63]),
          "b": np.array([True, False]), "scalar": np.array(2.5)}
    p = _write(tmp_path, st_save(sd))
    back = load_safetensors(p)
    assert set(back) == set(sd)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
        np.testing.assert_array_equal(back[k], v)


# --------------------------------------------------------------------------- 4. rg.load tree metadata
def _tree_file(tree, arrays=None):
    arrays = arrays or {}
    meta = {"format": "pt", "retrograd.tree": tree if isinstance(tree, str) else json.dumps(tree)}
    return st_save(arrays, metadata=meta)


def _peak_below(limit: int, fn, *args):
    """``fn(*args)``, checking that it allocates less than ``limit`` bytes at its peak, even when it raises."""
    tracemalloc.start()
    try:
        return fn(*args)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < limit, f"{peak} bytes allocated"


def test_small_file_cannot_make_a_huge_object(tmp_path):
    blob = _tree_file({"x": {"__npscalar__": 0, "dtype": "V2000000000"}})
    assert len(blob) < 200  # the 188-byte file that became a 2 GiB object
    p = _write(tmp_path, blob)
    with pytest.raises(SafetensorsFileError, match="x: NumPy scalar of dtype 'V2000000000'"):
        _peak_below(1 << 20, rg.load, p)


@pytest.mark.parametrize("tree,match", [
    ('{"a": ', "JSONDecodeError"),
    ("[" * 50000 + "]" * 50000, "RecursionError|nested deeper"),
    (json.dumps(json.loads("[" * 500 + "]" * 500)), "nested deeper than 200"),
    ({"w": {"__ndarray__": "nope"}}, "w: array 'nope' referenced by the saved state is missing"),
    ({"w": {"__tensor__": 5}}, "w: array 5 referenced"),
    ({"w": {"__tensor__": "w", "requires_grad": "yes"}}, "flags"),
    ({"t": {"__tuple__": 5}}, "t: __tuple__ holds a int"),
    ({"d": {"__dict__": [[{"k": 1}, 2]]}}, "not hashable"),
    ({"d": {"__dict__": [1]}}, r"\[key, value\] pair"),
    ({"d": {"__odict__": [1, 2]}}, "__odict__ holds a list"),
    ({"s": {"__npscalar__": "x", "dtype": "<f8"}}, "not a number"),
    ({"s": {"__npscalar__": 1000, "dtype": "|i1"}}, "does not fit"),
    ({"s": {"__npscalar__": 1, "dtype": ["<f8"]}}, "dtype"),
    ({"s": {"__npscalar__": 1, "dtype": "not a dtype"}}, "dtype"),
    ({"s": {"__npscalar__": 1, "dtype": "<U1000000000"}}, "dtype"),
    ({"s": {"__npscalar__": 1, "dtype": "O"}}, "dtype"),
])
def test_bad_tree_metadata_gives_one_library_error(tmp_path, tree, match):
    arrays = {"w": np.zeros(2, np.float32)}
    p = _write(tmp_path, _tree_file(tree, arrays))
    with pytest.raises(SafetensorsFileError, match=match):
        rg.load(p)
    with pytest.raises(SafetensorsFileError, match=match):
        rg.load(io.BytesIO(p.read_bytes()))


def test_int_parameter_with_requires_grad_is_a_library_error(tmp_path):
    p = _write(tmp_path, _tree_file({"w": {"__tensor__": "w", "parameter": True, "requires_grad": True}},
                                    {"w": np.zeros(2, np.int64)}))
    with pytest.raises(SafetensorsFileError, match="w: array 'w'"):
        rg.load(p)


def test_stream_that_claims_a_huge_tensor_costs_what_it_holds():
    header = {"a": entry("F32", (1 << 28,), 0, 1 << 30)}
    stream = io.BytesIO(st_bytes(header, b"\0" * 1000))
    with pytest.raises(SafetensorsFileError, match="truncated"):
        _peak_below(8 << 20, rg.load, stream)


@pytest.mark.parametrize("edit,match", [
    (lambda tr: tr["state"].update(epoch="3"), "trainer state epoch='3'"),
    (lambda tr: tr["state"].update(__class__=1), "unknown trainer state '__class__'"),
    (lambda tr: tr.update(history=[1]), "'state' and 'history'"),
    (lambda tr: tr.update(accumulate=-1), "accumulate=-1"),
])
def test_trainer_json_is_checked(ckpt, edit, match):
    tr = json.loads((ckpt / "trainer.json").read_text())
    edit(tr)
    (ckpt / "trainer.json").write_text(json.dumps(tr))
    rehash(ckpt)  # a manifest that agrees: the contents themselves are checked
    with pytest.raises(CheckpointError, match=match):
        small_trainer(seed=1).load_checkpoint(ckpt)


def test_hostile_but_consistent_checkpoint_leaves_the_trainer_as_it_was(ckpt):
    opt = json.loads((ckpt / "optimizer.json").read_text())
    opt["param_groups"] = 0.5  # optimizer.load_state_dict raised a raw TypeError, after the model changed
    (ckpt / "optimizer.json").write_text(json.dumps(opt))
    save_safetensors({"0": np.full((4, 3), 7.0, np.float32)}, ckpt / "grads.safetensors")
    files = _listing(ckpt)
    files["grads.safetensors"] = {"bytes": 0, "sha256": "0" * 64}
    rewrite_manifest(ckpt, files)
    rehash(ckpt)
    tr = small_trainer(seed=1)
    before = {k: v.numpy().copy() for k, v in tr.model.state_dict().items()}
    opt_before = json.dumps(tr.optimizer.state_dict(), default=str)
    rng_before = rg.random.default_generator.get_state() if hasattr(rg, "random") else None
    with pytest.raises(CheckpointError, match="does not fit this trainer.*TypeError"):
        tr.load_checkpoint(ckpt)
    for k, v in tr.model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    assert json.dumps(tr.optimizer.state_dict(), default=str) == opt_before
    assert all(p.grad is None for p in tr.params) and tr.state.global_step == 0
    if rng_before is not None:
        assert rg.random.default_generator.get_state() == rng_before


def test_gradient_for_no_parameter_is_refused(ckpt):
    save_safetensors({"99": np.ones(3, np.float32)}, ckpt / "grads.safetensors")
    files = _listing(ckpt)
    files["grads.safetensors"] = {"bytes": 0, "sha256": "0" * 64}
    rewrite_manifest(ckpt, files)
    rehash(ckpt)
    with pytest.raises(CheckpointError, match="gradient '99' names no parameter"):
        small_trainer(seed=1).load_checkpoint(ckpt)
