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
# # 5. Learning rate and batch size
#
# The learning rate $\eta$ and the batch size $B$ are the two knobs that decide whether a network trains at all,
# and they are not independent: a bigger batch gives a less noisy gradient, which tolerates a bigger step.
#
# **What you will see**
#
# 1. The **learning-rate range test** (`rg.train.LRFinder`, and the same thing from the command line with
#    `retrograd lr-find`): the loss against an exponentially growing learning rate, and the suggested value.
# 2. **Warm-up and cosine schedules** drawn as learning rate against step, and what warm-up does to the first
#    steps of a run with a large learning rate.
# 3. **Gradient noise against batch size**, measured on Fashion-MNIST: the variance of the minibatch gradient
#    falls as $1/B$, and the *gradient noise scale* says which batch size stops paying.
# 4. **The linear-scaling rule tested**: the same number of epochs at several batch sizes, with the learning rate
#    scaled by $B$ and without.
#
# Everything runs on a 784-128-10 MLP and a subset of Fashion-MNIST (clothing images, 28x28 pixels, 10 classes;
# read from `/usr/share/datasets/fashion-mnist`).
#
# *Running time.* With `RETROGRAD_DOCS_SHORT=1` (as in CI) the page uses 6,000 training images, batch sizes up to
# 512 and fewer gradient samples (about 45 s on 2 cores). The full-length run (10,000 training images, batch sizes
# up to 2048) took **5.8 min** (348 s wall, with `nice -n 10` on 2 cores shared with other jobs at a load average of
# about 19, so a quiet machine is much faster).

# %%
import os
import subprocess
import sys
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np

import retrograd as rg
from retrograd import nn
from retrograd.data.images import FASHION_MNIST_CLASSES, fashion_mnist_pixels, scale_pixels
from retrograd.optim import schedules

SHORT = os.environ.get("RETROGRAD_DOCS_SHORT") == "1"
T_START = time.perf_counter()
N_TRAIN, N_VAL = (6000, 2000) if SHORT else (10000, 3000)
EPOCHS = 2

pixels, labels = fashion_mnist_pixels("train")
order = np.random.default_rng(0).permutation(len(labels))
x_all = scale_pixels(pixels[order[:N_TRAIN + N_VAL]]).reshape(-1, 784)
y_all = labels[order[:N_TRAIN + N_VAL]]
x_train, y_train = x_all[:N_TRAIN], y_all[:N_TRAIN]
x_val, y_val = x_all[N_TRAIN:], y_all[N_TRAIN:]
print(f"train {x_train.shape}, validation {x_val.shape}; classes: {', '.join(FASHION_MNIST_CLASSES)}")


def make_model(seed: int = 0) -> nn.Module:
    rg.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


def loader(batch_size: int, seed: int = 0) -> rg.data.DataLoader:
    ds = rg.data.TensorDataset(rg.tensor(x_train), rg.tensor(y_train))
    return rg.data.DataLoader(ds, batch_size=batch_size, shuffle=True, generator=rg.Generator().manual_seed(seed))


loss_fn = nn.CrossEntropyLoss()


def val_loss(model: nn.Module) -> float:
    with rg.no_grad():
        return loss_fn(model(rg.tensor(x_val)), rg.tensor(y_val)).item()


# %% [markdown]
# ## 1. The learning-rate range test
#
# Train for $n$ steps while the learning rate grows geometrically from $\eta_0$ to $\eta_1$,
#
# $$\eta_i = \eta_0 \left(\frac{\eta_1}{\eta_0}\right)^{i/(n-1)},$$
#
# and record the loss, smoothed by an exponential moving average
# $\bar L_i = 0.05\,L_i + 0.95\,\bar L_{i-1}$ (a single minibatch loss is too noisy to read).
# While $\eta$ is tiny nothing happens; then the loss falls; then the steps overshoot and the loss explodes.
# A good learning rate lies where the smoothed loss falls *fastest*, which is what `suggestion()` returns
# (Smith, 2017). The model and optimizer are restored afterwards, bit for bit. The suggestion is a heuristic:
# read the plot too, and prefer a value somewhat below the minimum of the curve.

# %%
model = make_model()
finder = rg.train.LRFinder(model, rg.optim.SGD(model.parameters(), lr=1e-3), loss_fn)
# stop once the smoothed loss is twice its best (the default, 5x, lets a slow divergence run on, and the
# suggestion, the steepest fall, can then land on the noise after the minimum)
history = finder.range_test(loader(64), start_lr=1e-3, end_lr=10, num_iter=100, diverge_th=2)
suggested = finder.suggestion()

