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
# # 2. Losses
#
# The loss is where backpropagation starts: its gradient with respect to the network's output is the first
# $\bar V$ of the backward pass, and every other gradient is that one multiplied by Jacobians. So the shape of
# the loss, and above all the shape of its *gradient*, decides what a network learns from which examples.
#
# **What you will see**
#
# 1. **Regression:** mean squared error (MSE) against L1 and Huber: the loss and its gradient as functions of
#    the residual, and what an outlier does to a line fitted to the diabetes data.
# 2. **Classification:** why cross-entropy on softmax logits has the gradient $p - y$, derived and checked
#    numerically; and why the same softmax with MSE learns slowly from confident mistakes.
# 3. **Label smoothing** and **focal loss**: their loss against the logit and their gradient against the
#    predicted probability, then what they do to the confidence of a classifier of handwritten digits.
#
# Data: scikit-learn's bundled diabetes set (442 patients) and digits set (1,797 images of 8x8 pixels).
#
# *Running time.* With `RETROGRAD_DOCS_SHORT=1` (as in CI) the digits experiment trains one seed for fewer
# epochs. The full-length run took **FULL_TIME** (measured with `nice -n 10`, see the last cell).

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes, load_digits

import retrograd as rg
import retrograd.nn.functional as F
from retrograd import nn

SHORT = os.environ.get("RETROGRAD_DOCS_SHORT") == "1"
T_START = time.perf_counter()


def loss_and_grad(loss_fn, x):
    """Per-element loss values and d(loss)/dx at each of the points ``x`` (float64)."""
    t = rg.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    values = loss_fn(t)
    values.sum().backward()
    return values.detach().numpy(), t.grad.numpy()


# %% [markdown]
# ## 1. Regression: squared error, absolute error, Huber
#
# If the targets are the model's prediction plus Gaussian noise, $y = \hat y + \varepsilon$ with
# $\varepsilon\sim\mathcal N(0,\sigma^2)$, the negative log-likelihood of the data is, up to constants,
#
# $$ L_{\text{MSE}} = \frac1N \sum_n (\hat y_n - y_n)^2, \qquad
#    \frac{\partial L_{\text{MSE}}}{\partial \hat y_n} = \frac{2}{N}(\hat y_n - y_n). $$
#
# The gradient grows with the residual $r = \hat y - y$: a point ten times further off pulls ten times harder.
# That is right for Gaussian noise and wrong when a few targets are simply corrupt. The L1 loss $|r|$ (Laplace
# noise) pulls with the same force $\operatorname{sign}(r)$ whatever the distance, and the Huber loss is
# quadratic for $|r|\le\delta$ and linear beyond:
#
# $$ \text{Huber}_\delta(r) = \begin{cases} \tfrac12 r^2 & |r|\le\delta\\ \delta(|r| - \tfrac12\delta) & |r|>\delta
# \end{cases}, \qquad \frac{\partial\,\text{Huber}_\delta}{\partial r} = \operatorname{clip}(r, -\delta, \delta).$$
#
# Below, the three are computed by retrograd's `F.mse_loss`, `F.l1_loss` and `F.huber_loss`, and the gradient
# curves come from `backward()`, not from the formulas.

# %%
r = np.linspace(-3, 3, 601)
zeros = rg.zeros(len(r), dtype=rg.float64)
curves = {
    "MSE  $r^2$": lambda t: F.mse_loss(t, zeros, reduction="none"),
    "L1  $|r|$": lambda t: F.l1_loss(t, zeros, reduction="none"),
    "Huber, $\\delta = 1$": lambda t: F.huber_loss(t, zeros, reduction="none", delta=1.0),
}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
for name, fn in curves.items():
    v, g = loss_and_grad(fn, r)
    ax1.plot(r, v, label=name)
    ax2.plot(r, g, label=name)
ax1.set_xlabel("residual $r = \\hat y - y$ (units of the target)")
ax1.set_ylabel("loss per example")
ax1.set_ylim(0, 5)
ax1.set_title("Regression losses against the residual")
ax1.legend()
ax2.set_xlabel("residual $r = \\hat y - y$ (units of the target)")
ax2.set_ylabel("$\\partial$ loss / $\\partial \\hat y$ (from backward())")
ax2.set_title("Their gradients: how hard each example pulls")
ax2.axhline(0, color="grey", lw=0.5)
ax2.legend()
plt.show()

