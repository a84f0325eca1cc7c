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
# # 3. Optimizers
#
# Backprop gives the gradient $g = \nabla_\theta L$; the optimizer decides what step to take with it. The
# five optimizers here differ only in that decision, and the differences are easiest to see in two
# dimensions, where a path can be drawn.
#
# **What you will see**
#
# 1. The update equations of SGD, SGD with momentum, Nesterov momentum, Adam and AdamW, in the exact form
#    `rg.optim` (and PyTorch) implements them.
# 2. Their trajectories on the **Rosenbrock function**, a curved narrow valley, drawn on its contour map, and
#    the loss against the step.
# 3. The same five optimizers training a network on **Fashion-MNIST** with `retrograd compare`, which trains
#    one model per optimizer from the *same initial weights* on the *same batches*, so the curves differ only
#    by the optimizer.
#
# *Running time.* With `RETROGRAD_DOCS_SHORT=1` (as in CI) the Rosenbrock runs are shorter and Fashion-MNIST uses
# 6,000 training images for 4 epochs. The full-length run (5,000 Rosenbrock steps; 54,000 images, 10 epochs)
# took **FULL_TIME** (measured with `nice -n 10`, see the last cell).

# %%
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

import retrograd as rg

SHORT = os.environ.get("RETROGRAD_DOCS_SHORT") == "1"
T_START = time.perf_counter()
ROSEN_STEPS = 1500 if SHORT else 5000

# %% [markdown]
# ## The update rules
#
# For a parameter $\theta$ with gradient $g_t$ at step $t$ and learning rate $\eta$:
#
# | optimizer | update | `rg.optim` |
# |---|---|---|
# | SGD | $\theta \leftarrow \theta - \eta\, g_t$ | `SGD(params, lr)` |
# | momentum | $v \leftarrow \mu v + g_t,\quad \theta \leftarrow \theta - \eta\, v$ | `SGD(params, lr, momentum=0.9)` |
# | Nesterov | $v \leftarrow \mu v + g_t,\quad \theta \leftarrow \theta - \eta\,(g_t + \mu v)$ | `SGD(..., momentum=0.9, nesterov=True)` |
# | Adam | $m \leftarrow \beta_1 m + (1-\beta_1) g_t,\ \ s \leftarrow \beta_2 s + (1-\beta_2) g_t^2,\ \ \theta \leftarrow \theta - \eta\,\dfrac{m/(1-\beta_1^t)}{\sqrt{s/(1-\beta_2^t)} + \epsilon}$ | `Adam(params, lr)` |
# | AdamW | Adam's step, plus $\theta \leftarrow \theta - \eta\lambda\theta$ applied to the weights directly | `AdamW(params, lr, weight_decay=λ)` |
#
# Momentum accumulates past gradients, so steps grow along a direction the gradient keeps pointing to and
# cancel across one where it flips sign. Nesterov evaluates the momentum step one step ahead, which damps
# overshooting. Adam divides each coordinate by a running root-mean-square of its gradients: every coordinate
# moves about $\eta$ per step whatever the scale of its gradient. AdamW's weight decay is *decoupled*: it
# shrinks the weights by a fixed fraction per step instead of adding $\lambda\theta$ to the gradient (which
# Adam's division would rescale).

# %% [markdown]
# ## The Rosenbrock valley
#
# $$ f(x, y) = (1 - x)^2 + 100\,(y - x^2)^2 $$
#
# has its minimum $f = 0$ at $(1, 1)$, at the end of a long, curved, flat-bottomed valley. Across the valley the
# curvature is about $200$ to $2000$, along it about $1$: a condition number in the thousands, the situation
# that makes plain gradient descent slow, and a miniature of what a network's loss looks like near the bottom.
# Each optimizer starts at $(-1.5, 2)$ and runs the same number of steps; each learning rate is about the
# largest that stays stable for that optimizer here (try larger ones in the exercises).

