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
# # 4. Vanishing and exploding gradients
#
# In a deep network the gradient that reaches the first layer is a product of one Jacobian per layer. A product
# of many factors a little below one vanishes; a little above one, it explodes. This tutorial measures that
# product in a 16-layer network and shows the four classical remedies at work: ReLU, He initialisation, batch
# normalisation and residual connections.
#
# **What you will see**
#
# 1. Why the backward pass multiplies by $W^\top$ and $\sigma'$ once per layer, and why a sigmoid network's
#    gradient shrinks by at least $4\times$ per layer.
# 2. The gradient norm of each layer at initialisation for six 16-layer networks (sigmoid; ReLU with PyTorch's
#    default init, with He init, with twice He's scale; ReLU + BatchNorm; residual blocks): a range of 20 orders
#    of magnitude.
# 3. The same networks trained on Fashion-MNIST with the `GradientFlow` callback: heatmaps of every layer's
#    gradient norm and update size over training, and the verdicts `GradientFlow` prints about them.
#
# *Running time.* With `RETROGRAD_DOCS_SHORT=1` (as in CI) the networks train on 4,000 images for 3 epochs. The
# full-length run (20,000 images, 8 epochs) took **3 min (178 s)** of wall-clock time for the whole script on 2 CPU cores shared with other jobs
# (load average 29; run with `nice -n 10` and `OPENBLAS_NUM_THREADS=1`, 6 December 2026). The last cell
# prints the time of the run you are reading.

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

import retrograd as rg
from retrograd import nn
from retrograd.data.images import fashion_mnist_pixels, scale_pixels
from retrograd.train import GradientFlow, Trainer
from retrograd.train.plots import gradient_flow_figure

SHORT = os.environ.get("RETROGRAD_DOCS_SHORT") == "1"
T_START = time.perf_counter()
N_TRAIN, N_VAL, EPOCHS = (4000, 1000, 3) if SHORT else (20000, 5000, 8)
DEPTH, WIDTH = 16, 64

pixels, labels = fashion_mnist_pixels("train")
order = np.random.default_rng(0).permutation(len(labels))[:N_TRAIN + N_VAL]
X = scale_pixels(pixels[order]).reshape(-1, 784)
Y = labels[order]
print(f"{N_TRAIN} training and {N_VAL} validation images of 28x28 pixels, 10 classes")

# %% [markdown]
# ## The product of Jacobians
#
# Take a plain deep network $h_l = \sigma(z_l)$, $z_l = W_l h_{l-1} + b_l$, for $l = 1..L$. Backprop sends the
# gradient down one layer at a time:
#
# $$ \bar z_l = \sigma'(z_l) \odot \big(W_{l+1}^\top\, \bar z_{l+1}\big), \qquad \bar W_l = \bar z_l\, h_{l-1}^\top, $$
#
# so the gradient at layer $l$ is the loss gradient multiplied by $L - l$ factors $\operatorname{diag}(\sigma'(z_k))\,W_k^\top$.
# For the logistic sigmoid, $\sigma'(z) = \sigma(z)(1-\sigma(z)) \le \tfrac14$, and with PyTorch's default
# initialisation (weights uniform in $\pm 1/\sqrt{n_{\text{in}}}$, so $\operatorname{Var}(W_{ij}) = 1/(3 n_{\text{in}})$)
# each factor shrinks a gradient vector by roughly $\tfrac14\sqrt{1/3}\approx 0.14$: after 16 layers, about $10^{-14}$.
#
# **He initialisation** (He et al. 2015) chooses the weights' scale so that each factor preserves the norm on
# average: with ReLU, half the units pass their gradient ($\sigma' \in \{0, 1\}$), so
# $\operatorname{Var}(W_{ij}) = 2/n_{\text{in}}$ keeps the product near 1 (`nn.init.kaiming_normal_`). Twice that
# standard deviation makes each factor about 2, and the gradient explodes as $2^{L}$.
#
# **BatchNorm** rescales every layer's input to zero mean and unit variance over the batch, which resets the
# scale at every layer whatever the weights do. A **residual block** $h_l = h_{l-1} + f_l(h_{l-1})$ has the
# Jacobian $I + \partial f_l/\partial h$: the identity gives the gradient a path to every layer that no product of
# small factors can close.

