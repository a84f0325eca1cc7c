"""The graph pictures of the engine page (docs/contributing/engine.md), drawn at every site build by
``rg.viz.draw_graph``. The page shows the code between the ``--8<--`` markers (pymdownx.snippets),
so the code on the page is the code that drew each picture.

Without ``retrograd.viz`` in the checkout (it lands with the tutorials' branch) each picture is a
placeholder that says so, and the build log notes it.
"""
from __future__ import annotations

import importlib.util

NAMES = ("mlp_forward", "mlp_backward", "gpt_collapsed")


def _mlp_forward():
    # --8<-- [start:mlp]
    import retrograd as rg
    import retrograd.nn as nn
    import retrograd.nn.functional as F
    from retrograd.viz import draw_graph

    rg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = rg.randn(16, 4), rg.randint(0, 3, (16,))
    loss = F.cross_entropy(model(x), y)
    params = dict(model.named_parameters())
    before = draw_graph(loss, params=params)                   # ops, shapes, saved tensors
    loss.backward(retain_graph=True)                           # keep the graph alive to draw it again
    after = draw_graph(loss, params=params, show_grads=True)   # + the gradient norm on each edge
    # --8<-- [end:mlp]
    return before, after


def _gpt():
    # --8<-- [start:gpt]
    import retrograd as rg
    import retrograd.nn.functional as F
    from retrograd.models import GPT
    from retrograd.viz import draw_graph

    rg.manual_seed(0)
    gpt = GPT(vocab_size=32, block_size=16, n_layer=4, n_head=2, d_model=32)
    tokens = rg.randint(0, 32, (2, 16))
    logits = gpt(tokens)
    loss = F.cross_entropy(logits.reshape(-1, 32), tokens.reshape(-1))
    picture = draw_graph(loss, params=dict(gpt.named_parameters()), collapse=True)  # 4 blocks -> 1 box
    # --8<-- [end:gpt]
    return picture


def _placeholder(name: str) -> str:
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="560" height="60" viewBox="0 0 560 60">'
            '<rect x="1" y="1" width="558" height="58" fill="#f4f4f4" stroke="#999"/>'
            f'<text x="12" y="35" font-family="sans-serif" font-size="14">{name}: drawn by rg.viz.draw_graph, '
            'which this build does not have yet</text></svg>')


def available() -> bool:
    return importlib.util.find_spec("retrograd.viz") is not None


def figures(log=print) -> dict[str, str]:
    """name -> SVG text of each picture of the engine page."""
    if not available():
        log("engine page: retrograd.viz is not in this checkout; its graph pictures are placeholders")
        return {name: _placeholder(name) for name in NAMES}
    before, after = _mlp_forward()
    pictures = {"mlp_forward": before, "mlp_backward": after, "gpt_collapsed": _gpt()}
    return {name: g.pipe(format="svg").decode("utf-8") for name, g in pictures.items()}
