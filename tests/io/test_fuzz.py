"""Fuzzing the readers (issue 12, "Done when"): seeded mutations of safetensors files, rg.load files
and checkpoint folders (bit flips, truncations, header and tree JSON edits, offset and shape edits,
manifest edits, files rewritten with a manifest that agrees) give either a correct load or the
library's own error (``SafetensorsFileError``, ``CheckpointError``): never a KeyError, TypeError,
NumPy ValueError, JSONDecodeError, RecursionError or MemoryError, never a hang (each case runs
under an alarm) and never an allocation larger than the file allows (tracemalloc's peak per case)."""
import copy
import io
import json
import os
import random
import shutil
import signal
import struct
import time
import tracemalloc
from collections import Counter

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save as st_save

import retrograd as rg
from retrograd.io import CheckpointError, SafetensorsFileError, import_torch_state_dict, load_safetensors

from st_helpers import rehash, small_trainer, trained_checkpoint

LIBRARY_ERRORS = (SafetensorsFileError, CheckpointError)
CASE_SECONDS = 10  # a hang shows as an alarm; a healthy case takes milliseconds (slack for loaded CI)
SLACK = 2 << 20   # bytes of peak allocation allowed beyond a multiple of the file's size

# values a mutation puts in place of a JSON node: wrong types, out-of-range numbers, deep nesting
POOL = [-1, 0, 1, 7, 2 ** 31, 2 ** 63, 2 ** 64 + 5, -(2 ** 63), 1.5, 1e308, float("nan"), float("inf"), "x", "",
        None, True, False, [], {}, [1, 2], [1, 2, 3], [-1, 8], [[[[1]]]], {"a": 1}, "F32", "BF16", "BOOL",
        "V2000000000", "<U1000000000", "../x", "/etc/hostname", "0" * 64]


@pytest.fixture(autouse=True)
def alarm():
    def timeout(signum, frame):
        raise TimeoutError(f"a fuzz case ran over {CASE_SECONDS} s (a hang)")
    old = signal.signal(signal.SIGALRM, timeout)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _deep(n: int) -> str:
    return "[" * n + "]" * n


def _nodes(obj, path=()):
    """Every (path, value) of a JSON tree."""
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _nodes(v, path + (i,))


def _set(obj, path, value):
    if not path:
        return value
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return obj


def _delete(obj, path):
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    del parent[path[-1]]
    return obj


def mutate_json(rng: random.Random, obj) -> str:
    """JSON text of ``obj`` with one random edit: a node replaced, deleted, or a key duplicated;
    sometimes the text itself is cut or nested too deep."""
    obj = copy.deepcopy(obj)
    op = rng.choice(["replace", "replace", "replace", "delete", "dup", "cut", "deep", "shift"])
    nodes = list(_nodes(obj))
    path, value = rng.choice(nodes)
    if op == "replace":
        return json.dumps(_set(obj, path, rng.choice(POOL)))
    if op == "delete" and path:
        return json.dumps(_delete(obj, path))
    if op == "shift" and isinstance(value, int) and not isinstance(value, bool):
        return json.dumps(_set(obj, path, value + rng.choice([-8, -2, -1, 1, 2, 8, 1 << 40])))
    text = json.dumps(obj)
    if op == "dup" and isinstance(obj, dict) and obj:
        k = rng.choice(list(obj))
        return text[:-1] + ", " + json.dumps(k) + ": " + json.dumps(rng.choice([obj[k], rng.choice(POOL)])) + "}"
    if op == "cut":
        return text[:rng.randrange(len(text))]
    if op == "deep":
        return json.dumps(_set(obj, path, None)).replace("null", _deep(rng.choice([300, 5000, 100000])), 1)
    return json.dumps(_set(obj, path, rng.choice(POOL)))


def split(blob: bytes):
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def join(header_text: str, data: bytes) -> bytes:
    h = header_text.encode("utf-8", "surrogatepass")
    return struct.pack("<Q", len(h)) + h + data