fig, ax = plt.subplots(figsize=(6.5, 4))
ax.plot(history["lr"], history["loss"], color="0.7", lw=1, ls="--", label="all steps (ends left out of the suggestion)")
finder.plot(ax=ax)
ax.set_ylim(min(history["loss"]) * 0.9, history["loss"][0] * 1.3)  # the divergence runs off the top
ax.set_xlabel("learning rate (log scale)")
ax.set_ylabel("training loss, cross-entropy (nats, smoothed)")
ax.set_title("LR range test: SGD on a Fashion-MNIST MLP, batch 64")
ax.legend()
plt.show()
ended = "stopped at divergence" if finder.diverged else "ran to the end"
print(f"suggested learning rate: {suggested:.3g}; the test {ended}"
      f" after {len(history['lr'])} steps")

# %% [markdown]
# The same test from the command line, on a training config (here a small one written to a temporary folder);
# `retrograd lr-find` prints the suggestion and writes the plot:

# %%
config = f"""
[model]
name = "mlp"
sizes = [784, 128, 10]

[data]
name = "fashion_mnist"
batch_size = 64
train_samples = {N_TRAIN}

[optim]
name = "sgd"
lr = 0.0001

[train]
epochs = 1
seed = 0
"""
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "mlp.toml")
    with open(path, "w") as f:
        f.write(config)
    cmd = [sys.executable, "-m", "retrograd", "lr-find", path, "--start-lr", "1e-3", "--end-lr", "10",
           "--num-iter", "100", "--set", f"run.dir={tmp}", "--out", os.path.join(tmp, "lr.png")]
    print("$ retrograd lr-find mlp.toml --start-lr 1e-3 --end-lr 10 --num-iter 100")
    done = subprocess.run(cmd, capture_output=True, text=True)
    print(done.stdout.replace(tmp, "<tmp>") + done.stderr.replace(tmp, "<tmp>"))

# %% [markdown]
# ## 2. Warm-up and cosine schedules
#
# A schedule is a plain function of the step $t$ (`rg.optim.schedules`), so it can be drawn before training.
# *Linear warm-up* over $W$ steps followed by *cosine decay* to 0 at step $T$:
#
# $$\eta(t) = \begin{cases} \eta_{\max}\, t / W & t < W \\[2pt]
#   \tfrac12\,\eta_{\max}\left(1 + \cos\left(\pi\,\frac{t - W}{T - W}\right)\right) & W \le t \le T \end{cases}$$
#
# Warm-up keeps the first steps small while the weights are still random and the gradient is large and
# changing fast; cosine decay ends the run with small steps that settle into a minimum instead of bouncing
# around it.

# %%
T, W, peak = 1000, 100, 0.5
shapes = {
    "constant 0.5": schedules.constant(peak),
    "cosine_decay (no warm-up)": schedules.cosine_decay(peak, T),
    "warmup_cosine, W=100": schedules.warmup_cosine(peak, W, T),
    "cosine_onecycle (30% up)": schedules.cosine_onecycle(peak, T),
    "cosine_restarts, T_0=250": schedules.cosine_restarts(peak, 250),
}
steps = np.arange(T)
fig, ax = plt.subplots(figsize=(7, 3.8))
for (name, sched), style in zip(shapes.items(), ["-", "--", "-", "-.", ":"]):
    ax.plot(steps, [sched(int(s)) for s in steps], style, lw=2, label=name)
ax.set_xlabel("optimizer step")
ax.set_ylabel("learning rate")
ax.set_title("Learning-rate schedules over 1000 steps (peak lr 0.5)")
ax.legend(fontsize=8, loc="upper right")
plt.show()

# %% [markdown]
# Now train with a learning rate that is large for this network: SGD with momentum 0.9 and $\eta = 0.2$
# (momentum multiplies the effective step by $1/(1-0.9) = 10$, so this is several times the suggestion above),
# once at a constant rate and once with warm-up and cosine decay (the optimizer takes the schedule as its `lr`
# and evaluates it at every step). Same initial weights, same batches.

# %%
def train(model, opt, batch_size, epochs, seed=0, record_every=1):
    """Train; returns (training loss per step, validation loss per epoch)."""
    step_losses, val_losses = [], []
    for epoch in range(epochs):
        for xb, yb in loader(batch_size, seed + epoch):
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step_losses.append(loss.item())
        val_losses.append(val_loss(model))
    return np.array(step_losses), np.array(val_losses)