# %% [markdown]
# ### An outlier and a fitted line
#
# The diabetes data give, for 442 patients, a measure of disease progression one year after baseline
# (a score from 25 to 346) and ten standardised baseline measurements. We fit
# progression $\approx w\cdot\mathrm{BMI} + b$ by gradient descent, once on the real targets and once after
# setting 15 of the lightest patients' progression to 340, a data-entry error of the kind real tables contain.

# %%
diab = load_diabetes()
bmi = (diab.data[:, 2] - diab.data[:, 2].mean()) / diab.data[:, 2].std()  # BMI in standard deviations
target = diab.target.copy()
corrupt = target.copy()
lightest = np.argsort(bmi)[:15]
corrupt[lightest] = 340.0


def fit_line(x, y, loss_fn, steps=3000, lr=0.05):
    w = rg.zeros(2, dtype=rg.float64, requires_grad=True)
    opt = rg.optim.Adam([w], lr=lr * 100)  # targets are in the hundreds: bigger steps
    xt, yt = rg.tensor(x), rg.tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(w[0] * xt + w[1], yt)
        loss.backward()
        opt.step()
    return w.detach().numpy()


fits = {}
for name, fn in (("MSE", F.mse_loss), ("Huber, $\\delta$ = 20", lambda a, b: F.huber_loss(a, b, delta=20.0))):
    fits[name, "clean"] = fit_line(bmi, target, fn)
    fits[name, "corrupt"] = fit_line(bmi, corrupt, fn)
    plain = name.replace("$\\delta$", "delta")
    print(f"{plain:>16}: slope clean {fits[name, 'clean'][0]:6.1f}, with outliers {fits[name, 'corrupt'][0]:6.1f}")

fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
ax.scatter(bmi, corrupt, s=8, color="grey", alpha=0.5, label="patients")
ax.scatter(bmi[lightest], corrupt[lightest], s=18, color="C3", marker="x", label="corrupted targets (set to 340)")
xs = np.linspace(bmi.min(), bmi.max(), 2)
for (name, data), (w, b) in fits.items():
    style = "-" if data == "corrupt" else ":"
    color = "C0" if name == "MSE" else "C2"
    ax.plot(xs, w * xs + b, style, color=color, lw=2, label=f"{name}, fitted on {data} data")
ax.set_xlabel("body-mass index (standard deviations from the mean)")
ax.set_ylabel("disease progression after one year (score)")
ax.set_title("Fitting a line: 15 corrupted targets tilt MSE, barely move Huber")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 2. Classification: softmax and cross-entropy
#
# A classifier outputs logits $z \in \mathbb R^K$; softmax turns them into probabilities
# $p_k = e^{z_k}/\sum_j e^{z_j}$, and cross-entropy is the negative log-probability of the true class $c$,
# $L = -\log p_c = -\sum_k y_k \log p_k$ for the one-hot $y$.
#
# **Why the gradient is $p - y$.** The log of a softmax is $\log p_k = z_k - \log\sum_i e^{z_i}$, so
#
# $$ \frac{\partial \log p_k}{\partial z_j} = \delta_{kj} - \frac{e^{z_j}}{\sum_i e^{z_i}} = \delta_{kj} - p_j,
# \qquad
# \frac{\partial L}{\partial z_j} = -\sum_k y_k(\delta_{kj} - p_j) = -y_j + p_j\underbrace{\textstyle\sum_k y_k}_{=1}
# = p_j - y_j. $$
#
# The softmax's Jacobian and the logarithm's $1/p$ cancel exactly. What is left is as simple as a gradient can
# be: predicted minus wanted, bounded in $[-1, 1]$, never zero while the prediction is wrong. It holds for any
# target distribution $y$ that sums to one, which label smoothing below uses. Check it numerically:

# %%
rng = np.random.default_rng(0)
logits = rg.tensor(rng.normal(0, 3, (6, 5)), requires_grad=True)
labels = rng.integers(0, 5, 6)
F.cross_entropy(logits, rg.tensor(labels), reduction="sum").backward()
p = F.softmax(logits.detach(), dim=1).numpy()
print("max |backward() - (p - y)| =", np.abs(logits.grad.numpy() - (p - np.eye(5)[labels])).max())
print("gradcheck of cross_entropy:",
      rg.autograd.gradcheck(lambda z: F.cross_entropy(z, rg.tensor(labels)), (logits.detach().requires_grad_(),)))

# %% [markdown]
# **Why not MSE on the probabilities?** $\lVert p - y\rVert^2$ is a legal loss too, but its gradient carries the
# softmax Jacobian, $\partial p_c/\partial z_c = p_c(1-p_c)$, uncancelled. When the network is confidently
# wrong, $p_c \to 0$, that factor goes to zero: the examples it gets most wrong teach it least. The plot sweeps
# the true class's probability by moving its logit (10 classes, the other nine logits at 0) and shows the
# gradient on that logit for both losses, again from `backward()`.

# %%
K = 10
zc = np.linspace(-8, 8, 401)


def true_logit_sweep(loss_of_logits):
    z = np.zeros((len(zc), K))
    z[:, 0] = zc
    zt = rg.tensor(z, requires_grad=True)
    loss = loss_of_logits(zt)
    loss.sum().backward()
    return F.softmax(zt.detach(), dim=1).numpy()[:, 0], loss.detach().numpy(), zt.grad.numpy()[:, 0]


target0 = rg.tensor(np.zeros(len(zc), dtype=np.int64))
onehot0 = rg.tensor(np.eye(K)[np.zeros(len(zc), dtype=int)])
pc, ce_v, ce_g = true_logit_sweep(lambda z: F.cross_entropy(z, target0, reduction="none"))
_, mse_v, mse_g = true_logit_sweep(lambda z: ((F.softmax(z, dim=1) - onehot0) ** 2).sum(dim=1))

fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
ax.plot(pc, -ce_g, label="cross-entropy: $1 - p_c$")
ax.plot(pc, -mse_g, label="MSE on softmax probabilities")
ax.set_xscale("log")
ax.set_xlabel("probability of the true class $p_c$ (log scale)")
ax.set_ylabel("$-\\partial L / \\partial z_c$  (push on the true logit)")
ax.set_title("Confidently wrong ($p_c \\to 0$): cross-entropy pushes hardest, MSE hardly at all")
ax.legend()
plt.show()

# %% [markdown]
# ## 3. Label smoothing
#
# Cross-entropy with one-hot targets is minimised only at $p_c = 1$, i.e. at an infinite logit gap: the network
# can always lower the loss by growing its weights, and it learns to be over-confident. **Label smoothing**
# (Szegedy et al. 2016) trains against the softened target $y^{\text{LS}} = (1-\varepsilon)\,y + \varepsilon/K$,
# so by the result above the gradient is $p - y^{\text{LS}}$, which is zero at $p_c = 1 - \varepsilon + \varepsilon/K$.
# With the other $K-1$ logits equal, that happens at the logit gap
#
# $$ z_c - z_{\text{other}} = \log\frac{1 - \varepsilon + \varepsilon/K}{\varepsilon/K}. $$
#
# `F.cross_entropy(..., label_smoothing=eps)` is the same function as PyTorch's.

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
for i, eps in enumerate((0.0, 0.1, 0.2)):
    p_, v, g = true_logit_sweep(lambda z: F.cross_entropy(z, target0, reduction="none", label_smoothing=eps))
    label = "plain cross-entropy" if eps == 0 else f"label smoothing $\\varepsilon$ = {eps}"
    ax1.plot(zc, v, color=f"C{i}", label=label)
    ax2.plot(p_, g, color=f"C{i}", label=label)
    if eps:
        gap = np.log((1 - eps + eps / K) / (eps / K))
        ax1.axvline(gap, color=f"C{i}", ls=":", lw=1)
        print(f"eps = {eps}: minimum at logit gap {gap:.2f} (p_c = {1 - eps + eps / K:.2f}); "
              f"the sweep's smallest loss is at z_c = {zc[np.argmin(v)]:.2f}")