def mutate_safetensors(rng: random.Random, blob: bytes) -> tuple[str, bytes]:
    header, data = split(blob)
    kinds = ["flip", "flip", "truncate", "header", "header", "offsets", "length"]
    if "retrograd.tree" in header.get("__metadata__", {}):
        kinds += ["tree"] * 4
    kind = rng.choice(kinds)
    names = [k for k in header if k != "__metadata__"]
    if kind == "flip":
        b = bytearray(blob)
        hi = len(b) if rng.random() < 0.3 else min(len(b), 8 + struct.unpack("<Q", blob[:8])[0])
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(hi)] ^= 1 << rng.randrange(8)
        return kind, bytes(b)
    if kind == "truncate":
        return kind, blob[:rng.randrange(len(blob))]
    if kind == "length":
        n = struct.unpack("<Q", blob[:8])[0]
        return kind, struct.pack("<Q", max(0, n + rng.choice([-3, -1, 1, 5, 1 << 20, 1 << 62]))) + blob[8:]
    if kind == "offsets" and names:
        name = rng.choice(names)
        e = header[name]
        field = rng.choice(["shape", "data_offsets"])
        i = rng.randrange(len(e[field])) if e[field] else None
        if i is None:
            e[field] = [rng.choice([-1, 1, 2 ** 40])]
        else:
            e[field][i] = rng.choice([-1, 0, e[field][i] + 1, e[field][i] - 1, e[field][i] * 2, 2 ** 40, 2 ** 63])
        return kind, join(json.dumps(header), data)
    if kind == "tree" and "retrograd.tree" in header.get("__metadata__", {}):
        tree = json.loads(header["__metadata__"]["retrograd.tree"])
        header["__metadata__"]["retrograd.tree"] = mutate_json(rng, tree)
        return kind, join(json.dumps(header), data)
    return "header", join(mutate_json(rng, header), data)


def _bases() -> dict[str, bytes]:
    rg.manual_seed(0)
    model = rg.nn.Sequential(rg.nn.Linear(3, 4), rg.nn.Tanh(), rg.nn.Linear(4, 2))
    opt = rg.optim.Adam(model.parameters(), lr=1e-2)
    model(rg.randn(2, 3)).sum().backward()
    opt.step()
    f = io.BytesIO()
    rg.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "betas": (0.9, 0.99),
             "scale": np.float32(2.0), "odict": __import__("collections").OrderedDict(a=1),
             "keys": {(1, 2): "tuple key"}}, f)
    return {
        "state_dict": st_save({"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(4, np.float64),
                               "i": np.arange(3, dtype=np.int64), "m": np.array([True, False]),
                               "h": np.float16([1, 2]), "e": np.zeros((0, 3), np.float32)},
                              metadata={"format": "pt"}),
        "bf16": st_save({"x": np.arange(6, dtype=np.float32).astype(ml_dtypes.bfloat16).reshape(2, 3),
                         "y": np.uint8([1, 2, 3])}),
        "rg_tree": f.getvalue(),
    }


def _run_case(fn, size: int, multiple: int = 4):
    """``fn()`` under an alarm and tracemalloc: the error type it raised (None if it loaded) and its peak."""
    tracemalloc.reset_peak()
    signal.alarm(CASE_SECONDS)
    try:
        out = fn()
        err = None
    except LIBRARY_ERRORS as e:
        out, err = None, type(e).__name__
    finally:
        signal.alarm(0)
    peak = tracemalloc.get_traced_memory()[1]
    assert peak <= multiple * size + SLACK, f"allocated {peak} bytes reading a {size}-byte file"
    return out, err


def _nbytes(obj) -> int:
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, rg.Tensor):
        return obj._array.nbytes
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def test_fuzz_safetensors_and_rg_load_files(tmp_path):
    rng = random.Random(1234)
    bases = _bases()
    outcomes, kinds = Counter(), Counter()
    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        for case in range(360):
            base = rng.choice(list(bases))
            kind, blob = mutate_safetensors(rng, bases[base])
            p = tmp_path / f"{case}.safetensors"
            p.write_bytes(blob)
            readers = {"load_safetensors": lambda: load_safetensors(p), "rg.load": lambda: rg.load(p),
                       "rg.load(stream)": lambda: rg.load(io.BytesIO(blob)),
                       "import_torch_state_dict": lambda: import_torch_state_dict(p)}
            for reader, fn in readers.items():
                try:
                    out, err = _run_case(fn, len(blob))
                except Exception as e:  # noqa: BLE001 - the point of the test
                    raise AssertionError(f"case {case} ({base}, {kind}) {reader}: {type(e).__name__}: {e}\n"
                                         f"file: {blob[:400]!r}") from e
                if err is None:
                    assert _nbytes(out) <= len(blob), f"case {case}: {reader} made more than the file holds"
                outcomes[err or "loaded"] += 1
            kinds[kind] += 1
            p.unlink()
    finally:
        tracemalloc.stop()
    print(f"{sum(kinds.values())} mutated files ({dict(kinds)}), outcomes {dict(outcomes)} in "
          f"{time.perf_counter() - t0:.1f} s")
    assert outcomes["SafetensorsFileError"] > 500 and outcomes["loaded"] > 30  # both paths were exercised


