"""retrograd.flat: parameters as views of one buffer, gradients written into its
twin by backward, rebound parameters taken back, version counters bumped."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import retrograd as rg
import retrograd.flat as flat_module
from retrograd.flat import FlatParams, mark_modified


def _params():
    rng = np.random.default_rng(0)
    return [rg.tensor(rng.standard_normal(s), requires_grad=True) for s in ((2, 3), (3,), (1,))]


def test_attach_makes_views_of_one_buffer_per_dtype():
    ps = _params()
    half = rg.tensor(np.ones(4, np.float32), requires_grad=True)
    values = [p.detach().numpy().copy() for p in ps]
    f64, f32 = FlatParams.attach([ps[0], half, ps[1], ps[2]])
    assert f64.params == ps and f32.params == [half] and f32.dtype == np.float32
    assert f64.offsets.tolist() == [0, 6, 9, 10] and f64.data.shape == (10,)
    for i, (p, v) in enumerate(zip(ps, values)):
        assert p._array is f64.views[i] and np.shares_memory(p.numpy() if not p.requires_grad else p.detach().numpy(), f64.data)
        np.testing.assert_array_equal(p.data, v)
        np.testing.assert_array_equal(f64.data[f64.segment(i)], v.ravel())
        assert p._gslot is f64.grad_slot(i)
    with pytest.raises(ValueError, match="parameters of one dtype expected, got float64"):
        FlatParams([rg.tensor(np.ones(2)), rg.tensor(np.ones(2, np.float32))])


def test_backward_writes_into_the_gradient_buffer_and_sync_reports_who_has_one():
    ps = _params()
    flat = FlatParams(ps)
    ((ps[0] * 2).sum() + ps[1].sum()).backward()
    assert ps[0].grad._array is flat.grad_slot(0) and ps[2].grad is None
    np.testing.assert_array_equal(flat.grad, [2] * 6 + [1] * 3 + [0])
    versions = [p._vc[0] for p in ps]
    has = flat.sync("test")
    assert has.tolist() == [True, True, False]
    assert [p._vc[0] - v for p, v in zip(ps, versions)] == [1, 1, 0]  # only those the step updates
    ps[2].grad = rg.tensor(np.array([5.0]))
    assert flat.sync("test") is None
    np.testing.assert_array_equal(flat.grad[flat.segment(2)], [5.0])


def test_rebound_data_and_assigned_gradients_are_taken_back():
    ps = _params()
    flat = FlatParams(ps)
    ps[1].data = rg.tensor(np.full(3, 7.0))
    ps[0].grad = rg.tensor(np.ones((2, 3)))
    g = flat.sync_grads("test")
    assert g is flat.grad and ps[1]._array is flat.views[1]
    np.testing.assert_array_equal(flat.data[flat.segment(1)], 7.0)
    assert ps[0].grad._array is flat.grad_slot(0) and ps[1].grad is None
    np.testing.assert_array_equal(g, [1] * 6 + [0] * 4)
    ps[2].data = rg.zeros(2, dtype=rg.float64)
    with pytest.raises(RuntimeError, match=r"test: parameter 2 of its group changed shape from \(1,\) to \(2,\)"):
        flat.retake_rebound("test")


def test_mark_modified_bumps_version_counters():
    ps = _params()
    flat = FlatParams(ps)
    before = [p._vc[0] for p in ps]
    flat.mark_modified()
    mark_modified(ps[:1])
    assert [p._vc[0] - b for p, b in zip(ps, before)] == [2, 1, 1]


_TAKE_OVER = r"""
import sys
import numpy as np
import retrograd as rg
import retrograd.flat as flat
if sys.argv[1] == "off":
    flat.TRIM_BYTES = 1 << 62  # the take-over without giving the freed storage back
def anon():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("RssAnon:")) * 1024
ps = [rg.nn.Parameter(rg.randn(1 << 18)) for _ in range(24)]  # 24 MiB in 1 MiB arrays, as a user makes them
for p in ps:
    p.grad = rg.randn(1 << 18) * 1e-3  # and 24 MiB of gradients
pins = [bytearray(4096) for _ in range(2048)]  # later allocations (an import): some at the top of the heap
before = anon()
f = flat.FlatParams(ps)
print((anon() - before) / (48 << 20))  # per byte taken over
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status (Linux only)")
def test_the_parameters_old_storage_goes_back_to_the_system():
    # FlatParams copies 24 MiB of parameters and 24 MiB of gradients into its buffers; the old 1 MiB arrays
    # were heap memory below the heap's top, which glibc keeps resident: without give_back_heap the resident
    # set grows by all 48 MiB, with it the old pages go back and it stays where it was
    grown = {}
    for mode in ("on", "off"):
        r = subprocess.run([sys.executable, "-c", _TAKE_OVER, mode], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert r.returncode == 0, r.stderr
        grown[mode] = float(r.stdout.split()[-1])
    assert grown["off"] > 0.8  # the new buffers and the old arrays, both resident
    assert grown["on"] < 0.3  # the new buffers in place of the old arrays
    assert flat_module.give_back_heap() is True
