"""Issue 11's "Done when": small PyTorch-style programs run with retrograd imported in place of torch
and compute PyTorch's numbers in float64. The harness (``harness.py``) ports the imports, routes both
libraries' random draws through one NumPy stream and compares everything the programs computed."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import retrograd as rg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

PROGRAMS = ["manual_sgd.py", "nanogpt.py", "mnist.py", "vae.py", "dcgan.py"]
WALL_CLOCK = ("t0", "t1", "dt")  # nanoGPT's timing globals


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_matches_torch(name):
    summary = harness.check_program(harness.HERE / name, ignore=WALL_CLOCK)
    # each program records losses through .item() and leaves models and tensors behind
    assert summary["items"] >= 10 and len(summary["globals"]) >= 5
    print(f"{name}: {summary['items']} .item() values, {len(summary['globals'])} globals, "
          f"files {summary['files']}, worst relative difference {summary['worst_rel']:.2g}")


def test_a_run_leaves_process_settings_as_it_found_them():
    # nanoGPT sets allow_tf32 (in torch that also moves the float32 matmul precision), DCGAN cudnn.benchmark
    before = [(lib.get_default_dtype(), lib.get_float32_matmul_precision(), lib.backends.cuda.matmul.allow_tf32,
               lib.backends.cudnn.allow_tf32, lib.backends.cudnn.benchmark) for lib in (torch, rg)]
    threads = torch.get_num_threads()
    for lib in ("torch", "retrograd"):
        harness.run(harness.HERE / "nanogpt.py", lib)
        harness.run(harness.HERE / "dcgan.py", lib)
    after = [(lib.get_default_dtype(), lib.get_float32_matmul_precision(), lib.backends.cuda.matmul.allow_tf32,
              lib.backends.cudnn.allow_tf32, lib.backends.cudnn.benchmark) for lib in (torch, rg)]
    assert after == before and torch.get_num_threads() == threads


def test_port_changes_only_the_import_lines():
    for name in PROGRAMS:
        src = (harness.HERE / name).read_text()
        ported = harness.port(src)
        changed = [(a, b) for a, b in zip(src.splitlines(), ported.splitlines()) if a != b]
        assert len(src.splitlines()) == len(ported.splitlines())
        assert changed and all(a.lstrip().startswith(("import torch", "from torch")) for a, _ in changed)
    assert harness.port("import torch\nimport torch.nn as nn\nfrom torch.nn import functional as F\n"
                        "from torch.optim.lr_scheduler import StepLR\nx = torch.ones(1)  # torch\n") == (
        "import retrograd as torch\nimport retrograd.nn as nn\nfrom retrograd.nn import functional as F\n"
        "from retrograd.optim.lr_scheduler import StepLR\nx = torch.ones(1)  # torch\n")
    with pytest.raises(ValueError, match="already mentions retrograd"):
        harness.port("import retrograd as torch\n")


def _draws(lib):
    """Every bridged kind of draw, in one fixed order, as NumPy arrays."""
    lib.manual_seed(3)
    out = [lib.randn(2, 3), lib.rand(4), lib.randint(0, 10, (5,)), lib.randint(7, (3,)), lib.randperm(6),
           lib.randn_like(lib.zeros(2, 2)), lib.rand_like(lib.zeros(3)),
           lib.multinomial(lib.tensor([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]]), 2),
           lib.bernoulli(lib.full((6,), 0.5)),
           lib.empty(3, 2).uniform_(-1, 2), lib.empty(4).normal_(1.0, 0.5),
           lib.nn.functional.dropout(lib.ones(8), p=0.5, training=True),
           lib.randperm(5, generator=lib.Generator().manual_seed(11))]
    loader = lib.utils.data.DataLoader(lib.utils.data.TensorDataset(lib.arange(10)), batch_size=4, shuffle=True)
    out += [b[0] for epoch in range(2) for b in loader]
    return [np.asarray(t.detach().numpy(), dtype=np.float64) for t in out]


def test_bridge_gives_both_libraries_the_same_random_numbers():
    torch.set_default_dtype(torch.float64)
    rg.set_default_dtype(rg.float64)
    try:
        with harness.bridge("torch", 0):
            a = _draws(torch)
        with harness.bridge("retrograd", 0):
            b = _draws(rg)
    finally:
        torch.set_default_dtype(torch.float32)
        rg.set_default_dtype(rg.float32)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], _draws_seed(4)[0])  # the seed matters


def _draws_seed(seed):
    with harness.bridge("retrograd", seed):
        return [rg.randn(2, 3).numpy()]


def _models(lib):
    nn = lib.nn
    lib.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ConvTranspose2d(3, 2, 4, 2, 1), nn.Flatten(),
                      nn.Linear(8, 5), nn.LayerNorm(5), nn.Embedding(7, 5), nn.GRU(5, 4))
    nn.init.normal_(m[0].weight, 0.0, 0.02)
    nn.init.xavier_uniform_(m[4].weight)
    nn.init.kaiming_normal_(m[2].weight)
    return {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}


def test_bridge_initialises_the_same_model_identically():
    with harness.bridge("torch", 0):
        a = _models(torch)
    with harness.bridge("retrograd", 0):
        b = _models(rg)
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=0, err_msg=k)  # float32 conversions agree


def test_bridge_restores_everything():
    randn, uniform_, seed = torch.randn, torch.Tensor.uniform_, torch.manual_seed
    torch.manual_seed(5)
    torch_state = torch.get_rng_state()
    rg.manual_seed(5)
    rg_state = rg.random.get_rng_state()
    with harness.bridge("torch", 1):
        assert torch.randn is not randn
        torch.randn(3)
    with harness.bridge("retrograd", 1):
        rg.randn(3)
    assert torch.randn is randn and torch.Tensor.uniform_ is uniform_ and torch.manual_seed is seed
    assert "uniform_" not in torch.Tensor.__dict__
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert rg.random.get_rng_state()["bit_generator"] == rg_state["bit_generator"]


def test_bridge_refuses_a_draw_it_does_not_route():
    with pytest.raises(harness.UnbridgedDraw, match="not bridged"):
        with harness.bridge("torch", 0):
            torch.normal(0.0, 1.0, (3,))  # torch.normal is not bridged: it draws from torch's mt19937
    with pytest.raises(harness.UnbridgedDraw, match="random_"):
        with harness.bridge("torch", 0):
            torch.empty(3).random_(0, 5)


def test_harness_reports_a_difference(tmp_path):
    prog = tmp_path / "differs.py"
    prog.write_text(textwrap.dedent("""
        import torch
        scale = 2.0 if torch.__name__ == "torch" else 2.0 + 1e-9
        w = torch.ones(3) * scale
        print("loss", (w * w).sum().item())
    """))
    with pytest.raises(AssertionError, match=r"globals\.w: differ"):
        harness.check_program(prog)
    same = tmp_path / "same.py"
    same.write_text("import torch\nw = torch.randn(3)\nprint(w.sum().item())\n")
    assert harness.check_program(same)["items"] == 1


def test_compare_text_allows_one_unit_in_the_last_printed_digit():
    assert harness.compare_text("loss 0.1235 ok\n", "loss 0.1234 ok\n", 1e-10) == []
    assert harness.compare_text("loss 0.1236\n", "loss 0.1234\n", 1e-10) != []
    assert harness.compare_text("loss 0.1234 ok\n", "loss 0.1234 no\n", 1e-10) != []
    assert harness.compare_text("a 1.0000000000001e-3\n", "a 1.0000000000002e-3\n", 1e-10) == []