# %%
def rosenbrock(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


OPTIMIZERS = {
    "SGD, lr 1e-3": lambda ps: rg.optim.SGD(ps, lr=1e-3),
    "momentum 0.9, lr 1e-3": lambda ps: rg.optim.SGD(ps, lr=1e-3, momentum=0.9),
    "Nesterov 0.9, lr 1e-3": lambda ps: rg.optim.SGD(ps, lr=1e-3, momentum=0.9, nesterov=True),
    "Adam, lr 0.05": lambda ps: rg.optim.Adam(ps, lr=0.05),
    "AdamW, lr 0.05, weight decay 0.1": lambda ps: rg.optim.AdamW(ps, lr=0.05, weight_decay=0.1),
}
START = (-1.5, 2.0)
paths, losses = {}, {}
for name, make in OPTIMIZERS.items():
    p = rg.tensor(np.array(START), requires_grad=True)
    opt = make([p])
    path, values = [p.detach().numpy().copy()], []
    for _ in range(ROSEN_STEPS):
        opt.zero_grad()
        loss = rosenbrock(p)
        loss.backward()
        opt.step()
        values.append(loss.item())
        path.append(p.detach().numpy().copy())
    paths[name], losses[name] = np.array(path), np.array(values)
    first = next((i + 1 for i, v in enumerate(values) if v < 1e-3), None)
    print(f"{name:<34} ends at ({path[-1][0]:.4f}, {path[-1][1]:.4f}), f = {values[-1]:.2e}, "
          f"f < 1e-3 first at step {first if first else '-'}")

# %%
xs, ys = np.meshgrid(np.linspace(-2, 2, 400), np.linspace(-1, 3, 400))
fs = (1 - xs) ** 2 + 100 * (ys - xs ** 2) ** 2
MARKS = [m for m in (10, 100, 1000) if m < ROSEN_STEPS]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.6), layout="constrained")
cs = ax1.contourf(xs, ys, np.log10(fs + 1e-3), levels=24, cmap="Greys", alpha=0.45)
ax1.contour(xs, ys, np.log10(fs + 1e-3), levels=12, colors="grey", linewidths=0.4)
fig.colorbar(cs, ax=ax1, label="log10 f(x, y)")
for i, (name, path) in enumerate(paths.items()):
    ax1.plot(path[:, 0], path[:, 1], "-", color=f"C{i}", lw=1.3, label=name)
    for m, marker in zip(MARKS, "sDo"):
        ax1.plot(path[m, 0], path[m, 1], marker, color=f"C{i}", mec="k", mew=0.5, ms=6)
ax1.plot(*START, "k^", ms=9, label="start (-1.5, 2)")
ax1.plot(1, 1, "*", color="gold", mec="k", ms=15, label="minimum (1, 1)")
for m, marker in zip(MARKS, "sDo"):
    ax1.plot([], [], marker, color="white", mec="k", label=f"position after {m} steps")
ax1.set_xlim(-2, 2)
ax1.set_ylim(-1, 3)
ax1.set_xlabel("x")
ax1.set_ylabel("y")
ax1.set_title(f"Rosenbrock: paths of {ROSEN_STEPS} steps")
ax1.legend(fontsize=7.5, loc="lower right")
for i, (name, v) in enumerate(losses.items()):
    ax2.plot(np.arange(1, len(v) + 1), v, color=f"C{i}", label=name)
ax2.set_xscale("log")
ax2.set_yscale("log")
ax2.set_xlabel("step (log scale)")
ax2.set_ylabel("f(x, y) (log scale)")
ax2.set_title("Loss against step")
ax2.legend(fontsize=8)
plt.show()

# %% [markdown]
# What to read from it:
#
# * **SGD** drops into the valley within a few steps (the steep direction), then crawls along its floor: the
#   step that is stable across the valley is tiny along it.
# * **Momentum** and **Nesterov** build up speed along the floor and reach the minimum far sooner. At this
#   learning rate both bounce off the steep walls in the first steps (Nesterov's first jumps are the widest,
#   the loss spikes to about 300), and then follow the floor faster than anything else.
# * **Adam** normalises each coordinate, so it takes steps of about $\eta$ in $x$ and $y$ alike, whatever the
#   curvature; it zig-zags at first, then follows the valley quickly.
# * **AdamW** follows Adam but stops short of $(1, 1)$: its decoupled decay shrinks $(x, y)$ toward the origin
#   by $\eta\lambda$ of their value every step, and it rests where that pull balances Adam's normalised step.
#   On a network, this is the regularisation you asked for; on Rosenbrock it shows that AdamW minimises
#   something other than $f$ alone.

