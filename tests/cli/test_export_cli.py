"""`retrograd export RUN --format onnx [--quantize int8]`: the file onnxruntime runs gives the run's
model outputs (float32: to 1e-5, on other batch sizes and sequence lengths than the export's
example; int8: close, and the same predicted classes on most rows), and it is smaller quantised."""
import numpy as np
import pytest
from cli_helpers import DIGITS_MLP, TINY_GPT

import retrograd as rg

ort = pytest.importorskip("onnxruntime", reason="the export extra (onnxruntime) is not installed")
onnx = pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from retrograd import cli
    root = tmp_path_factory.mktemp("export")
    for name, text in (("digits", DIGITS_MLP), ("gpt", TINY_GPT)):
        (root / f"{name}.toml").write_text(text + f'\n[run]\ndir = "{(root / "runs").as_posix()}"\n')
        assert cli.main(["train", str(root / f"{name}.toml"), "--quiet"]) == 0
    return root / "runs"


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_export_a_classifier_float_and_int8(runs, run_cli):
    run = runs / "digits"
    rc, out, err = run_cli("export", run)
    assert rc == 0, err
    assert f"wrote {run / 'model.onnx'}" in out and "max |diff|" in out
    rc, out, err = run_cli("export", run, "--quantize", "int8", "--checkpoint", "last")
    assert rc == 0 and err == "", err
    f32, i8 = run / "model.onnx", run / "model.int8.onnx"
    onnx.checker.check_model(onnx.load(f32), full_check=True)
    onnx.checker.check_model(onnx.load(i8))
    assert "MatMulInteger" in {n.op_type for n in onnx.load(i8).graph.node}
    loaded = rg.train.load_run(run)
    x = np.random.default_rng(0).standard_normal((37, 64)).astype(np.float32)
    ref = loaded.outputs(x)
    np.testing.assert_allclose(_session(f32).run(None, {"input": x})[0], ref, rtol=1e-5, atol=1e-5)
    q = _session(i8).run(None, {"input": x})[0]
    assert np.abs(q - ref).max() < 0.2 and (q.argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_export_a_language_model_with_dynamic_sequence_length(runs, run_cli, tmp_path):
    out_path = tmp_path / "sub" / "gpt.onnx"
    rc, out, err = run_cli("export", runs / "gpt", "-o", out_path, "--opset", "20")
    assert rc == 0, err
    assert "dynamic batch and sequence axes" in out
    loaded = rg.train.load_run(runs / "gpt")
    sess = _session(out_path)
    for shape in ((1, 1), (4, 8), (2, 3)):  # block_size 8
        ids = np.random.default_rng(1).integers(0, loaded.model.vocab_size, shape).astype(np.int64)
        with rg.no_grad():
            ref = loaded.model(rg.tensor(ids)).numpy()
        np.testing.assert_allclose(sess.run(None, {"input": ids})[0], ref, rtol=1e-5, atol=1e-5)
    assert "Gelu" in {n.op_type for n in onnx.load(out_path).graph.node}