big = 0.2
steps_per_epoch = -(-N_TRAIN // 64)
total = EPOCHS * steps_per_epoch
runs = {}
for name, lr in [("constant", big),
                 ("warm-up 10% + cosine", schedules.warmup_cosine(big, total // 10, total))]:
    m = make_model()
    runs[name] = train(m, rg.optim.SGD(m.parameters(), lr=lr, momentum=0.9), 64, EPOCHS)


def ema(v, a=0.05):
    out, s = [], v[0]
    for x in v:
        s = a * x + (1 - a) * s
        out.append(s)
    return np.array(out)


fig, ax = plt.subplots(figsize=(7, 3.8))
for name, (losses, vals) in runs.items():
    ax.plot(np.arange(len(losses)), ema(losses), lw=1.5, label=f"{name}: final val loss {vals[-1]:.3f}")
ax.set_xlabel("optimizer step (batch 64)")
ax.set_ylabel("training loss, cross-entropy (nats, EMA 0.05)")
ax.set_title(f"SGD+momentum at peak lr {big:.2g}: constant vs warm-up + cosine")
ax.legend()
plt.show()

# %% [markdown]
# ## 3. Batch size against gradient noise
#
# The minibatch gradient $g_B = \frac1B\sum_{i\in\text{batch}} \nabla\ell_i$ is an unbiased estimate of the
# full-data gradient $G$. If the per-example gradients have covariance $\Sigma$ and the batch is drawn without
# replacement from $N$ examples,
#
# $$\mathbb E\,\lVert g_B - G\rVert^2 = \frac{\operatorname{tr}\Sigma}{B}\cdot\frac{N-B}{N-1}.$$
#
# So quadrupling the batch quarters the noise, and the useful part of a step, $\lVert G\rVert^2$, does not
# change. McCandlish et al. (2018) call $B_{\text{noise}} = \operatorname{tr}\Sigma / \lVert G\rVert^2$ the
# *gradient noise scale*: below it, noise dominates and a bigger batch buys almost a proportionally bigger
# step; far above it, the gradient is already accurate and more samples per step are wasted.
#
# We measure this on the model after one epoch of training: the exact $G$ over all $N$ training examples, then
# $\lVert g_B - G\rVert^2$ over many random batches of each size.

# %%
def flat_grad(model, xb, yb):
    model.zero_grad()
    loss_fn(model(rg.tensor(xb)), rg.tensor(yb)).backward()
    return np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])


model = make_model()
train(model, rg.optim.SGD(model.parameters(), lr=0.1), 64, 1)
chunks = [(x_train[i:i + 2000], y_train[i:i + 2000]) for i in range(0, N_TRAIN, 2000)]
G = sum(flat_grad(model, xb, yb) * len(yb) for xb, yb in chunks) / N_TRAIN

rng = np.random.default_rng(1)
batch_sizes = [4, 16, 64, 256, 1024]
repeats = 15 if SHORT else 25
noise = {}
for B in batch_sizes:
    d = [np.sum((flat_grad(model, x_train[idx], y_train[idx]) - G) ** 2)
         for idx in (rng.choice(N_TRAIN, B, replace=False) for _ in range(repeats))]
    noise[B] = (np.mean(d), np.std(d) / np.sqrt(repeats))
# tr(Sigma) from all batch sizes: the geometric mean of what each one implies
trace_sigma = np.exp(np.mean([np.log(noise[b][0] * b * (N_TRAIN - 1) / (N_TRAIN - b)) for b in batch_sizes]))
b_noise = trace_sigma / np.sum(G ** 2)

bs = np.array(batch_sizes)
fig, ax = plt.subplots(figsize=(6.5, 4))
ax.errorbar(bs, [noise[b][0] for b in bs], yerr=[2 * noise[b][1] for b in bs], fmt="o", capsize=3,
            label=r"measured $E\,\|g_B - G\|^2$ ($\pm$2 s.e.)")
bb = np.geomspace(bs[0], bs[-1], 50)
ax.plot(bb, trace_sigma / bb * (N_TRAIN - bb) / (N_TRAIN - 1), "k--",
        label=r"$\mathrm{tr}\,\Sigma/B \cdot (N-B)/(N-1)$, one constant fitted")
ax.axhline(np.sum(G ** 2), color="C2", label=r"$\|G\|^2$ (the signal)")
ax.axvline(b_noise, color="C3", ls=":", label=f"noise scale $B_{{noise}}$ = {b_noise:.0f}")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("batch size B (examples, log scale)")
ax.set_ylabel(r"squared gradient error $\|g_B - G\|^2$ (log scale)")
ax.set_title("Minibatch gradient noise on Fashion-MNIST (MLP after 1 epoch)")
ax.legend(fontsize=8)
plt.show()
for b in bs:
    law = trace_sigma / b * (N_TRAIN - b) / (N_TRAIN - 1)
    print(f"B={b:5d}: E||g_B - G||^2 = {noise[b][0]:.4g}  (1/B law predicts {law:.4g})")
print(f"||G||^2 = {np.sum(G ** 2):.4g}, gradient noise scale B_noise = {b_noise:.0f}")

# %% [markdown]
# ## 4. The linear-scaling rule, tested
#
# If the noise falls as $1/B$, then $k$ SGD steps of batch $B$ with rate $\eta$ move the weights about as far as
# one step of batch $kB$ with rate $k\eta$ — as long as the gradient changes little over those $k$ steps.
# Goyal et al. (2017) turned this into a rule: **when you multiply the batch size by $k$, multiply the learning
# rate by $k$** (with a warm-up). Let us test it: the same number of epochs (so the same number of examples seen,
# and $k$ times fewer steps for $k$ times bigger batches), with the learning rate scaled from
# $\eta = 0.05$ at $B = 32$, and with it left at $0.05$.

# %%
base_lr, base_b = 0.05, 32
scaling_batches = [32, 128, 512] if SHORT else [32, 128, 512, 2048]
results = {"scaled": {}, "fixed": {}}
for B in scaling_batches:
    for rule in results:
        lr = base_lr * B / base_b if rule == "scaled" else base_lr
        steps_total = EPOCHS * -(-N_TRAIN // B)
        sched = schedules.warmup_cosine(lr, max(1, steps_total // 20), steps_total, final_lr=lr) \
            if rule == "scaled" else lr  # 5% warm-up for the big rates, then constant
        m = make_model()
        _, vals = train(m, rg.optim.SGD(m.parameters(), lr=sched), B, EPOCHS)
        with rg.no_grad():
            acc = (m(rg.tensor(x_val)).argmax(-1).numpy() == y_val).mean()
        results[rule][B] = (vals[-1], acc, lr)
        print(f"B={B:5d} {rule:6s} lr={lr:<6.3g} steps={steps_total:5d}  val loss {vals[-1]:.4f}  "
              f"val accuracy {acc:.3f}")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for rule, marker in (("scaled", "o-"), ("fixed", "s--")):
    label = "lr = 0.05 B/32 (linear scaling)" if rule == "scaled" else "lr = 0.05 for every B"
    axes[0].plot(scaling_batches, [results[rule][b][0] for b in scaling_batches], marker, label=label)
    axes[1].plot(scaling_batches, [100 * results[rule][b][1] for b in scaling_batches], marker, label=label)
for ax, what in zip(axes, ["validation loss, cross-entropy (nats)", "validation accuracy (%)"]):
    ax.set_xscale("log", base=2)
    ax.set_xticks(scaling_batches, [str(b) for b in scaling_batches])
    ax.set_xlabel("batch size B (examples)")
    ax.set_ylabel(what)
    ax.legend(fontsize=8)
fig.suptitle(f"Same {EPOCHS} epochs of SGD at every batch size: scaled vs fixed learning rate")
fig.tight_layout()
plt.show()

# %%
ref = results["scaled"][scaling_batches[0]][0]
for B in scaling_batches[1:]:
    scaled, fixed = results["scaled"][B][0], results["fixed"][B][0]
    closer = "scaled" if abs(scaled - ref) < abs(fixed - ref) else "fixed"
    print(f"B={B:5d} ({B / b_noise:4.1f} x B_noise): val loss scaled {scaled:.3f}, fixed {fixed:.3f} "
          f"(B={scaling_batches[0]}: {ref:.3f}); the {closer} lr comes closer")

# %% [markdown]
# **How to read it.** With the learning rate held fixed, a bigger batch means fewer steps of the same length,
# so after the same epochs the model is less trained. Scaling the rate with $B$ makes up for the fewer steps
# while $B$ is not far above the noise scale $B_{\text{noise}}$ of section 3: there the $k$ small steps and
# the one big step point the same way. Far above it, the big rate is no longer an average of small steps; it
# overshoots (and with too few steps left, even warm-up cannot save it). The rule is a first guess, not a law:
# check it with the LR finder at the new batch size.

# %%
elapsed = time.perf_counter() - T_START
print(f"this page ran in {elapsed:.0f} s ({'short' if SHORT else 'full'} form; load average "
      f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")

# %% [markdown]
# ## Exercises
#
# 1. Run the range test with Adam instead of SGD (`rg.optim.Adam(model.parameters(), lr=1e-6)`, `end_lr=1`).
#    How far apart are the two suggestions, and why would you expect Adam's to be smaller?
# 2. Repeat section 3 at the *initial* weights and after 5 epochs. Does the gradient noise scale grow as training
#    proceeds (McCandlish et al. found that it does)? What does that suggest about growing the batch during training?
# 3. Remove the warm-up from the scaled runs of section 4. At which batch size does the scaled rate start to fail?
# 4. Use `rg.optim.schedules.join_schedules` to build "warm-up, constant, then step decay by 10x at 75%", plot it
#    and compare it with `warmup_cosine` on the run of section 2.