# %%
class DeepNet(nn.Module):
    """784 -> WIDTH -> (DEPTH hidden layers of WIDTH) -> 10; ``kind``: activation, init, wiring."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.inp = nn.Linear(784, WIDTH)
        self.layers = nn.ModuleList([nn.Linear(WIDTH, WIDTH) for _ in range(DEPTH)])
        # BatchNorm without its scale and shift: no parameters, so GradientFlow's rows stay the
        # Linear layers
        bn = kind in ("ReLU + He + BatchNorm", "residual + BatchNorm")
        norms = [nn.BatchNorm1d(WIDTH, affine=False) for _ in range(DEPTH)]
        self.norms = nn.ModuleList(norms) if bn else None
        self.out = nn.Linear(WIDTH, 10)
        self.act = rg.sigmoid if kind.startswith("sigmoid") else rg.relu
        if "He" in kind or kind.startswith("residual"):
            scale = 2.0 if "2x" in kind else 1.0
            for layer in (self.inp, *self.layers):
                nn.init.normal_(layer.weight, std=scale * np.sqrt(2.0 / layer.in_features))
                nn.init.zeros_(layer.bias)

    def forward(self, x):
        h = self.act(self.inp(x))
        for i, layer in enumerate(self.layers):
            if self.kind.startswith("residual"):   # pre-activation block: h + W relu(BN(h))
                h = h + layer(self.act(self.norms[i](h)))
            elif self.norms is not None:           # Linear -> BN -> ReLU
                h = self.act(self.norms[i](layer(h)))
            else:
                h = self.act(layer(h))
        return self.out(h)


KINDS = ["sigmoid, default init", "ReLU, default init", "ReLU + He init", "ReLU + 2x He init",
         "ReLU + He + BatchNorm", "residual + BatchNorm"]

# %% [markdown]
# ## At initialisation: one batch, one backward
#
# For each network: the same 256 images, one forward and backward pass, then the norm of each hidden layer's
# weight gradient $\lVert \bar W_l\rVert$ and the standard deviation of its output activations.

# %%
xb, yb = rg.tensor(X[:256]), rg.tensor(Y[:256])
at_init = {}
for kind in KINDS:
    rg.manual_seed(0)
    model = DeepNet(kind)
    acts = []
    def record_std(module, args, out):
        acts.append(float(out.detach().numpy().std()))

    hooks = [layer.register_forward_hook(record_std) for layer in model.layers]
    loss = nn.functional.cross_entropy(model(xb), yb)
    loss.backward()
    for h in hooks:
        h.remove()
    grads = [float(np.linalg.norm(layer.weight.grad.numpy())) for layer in model.layers]
    at_init[kind] = (grads, acts)
    print(f"{kind:<22} loss {loss.item():9.4g}  |grad W| layer 1: {grads[0]:8.2e}, "
          f"layer {DEPTH}: {grads[-1]:8.2e}, first/last: {grads[0] / grads[-1]:8.2e}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained")
depth = np.arange(1, DEPTH + 1)
for i, (kind, (grads, acts)) in enumerate(at_init.items()):
    ax1.plot(depth, grads, "o-", ms=4, color=f"C{i}", label=kind)
    ax2.plot(depth, acts, "o-", ms=4, color=f"C{i}", label=kind)
for ax in (ax1, ax2):
    ax.set_yscale("log")
    ax.set_xlabel("hidden layer (1 = nearest the input)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
ax1.set_ylabel("gradient norm $\\|\\partial L/\\partial W_l\\|$ (log scale)")
ax1.set_title("Weight-gradient norm per layer at initialisation")
ax2.set_ylabel("std of the layer's pre-activation output (log scale)")
ax2.set_title("Forward: the signal's scale per layer")
ax1.legend(fontsize=8)
ax2.legend(fontsize=8)
plt.show()

# %% [markdown]
# Read the left panel from right (near the loss) to left (near the input). The sigmoid network's gradient
# falls by a near-constant factor per layer, a straight line on the log scale, until the first layers get
# $10^{-14}$ of what the last one gets. ReLU with PyTorch's default init falls too, more slowly (its weights are
# scaled for no particular activation). He init keeps the gradient flat. With twice He's scale the forward signal
# grows $2\times$ per layer (right panel) and the backward signal $\bar z_l$ grows $2\times$ per layer toward the
# input; since $\bar W_l = \bar z_l h_{l-1}^\top$ multiplies the two, every layer's weight gradient is huge
# ($10^4$ to $10^5$, against about $0.2$ with He init) rather than growing from layer to layer. BatchNorm and the
# residual blocks keep both near constant by construction.
#
# ## During training: `GradientFlow`
#
# `rg.train.GradientFlow` is a `Trainer` callback. Every `every_n_steps` optimizer steps it records, per layer
# with parameters, the gradient norm, the size of the update relative to the weights
# ($\lVert\Delta W\rVert/\lVert W\rVert$, healthy is around $10^{-3}$), the activations' mean and spread and the
# fraction of dead ReLU units. `report()` prints the latest values and plain-language **verdicts**;
# `gradient_flow_figure` draws the records as heatmaps. (From the command line, `[train] gradient_flow = true`
# in a config does the same and writes `gradient_flow.png` into the run folder.)
#
# All five networks below train with the same optimizer (SGD, momentum 0.9, learning rate 0.02), the same
# initial weights for the same kind, and the same batches.

# %%
TRAIN_KINDS = ["sigmoid, default init", "ReLU + He init", "ReLU + 2x He init",
               "ReLU + He + BatchNorm", "residual + BatchNorm"]
train_ds = rg.data.TensorDataset(rg.tensor(X[:N_TRAIN]), rg.tensor(Y[:N_TRAIN]))
val_ds = rg.data.TensorDataset(rg.tensor(X[N_TRAIN:]), rg.tensor(Y[N_TRAIN:]))
flows, histories = {}, {}
for kind in TRAIN_KINDS:
    rg.manual_seed(0)
    model = DeepNet(kind)
    flow = GradientFlow(every_n_steps=4)
    sgd = rg.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    trainer = Trainer(model, sgd, nn.CrossEntropyLoss(), callbacks=[flow], seed=0)
    train_loader = rg.data.DataLoader(train_ds, batch_size=100, shuffle=True,
                                      generator=rg.Generator().manual_seed(0))
    val_loader = rg.data.DataLoader(val_ds, batch_size=500)
    with np.errstate(over="ignore", invalid="ignore"):  # 2x He overflows: GradientFlow says so
        histories[kind] = trainer.fit(train_loader, val_loader, epochs=EPOCHS)
    flows[kind] = flow
    verdicts = flow.verdicts()
    print(f"== {kind}: validation accuracy per epoch "
          f"{', '.join(f'{a:.1%}' for a in histories[kind]['val_accuracy'])}")
    print("   GradientFlow verdicts:" + ("" if verdicts else " none (gradients flow evenly)"))
    for v in verdicts[:6]:
        print("   -", v)
    if len(verdicts) > 6:
        print(f"   ... and {len(verdicts) - 6} more")

# %% [markdown]
# The full report for the sigmoid network: one row per layer, the medians of its last five records.

# %%
print(flows["sigmoid, default init"].report())

# %% [markdown]
# ### Heatmaps
#
# Each pair of panels is one network: rows are layers (input layer at the top, output layer at the bottom),
# columns are recorded optimizer steps, and the colour is $\log_{10}$ of the gradient norm (left) and of the
# update/weight ratio (right). A healthy network is a band of even colour; vanishing gradients are a dark top,
# exploding ones a bright top.

# %%
for kind in TRAIN_KINDS:
    fig = gradient_flow_figure(flows[kind].records, flows[kind].layers)
    fig.suptitle(f"GradientFlow: {kind}, {DEPTH} hidden layers, SGD momentum 0.9, lr 0.02")
    try:  # a matplotlib Figure made outside pyplot: show it through IPython where there is one
        from IPython.display import display
        display(fig)
    except ImportError:
        pass

# %%
fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
for i, kind in enumerate(TRAIN_KINDS):
    acc = histories[kind]["val_accuracy"]
    ax.plot(np.arange(1, len(acc) + 1), acc, "o-", color=f"C{KINDS.index(kind)}", label=kind)
ax.axhline(0.1, color="grey", ls=":", label="chance (10 classes)")
ax.set_xlabel("epoch")
ax.xaxis.set_major_locator(MaxNLocator(integer=True))
ax.set_ylabel("validation accuracy (fraction right)")
ax.set_title(f"Fashion-MNIST, {DEPTH} hidden layers of {WIDTH}: which deep networks learn")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The sigmoid network stays at chance. Its first layers receive gradients around $10^{-14}$ of the last
# layer's, and `GradientFlow` says so (*vanishing*), then lists the layers that *barely learn*. In its
# update/weight heatmap the top rows are white: the update there is exactly zero, because
# $\eta\,\bar W$ is below the float32 resolution of the weights ($\approx 10^{-7}$ of their size), so adding it
# changes nothing. With twice He's scale the loss starts near $6\times10^4$, the first steps overflow, and
# `GradientFlow` reports gradients that are *not finite* (with `NaNGuard` as the tool to find the op). He init
# alone trains, but more slowly and less steadily than with BatchNorm; the residual connections train the same
# depth fastest. (How far each gets depends on the run's length: compare the short and full forms of this page.)
#
# ## Exercises
#
# 1. Replace the sigmoid by $\tanh$ (whose derivative is at most 1, not $\tfrac14$) with Xavier initialisation
#    (`nn.init.xavier_normal_`). How much of the vanishing goes away?
# 2. Train the "ReLU + 2x He init" network with gradient clipping (`Trainer(..., grad_clip=1.0)`). Does it
#    train? What do the verdicts say now?
# 3. Make the residual network 64 layers deep. Does it still train? Does the plain ReLU + He network?
# 4. Remove BatchNorm from the residual blocks (keep He init). Plot the activation std per layer at
#    initialisation: how fast does it grow, and why ($\operatorname{Var}(h_l) \approx 2\operatorname{Var}(h_{l-1})$)?
# 5. Train the sigmoid network with Adam instead of SGD. Adam divides each gradient by its own running scale:
#    does that rescue the first layers? Look at the `update/w` column of the report.

# %%
form = "short" if SHORT else "full"
print(f"this page ran in {time.perf_counter() - T_START:.1f} s ({form} form, "
      f"load average {os.getloadavg()[0]:.1f})")
