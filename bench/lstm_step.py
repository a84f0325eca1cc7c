"""In-process timings of the LSTM language-model step (``bench/programs/lstm_lm.py``) and of its
2-layer ``nn.LSTM`` alone (forward + backward at the same sizes), for one library per process:

    python bench/lstm_step.py --lib retrograd --threads 1
    python bench/lstm_step.py --lib torch --threads 2 --steps 30
    python bench/lstm_step.py --lib retrograd --src /path/to/other/tree/src   # A/B against another tree

Prints the median and minimum per step of wall time and of process CPU time (CPU time is the
steadier figure on a loaded machine: with 1 thread it excludes the time spent waiting for a core).
Run A and B alternately, several times; ``bench/users.py`` is the reference measurement.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _timed(fn, steps: int) -> tuple:
    wall, cpu = [], []
    for _ in range(steps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return [f"{statistics.median(v) * 1e3:.1f} ms (min {min(v) * 1e3:.1f})" for v in (wall, cpu)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", choices=["retrograd", "torch"], default="retrograd")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--src", default=os.path.join(os.path.dirname(HERE), "src"), help="retrograd's source tree")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RETROGRAD_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy loads OpenBLAS
    if args.lib == "retrograd":
        sys.path.insert(0, args.src)
        sys.path.insert(0, HERE)
        import users
        sys.meta_path.insert(0, users.TorchAsRetrograd())
    torch = __import__("torch")
    torch.set_num_threads(args.threads)
    path = os.path.join(HERE, "programs", "lstm_lm.py")
    ns = {"__name__": "__bench__", "__file__": path}
    sys.argv = [path]
    exec(compile(open(path).read(), path, "exec"), ns)
    lstm, x = ns["model"].rnn, torch.randn(ns["bptt"], ns["batch_size"], ns["emsize"], requires_grad=True)

    def layer() -> None:
        out, _ = lstm(x)
        out.sum().backward()
    for name, fn in (("LM step", ns["step"]), ("nn.LSTM fwd+bwd", layer)):
        for _ in range(3):
            fn()
        wall, cpu = _timed(fn, args.steps)
        print(f"{args.lib} threads={args.threads} {name}: wall {wall}, cpu {cpu}")


if __name__ == "__main__":
    main()
