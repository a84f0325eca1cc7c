"""Where a step's memory goes (issue 14's memory target), for the programs of bench/programs/.

    python bench/memory.py baseline                 # resident set after each import / the first kernel
    python bench/memory.py step gpt_tanh lstm_lm    # live bytes at backward start and peak in backward

``baseline``: VmRSS (and its anonymous / file-backed parts) of a fresh retrograd process after
``import numpy``, ``import retrograd``, the first op, ``import numba`` and the first compiled kernel.
``step``: for each workload (names as in bench/users.py), each library in its own process: the bytes
malloc has handed out (glibc's ``mallinfo2``, library-neutral) between steps, at the start of
``backward`` (the forward's saved tensors) and after it; for retrograd also tracemalloc's peak during
the step. Linux with glibc only.
"""
from __future__ import annotations

import ctypes
import gc
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import users  # noqa: E402

MiB = 1 << 20


def _status() -> str:
    with open("/proc/self/status") as f:
        d = {ln.split(":")[0]: int(ln.split()[1]) // 1024 for ln in f if ln.startswith(("VmRSS", "RssAnon", "RssFile"))}
    return f"RSS {d['VmRSS']} MiB (anon {d['RssAnon']}, file {d['RssFile']})"


def baseline() -> None:
    sys.path.insert(0, os.path.join(users.ROOT, "src"))  # this checkout's retrograd
    print(f"{'start':<34}{_status()}")
    import numpy as np
    print(f"{'import numpy':<34}{_status()}")
    import retrograd as rg
    print(f"{'import retrograd':<34}{_status()}  numba loaded: {'numba' in sys.modules}  ({rg.__file__})")
    (rg.randn(100, 100) * 2).sum()
    print(f"{'first op':<34}{_status()}")
    if not rg.accel.available():
        print("no Numba: nothing more to load")
        return
    print(f"{'import numba':<34}{_status()}  scipy.linalg loaded: {'scipy.linalg' in sys.modules}")
    opt = rg.optim.Adam([rg.nn.Parameter(rg.randn(1000))], fused=True)
    opt.param_groups[0]["params"][0].grad = rg.ones(1000)
    opt.step()
    print(f"{'first kernel (fused Adam)':<34}{_status()}  scipy.linalg loaded: {'scipy.linalg' in sys.modules}")
    del np


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def _malloc_live() -> int:
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    m = libc.mallinfo2()
    return m.uordblks + m.hblkhd


def step_child(lib: str, name: str) -> None:
    import tracemalloc
    if lib == "retrograd":
        sys.meta_path.insert(0, users.TorchAsRetrograd())
    torch = __import__("torch")
    spec = users.WORKLOADS[name]
    path = os.path.join(users.PROGRAMS, spec["program"])
    sys.argv = [path, *spec["args"]]
    ns = {"__name__": "__bench__", "__file__": path}
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), ns)
    for _ in range(3):
        ns["step"]()
    marks = []
    original = torch.Tensor.backward

    def backward(self, *a, **k):
        marks.append(_malloc_live())
        r = original(self, *a, **k)
        marks.append(_malloc_live())
        return r

    torch.Tensor.backward = backward
    gc.collect()
    if lib == "retrograd":  # NumPy reports its arrays to tracemalloc; PyTorch's allocator does not
        tracemalloc.start()
    before = _malloc_live()
    ns["step"]()
    traced = f", tracemalloc peak +{tracemalloc.get_traced_memory()[1] / MiB:.1f} MiB" if lib == "retrograd" else ""
    print(f"{name:<10} {lib:<9} malloc'd between steps {before / MiB:6.1f} MiB; at backward start "
          f"+{(marks[0] - before) / MiB:.1f}; after backward +{(marks[1] - before) / MiB:.1f}{traced}")


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "baseline":
        baseline()
    elif len(sys.argv) >= 4 and sys.argv[1] == "--child":
        step_child(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 3 and sys.argv[1] == "step":
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(users.ROOT, "src"),
                                                           *filter(None, [os.environ.get("PYTHONPATH")])]))
        for name in sys.argv[2:]:
            if name not in users.WORKLOADS or "program" not in users.WORKLOADS[name]:
                raise SystemExit(f"memory.py: error: unknown workload {name!r}")
            for lib in ("torch", "retrograd"):
                subprocess.run([sys.executable, __file__, "--child", lib, name], check=True, env=env)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