# %% [markdown]
# ## Fashion-MNIST with `retrograd compare`
#
# `retrograd compare CONFIG --optimizers a,b,c` trains the config's model once per optimizer. Each run starts
# from the same initial weights (the config's seed) and sees the same batches in the same order; only the
# optimizer (and its learning rate) changes. It writes a folder with one run per optimizer, a table
# (`comparison.md`), the histories (`comparison.json`) and a plot. Optimizers the config does not configure get
# `compare`'s default learning rates: SGD 0.05, momentum and Nesterov 0.01, Adam and AdamW 0.001 (AdamW with
# PyTorch's default weight decay 0.01).
#
# The model is a 784-128-10 MLP with ReLU on the 28x28 clothing images (10 classes), batch size 128, the images
# read from Debian's `dataset-fashion-mnist` package.

# %%
EPOCHS = 4 if SHORT else 10
workdir = pathlib.Path(tempfile.mkdtemp(prefix="retrograd-compare-"))
subset = "train_samples = 6000\nval_samples = 2000\n" if SHORT else ""
(workdir / "fashion.toml").write_text(f"""
[model]
name = "mlp"
sizes = [784, 128, 10]
activation = "relu"

[data]
name = "fashion_mnist"
batch_size = 128
val_fraction = 0.1
{subset}
[optim]
name = "sgd"
lr = 0.05

[train]
epochs = {EPOCHS}
seed = 0

[run]
dir = "{workdir / 'runs'}"
""")
cmd = [sys.executable, "-m", "retrograd", "compare", str(workdir / "fashion.toml"),
       "--optimizers", "sgd,momentum,nesterov,adam,adamw", "--quiet", "--timed-steps", "0"]
print("$ retrograd compare fashion.toml --optimizers sgd,momentum,nesterov,adam,adamw --quiet --timed-steps 0")
done = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
print(done.stdout[-3000:])
if done.returncode:
    raise RuntimeError(f"retrograd compare failed:\n{done.stderr[-3000:]}")

# %%
result = json.loads(next((workdir / "runs").glob("*-compare/comparison.json")).read_text())
shutil.rmtree(workdir)  # the run folders were only for this page
histories = result["histories"]
fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
panels = (("train_loss", "training loss (mean cross-entropy, nats)"),
          ("val_loss", "validation loss (mean cross-entropy, nats)"),
          ("val_accuracy", "validation accuracy (fraction right)"))
for ax, (key, label) in zip(axes, panels):
    for i, (name, h) in enumerate(histories.items()):
        lr = next(r["lr"] for r in result["rows"] if r["optimizer"] == name)
        ax.plot(np.arange(1, len(h[key]) + 1), h[key], "o-", color=f"C{i}", label=f"{name} (lr {lr:g})")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(label)
    ax.set_title(label.split(" (")[0].capitalize() + " per epoch")
    ax.legend(fontsize=8)
fig.suptitle(f"Fashion-MNIST, 784-128-10 MLP, same initial weights and batches for every optimizer "
             f"({'6,000' if SHORT else '54,000'} training images)")
plt.show()

# %% [markdown]
# With these learning rates the adaptive methods lead early: Adam and AdamW reach in one epoch what SGD reaches
# in several. The comparison is only as fair as the learning rates, though: `compare` takes a `--lr
# name=value,...` option, and a fair contest tunes each optimizer's rate (tutorial 6 does that with a search).
# Adam and AdamW are nearly the same here: with a weight decay of 0.01 for a few epochs, the decay has barely
# acted yet.
#
# ## Exercises
#
# 1. On Rosenbrock, raise SGD's learning rate to $2\times10^{-3}$, then $3\times10^{-3}$. What happens, and why
#    does the largest curvature ($\approx 2000$ at the start) set the limit $\eta < 2/2000$?
# 2. Give momentum $\mu = 0.99$. Does it reach the minimum sooner? Plot the path.
# 3. Run AdamW on Rosenbrock with weight decay $0.01$ and $1$. Where does it stop? Compare with Adam with
#    `weight_decay` (L2 added to the gradient), whose rest point differs: explain why.
# 4. Re-run the Fashion-MNIST comparison with `--lr sgd=0.2,momentum=0.05,nesterov=0.05,adam=0.003,adamw=0.003`.
#    Does the ranking survive?
# 5. Add `rmsprop` and `lion` to `--optimizers` (see `retrograd compare --help`).

# %%
print(f"this page ran in {time.perf_counter() - T_START:.1f} s ({'short' if SHORT else 'full'} form, "
      f"load average {os.getloadavg()[0]:.1f})")
