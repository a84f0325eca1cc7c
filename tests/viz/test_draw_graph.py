"""rg.viz.draw_graph: the picture has the engine's nodes and edges, shapes on edges, gradient norms
equal to the ones backward computes, GPT blocks collapsed, and dot renders it."""
import re
import shutil

import numpy as np
import pytest

import retrograd as rg
from retrograd import nn
from retrograd.viz import draw_graph

graphviz = pytest.importorskip("graphviz", reason="draw_graph needs the graphviz package (the viz extra)")


def _mlp_loss():
    rg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x = rg.randn(5, 4)
    y = rg.tensor(np.array([0, 1, 2, 0, 1]))
    return model, nn.functional.cross_entropy(model(x), y)


def _engine_graph(t):
    """Op nodes and edges (including leaf edges) of the engine's graph behind ``t``."""
    nodes, leaves, edges = set(), set(), 0
    stack = [t.grad_fn]
    while stack:
        n = stack.pop()
        if n in nodes:
            continue
        nodes.add(n)
        for inp in n.inputs:
            if inp is None or not inp.requires_grad:
                continue
            edges += 1
            if inp.grad_fn is None:
                leaves.add(id(inp))
            else:
                stack.append(inp.grad_fn)
    return nodes, leaves, edges


def _node_lines(source):
    return [ln for ln in source.splitlines() if re.match(r"\s+\w+ \[label=", ln)]


def test_mlp_nodes_and_edges_match_the_engine_graph():
    model, loss = _mlp_loss()
    nodes, leaves, edges = _engine_graph(loss)
    src = draw_graph(loss, dict(model.named_parameters())).source
    assert len(nodes) == 4  # Linear, Tanh, Linear, CrossEntropy
    assert len(_node_lines(src)) == len(nodes) + len(leaves) + 1  # + the output
    assert src.count("->") == edges + 1
    for name, p in model.named_parameters():
        assert f"{name}\n{tuple(p.shape)} float32" in src
    assert "LinearBackward" in src and "TanhBackward" in src and "CrossEntropyBackward" in src
    # edges carry shapes: the logits and the hidden activation
    assert "(5, 3) float32" in src and "(5, 8) float32" in src
    # saved tensors: tanh keeps its result
    assert "saved: result (5, 8)" in src


def test_gradient_norms_match_backward():
    model, loss = _mlp_loss()
    loss.backward(retain_graph=True)
    before = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
    src = draw_graph(loss, dict(model.named_parameters()), show_grads=True).source
    for name, p in model.named_parameters():
        norm = float(np.linalg.norm(p.grad.numpy().astype(np.float64)))
        assert f"{name}\n{tuple(p.shape)} float32\n|grad|={norm:.3g}\"" in src, name
        np.testing.assert_array_equal(p.grad.numpy(), before[name])  # draw_graph did not accumulate


def test_edge_gradient_norm_is_the_intermediate_gradient():
    rg.manual_seed(1)
    w = rg.randn(3, 4, requires_grad=True)
    x = rg.randn(2, 3)
    h = (x @ w).tanh()
    h.retain_grad()
    loss = (h * h).sum() * 0.5 + h.sum()
    loss.backward(retain_graph=True)
    norm = float(np.linalg.norm(h.grad.numpy().astype(np.float64)))
    src = draw_graph(loss, {"w": w}, show_grads=True).source
    assert f"(2, 4) float32\n|grad|={norm:.3g}\"" in src
    assert norm > 0


def test_gpt_blocks_collapse():
    from retrograd.models import GPT
    rg.manual_seed(0)
    m = GPT(vocab_size=11, block_size=8, n_layer=2, n_head=2, d_model=16)
    out = m(rg.tensor(np.random.default_rng(0).integers(0, 11, (2, 8)))).sum()
    params = dict(m.named_parameters())
    full = draw_graph(out, params, collapse=False).source
    short = draw_graph(out, params, show_grads=True).source
    nodes, leaves, _ = _engine_graph(out)
    assert len(_node_lines(full)) == len(nodes) + len(leaves) + 1
    block_ops = sum(1 for n in nodes if "LinearBackward" == n.name()) - 1  # the head's is outside
    assert block_ops == 2 * 4
    assert "(x 2)" in short and "(x 2)" not in full
    assert len(_node_lines(short)) < len(_node_lines(full))
    # exactly one block's worth fewer: its ops and its parameters (outside the blocks: two embeddings,
    # their sum, the final LayerNorm, the head and the sum)
    ops_per_block = (len(nodes) - 6) // 2
    assert ops_per_block == 21  # LayerNorm, qkv, 3x(index, reshape, permute), attention, ..., 2 adds
    params_per_block = sum(1 for n in params if n.startswith("blocks.1."))
    assert len(_node_lines(full)) - len(_node_lines(short)) == ops_per_block + params_per_block
    assert "blocks.*.attn.qkv.weight" in short and "blocks.1.attn" not in short


def test_renders_svg_and_png():
    if shutil.which("dot") is None:
        pytest.skip("graphviz's dot program is not installed (apt-get install graphviz)")
    model, loss = _mlp_loss()
    d = draw_graph(loss, dict(model.named_parameters()))
    svg = d.pipe(format="svg")
    assert b"<svg" in svg and b"LinearBackward" in svg
    assert d.pipe(format="png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert "image/svg+xml" in d._repr_mimebundle_()


def test_errors():
    model, loss = _mlp_loss()
    with pytest.raises(ValueError, match="format must be one of svg"):
        draw_graph(loss, format="gif")
    with pytest.raises(ValueError, match="no autograd graph: it is a leaf"):
        draw_graph(rg.randn(3, requires_grad=True))
    with pytest.raises(ValueError, match="does not require grad"):
        draw_graph(rg.randn(3))
    with pytest.raises(TypeError, match="expected a retrograd Tensor"):
        draw_graph(np.ones(3))
    with pytest.raises(TypeError, match="params must be a mapping"):
        draw_graph(loss, list(model.parameters()))
    loss.backward()
    with pytest.raises(RuntimeError, match="freed by an earlier backward"):
        draw_graph(loss)