ax1.set_xlabel("logit of the true class $z_c$ (other 9 logits = 0)")
ax1.set_ylabel("loss (nats)")
ax1.set_title("Label smoothing gives the loss a finite minimum (dotted)")
ax1.legend()
ax2.axhline(0, color="grey", lw=0.5)
ax2.set_xlabel("probability of the true class $p_c$")
ax2.set_ylabel("$\\partial L / \\partial z_c$")
ax2.set_title("Gradient on the true logit: $p_c - y^{LS}_c$")
ax2.legend()
plt.show()

# %% [markdown]
# ## 4. Focal loss
#
# **Focal loss** (Lin et al. 2017) multiplies cross-entropy by $(1-p_t)^\gamma$, where $p_t$ is the probability
# given to the true answer: $\text{FL}(p_t) = -(1-p_t)^\gamma \log p_t$. Well-classified examples
# ($p_t \to 1$) are down-weighted, so the many easy examples of an imbalanced problem stop drowning out the
# few hard ones. $\gamma = 0$ is cross-entropy. Below is the binary form, `F.sigmoid_focal_loss` (torchvision's
# function; `alpha=-1` switches off its class weight), for a positive example with logit $z$, $p_t = \sigma(z)$.

# %%
z = np.linspace(-6, 8, 561)
ones = rg.ones(len(z), dtype=rg.float64)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
for i, gamma in enumerate((0, 0.5, 1, 2, 5)):
    v, g = loss_and_grad(lambda t: F.sigmoid_focal_loss(t, ones, alpha=-1, gamma=gamma), z)
    pt = 1 / (1 + np.exp(-z))
    label = f"$\\gamma$ = {gamma}" + (" (cross-entropy)" if gamma == 0 else "")
    ax1.plot(pt, v, color=f"C{i}", label=label)
    ax2.plot(pt, -g, color=f"C{i}", label=label)
ax1.set_yscale("log")
ax1.set_ylim(1e-4, 10)
ax1.set_xlabel("probability of the true class $p_t$")
ax1.set_ylabel("loss (nats, log scale)")
ax1.set_title("Focal loss: easy examples ($p_t$ near 1) count less")
ax1.legend()
ax2.set_xlabel("probability of the true class $p_t$")
ax2.set_ylabel("$-\\partial L / \\partial z$  (push on the logit)")
ax2.set_title("Its gradient against the probability")
ax2.legend()
plt.show()

# %% [markdown]
# ## What they do to a trained classifier
#
# The handwritten-digit set has 1,797 images of 8x8 pixels. We train the same 64-128-10 MLP from the same
# initial weights on the same batches with three losses (cross-entropy, label smoothing $\varepsilon=0.1$, and a
# multi-class focal loss with $\gamma=2$ written from retrograd ops) and look at the test set: the accuracy, the
# confidence $\max_k p_k$, and how well confidence matches accuracy (a *reliability diagram*: for the test
# images whose confidence falls in each bin, the fraction that are right). The *expected calibration error*
# (ECE) is the average gap between the two, weighted by the number of images per bin.

# %%
def focal_loss(logits, target, gamma=2.0):
    logp_t = F.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    return (-(1 - logp_t.exp()) ** gamma * logp_t).mean()


LOSSES = {
    "cross-entropy": F.cross_entropy,
    "label smoothing 0.1": lambda z, t: F.cross_entropy(z, t, label_smoothing=0.1),
    "focal, $\\gamma$ = 2": focal_loss,
}
digits = load_digits()
Xd = (digits.data / 16.0).astype(np.float32)
yd = digits.target
perm = np.random.default_rng(0).permutation(len(yd))
train_idx, test_idx = perm[:1400], perm[1400:]
EPOCHS = 25 if SHORT else 60
SEEDS = (0,) if SHORT else (0, 1, 2)
BINS = np.linspace(0, 1, 11)