CHECKPOINT_FILES = ["model.safetensors", "optimizer.json", "optimizer.safetensors", "rng.json", "rng.safetensors",
                    "trainer.json", "config.json", "grads.safetensors"]


def mutate_checkpoint(rng: random.Random, folder, outside) -> str:
    """One edit of a checkpoint folder: a file damaged (with or without a manifest that agrees),
    the manifest's JSON edited, a listed entry pointed outside, or a stray file added."""
    kind = rng.choice(["flip", "truncate", "manifest", "manifest", "escape", "stray", "rehash-json",
                       "rehash-safetensors", "rehash-flip"])
    mpath = folder / "manifest.json"
    manifest = json.loads(mpath.read_text())
    target = folder / rng.choice(CHECKPOINT_FILES)
    if kind in ("flip", "rehash-flip"):
        b = bytearray(target.read_bytes())
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        target.write_bytes(bytes(b))
    elif kind == "truncate":
        target.write_bytes(target.read_bytes()[:rng.randrange(target.stat().st_size)])
    elif kind == "manifest":
        mpath.write_text(mutate_json(rng, manifest))
    elif kind == "escape":
        name = rng.choice(["../outside.bin", str(outside), "link.bin", "../../" + outside.name,
                           "sub/../../outside.bin"])
        if name == "link.bin":
            os.symlink(outside, folder / name)
        manifest["files"][name] = {"bytes": outside.stat().st_size, "sha256": "0" * 64}
        mpath.write_text(json.dumps(manifest))
    elif kind == "stray":
        from retrograd.io import save_safetensors
        save_safetensors({"0": np.full((4, 3), 1e3, np.float32)}, folder / "grads.safetensors")
        if rng.random() < 0.5:
            manifest["files"] = {}
            mpath.write_text(json.dumps(manifest))
    elif kind == "rehash-json":
        js = folder / rng.choice(["optimizer.json", "rng.json", "trainer.json"])
        js.write_text(mutate_json(rng, json.loads(js.read_text())))
    elif kind == "rehash-safetensors":
        st = folder / rng.choice(["model.safetensors", "optimizer.safetensors", "grads.safetensors"])
        st.write_bytes(mutate_safetensors(rng, st.read_bytes())[1])
    if kind.startswith("rehash"):
        rehash(folder)
    return kind


def test_fuzz_checkpoint_folders(tmp_path):
    rng = random.Random(4321)
    base = tmp_path / "base"
    trained_checkpoint(base, pending=True)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"o" * 54321)
    outcomes, kinds = Counter(), Counter()
    size = sum(f.stat().st_size for f in base.iterdir())
    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        for case in range(160):
            folder = tmp_path / "runs" / f"c{case}"
            shutil.copytree(base, folder)
            kind = mutate_checkpoint(rng, folder, outside)
            tr = small_trainer(seed=1)
            try:
                _, err = _run_case(lambda: tr.load_checkpoint(folder), size)
            except Exception as e:  # noqa: BLE001 - the point of the test
                raise AssertionError(f"case {case} ({kind}): {type(e).__name__}: {e}") from e
            if err is not None:
                assert "54321" not in str(err)
            outcomes[err or "loaded"] += 1
            kinds[kind] += 1
            if kind == "stray" and err is None:  # an unlisted grads file never becomes a gradient
                assert not np.any(tr.params[0].grad.numpy() == 1e3)
            shutil.rmtree(folder)
    finally:
        tracemalloc.stop()
    print(f"{sum(kinds.values())} mutated checkpoints ({dict(kinds)}), outcomes {dict(outcomes)} in "
          f"{time.perf_counter() - t0:.1f} s")
    assert outcomes["CheckpointError"] > 60 and outcomes["loaded"] > 5