def train_digits(loss_fn, seed):
    rg.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = rg.optim.Adam(model.parameters(), lr=2e-3)
    order_rng = np.random.default_rng(seed)  # the same batches for every loss
    for _ in range(EPOCHS):
        order = order_rng.permutation(train_idx)
        for s in range(0, len(order), 32):
            b = order[s:s + 32]
            opt.zero_grad()
            loss_fn(model(rg.tensor(Xd[b])), rg.tensor(yd[b])).backward()
            opt.step()
    with rg.no_grad():
        return F.softmax(model(rg.tensor(Xd[test_idx])), dim=1).numpy()


results = {}
for name, fn in LOSSES.items():
    probs = np.concatenate([train_digits(fn, s) for s in SEEDS])
    conf, pred = probs.max(1), probs.argmax(1)
    right = pred == np.tile(yd[test_idx], len(SEEDS))
    which = np.clip(np.digitize(conf, BINS) - 1, 0, len(BINS) - 2)
    acc_bin = np.array([right[which == i].mean() if np.any(which == i) else np.nan for i in range(len(BINS) - 1)])
    count = np.bincount(which, minlength=len(BINS) - 1)
    conf_bin = np.array([conf[which == i].mean() if count[i] else np.nan for i in range(len(BINS) - 1)])
    ece = np.nansum(np.abs(acc_bin - conf_bin) * count) / len(conf)
    results[name] = dict(conf=conf, acc_bin=acc_bin, count=count)
    plain = name.replace("$\\gamma$", "gamma")
    print(f"{plain:>20}: test accuracy {right.mean():.1%}, mean confidence {conf.mean():.1%}, ECE {ece:.3f}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
centers = (BINS[:-1] + BINS[1:]) / 2
for i, (name, res) in enumerate(results.items()):
    ax1.hist(res["conf"], bins=np.linspace(0.1, 1, 37), histtype="step", lw=1.5, color=f"C{i}", label=name)
    ok = res["count"] >= 5
    ax2.plot(centers[ok], res["acc_bin"][ok], "o-", color=f"C{i}", label=name)
ax1.set_yscale("log")
ax1.set_xlabel("confidence $\\max_k p_k$ on a test image")
ax1.set_ylabel("number of test images (log scale)")
ax1.set_title(f"How sure the classifier is ({len(SEEDS)} seed{'s' if len(SEEDS) > 1 else ''}, "
              f"{len(test_idx)} test images each)")
ax1.legend(loc="upper left")
ax2.plot([0, 1], [0, 1], color="grey", ls=":", label="perfect calibration")
ax2.set_xlabel("confidence (bin centre; bins with at least 5 images)")
ax2.set_ylabel("fraction of those images classified right")
ax2.set_title("Reliability diagram")
ax2.legend()
plt.show()

# %% [markdown]
# Plain cross-entropy puts almost every test image at a confidence near 1; label smoothing caps the confidence
# near $1 - \varepsilon + \varepsilon/K = 0.91$, and focal loss, which stops pushing once an example is easy,
# leaves more images at middling confidence. Which of them is *calibrated* (on the diagonal) depends on the data
# and the training length: read the ECE printed above rather than a rule of thumb.
#
# ## Exercises
#
# 1. Derive the gradient of the binary cross-entropy with logits, $-[t\log\sigma(z) + (1-t)\log(1-\sigma(z))]$,
#    with respect to $z$, and check it with `backward()`. What is the same as for softmax?
# 2. Show that label smoothing equals cross-entropy plus $\varepsilon$ times the cross-entropy against the
#    uniform distribution (up to a constant). Verify with `F.cross_entropy` and `label_smoothing`.
# 3. Differentiate the focal loss with respect to the logit and find where the $\gamma=2$ curve above peaks.
# 4. Huber with $\delta \to 0$ (rescaled by $1/\delta$) becomes L1, and with $\delta\to\infty$ becomes MSE/2. Refit
#    the diabetes line for $\delta \in \{1, 20, 100\}$ and plot the slope against $\delta$.
# 5. Give the outliers in the regression a weight: which loss would you use if you knew *which* points were
#    corrupt? (`reduction="none"` and a weighted mean.)

# %%
print(f"this page ran in {time.perf_counter() - T_START:.1f} s ({'short' if SHORT else 'full'} form, "
      f"load average {os.getloadavg()[0]:.1f})")
