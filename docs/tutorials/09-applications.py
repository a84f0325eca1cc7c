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
# # 9. Applications: a rare class, and an image classifier you can look inside
#
# Two problems that look different and share a lesson: accuracy is rarely the number to look at.
#
# **What you will see**
#
# *Part A — a "fraud-style" imbalanced classification.* The positive class is rare, so a model that always
# says "negative" is 91% accurate and useless. On real tabular data we train the same network with plain
# binary cross-entropy, with a **class weight** on the positives, and with **focal loss**, and compare them with
# **precision–recall curves** and average precision.
#
# *Part B — an imaging model.* A small CNN on Fashion-MNIST, its **confusion matrix** (which clothes it mixes
# up) and **saliency maps**: the gradient of the predicted class score with respect to the input pixels, which
# shows where in the image the decision is sensitive.
#
# Data (all offline): scikit-learn's bundled *Breast Cancer Wisconsin (Diagnostic)* set — 569 tumours, 30
# features computed from cell-nucleus images, 212 malignant — with the malignant class subsampled to make it
# rare; and Fashion-MNIST from `/usr/share/datasets/fashion-mnist` through `rg.data.fashion_mnist` (the loader
# of the `fashion_mnist` data preset).
#
# *Running time.* `RETROGRAD_DOCS_SHORT=1` (as in CI): about 20 s on 2 cores (the CNN sees 4,000 images for 2
# epochs). The full-length run (10,000 images, 3 epochs) took **16.5 min** (988 s wall, with `nice -n 10` on
# 2 cores shared with other jobs at a load average of about 18, so a quiet machine is much faster).

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve

import retrograd as rg
import retrograd.nn.functional as F
from retrograd import nn
from retrograd.data import FASHION_MNIST_CLASSES
from retrograd.data.tabular import sklearn_dataset
from retrograd.models import CNN

SHORT = os.environ.get("RETROGRAD_DOCS_SHORT") == "1"
T_START = time.perf_counter()

# %% [markdown]
# ## Part A: a rare positive class
#
# We keep all 357 benign tumours and a random sixth of the malignant ones, so that positives make up about 9%
# of the data — the shape of a fraud or defect-detection problem. With so few positives a single train/test
# split is noisy, so every sample gets an *out-of-fold* score from 5-fold stratified cross-validation: it is
# scored by the model trained on the other four folds.

# %%
bc = sklearn_dataset("breast_cancer")
x_bc, y_bc = (t.numpy() for t in bc.tensors)
# sklearn codes malignant as 0 and benign as 1; our positive (the rare event) is malignant
malignant = y_bc == 0
rng = np.random.default_rng(0)
keep_pos = rng.choice(np.flatnonzero(malignant), malignant.sum() // 6, replace=False)
keep = np.sort(np.concatenate([np.flatnonzero(~malignant), keep_pos]))
X, Y = x_bc[keep], malignant[keep].astype(np.float32)
print(f"{len(Y)} tumours, {int(Y.sum())} malignant ({100 * Y.mean():.1f}%), {X.shape[1]} features")


def folds(y, k=5, seed=0):
    """Stratified folds: the positives and the negatives are each dealt round-robin in a random order."""
    g = np.random.default_rng(seed)
    fold = np.empty(len(y), int)
    for cls in (0, 1):
        idx = g.permutation(np.flatnonzero(y == cls))
        fold[idx] = np.arange(len(idx)) % k
    return fold


# %% [markdown]
# Three losses for the logit $z$ of a sample with label $t \in \{0, 1\}$ and $p = \sigma(z)$:
#
# * **binary cross-entropy** $\;\ell = -\,t \log p - (1 - t)\log(1 - p)$;
# * **class-weighted BCE** $\;\ell = -\,w_+\, t \log p - (1 - t)\log(1 - p)$ with
#   $w_+ = N_-/N_+$, so that the positives weigh as much in total as the negatives (`pos_weight` of
#   `F.binary_cross_entropy_with_logits`);
# * **focal loss** (Lin et al., 2017) $\;\ell = -\,\alpha_t\,(1 - p_t)^\gamma \log p_t$ with
#   $p_t = p$ for positives and $1 - p$ for negatives (`F.sigmoid_focal_loss`): the factor $(1 - p_t)^\gamma$
#   shrinks the loss of the easy, confidently right samples, which are mostly the plentiful negatives, so the
#   gradient concentrates on the hard ones. $\alpha_t = \alpha$ for positives, $1 - \alpha$ for negatives.

# %%
def make_loss(name, n_pos, n_neg):
    if name == "BCE":
        return lambda z, t: F.binary_cross_entropy_with_logits(z, t)
    if name == "weighted BCE":
        w = rg.tensor(np.float32(n_neg / n_pos))
        return lambda z, t: F.binary_cross_entropy_with_logits(z, t, pos_weight=w)
    gamma, alpha = {"focal γ=2": (2.0, -1.0), "focal γ=2, α=0.9": (2.0, 0.9)}[name]
    return lambda z, t: F.sigmoid_focal_loss(z, t, alpha=alpha, gamma=gamma, reduction="mean")


def out_of_fold_scores(loss_name, epochs=200, seed=0):
    fold = folds(Y, seed=seed)
    scores = np.empty(len(Y))
    for f in range(5):
        tr, te = fold != f, fold == f
        mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-8          # standardise with training statistics only
        xtr, xte = rg.tensor((X[tr] - mu) / sd), rg.tensor((X[te] - mu) / sd)
        ytr = rg.tensor(Y[tr])
        rg.manual_seed(seed)
        model = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 1))
        opt = rg.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
        loss_fn = make_loss(loss_name, Y[tr].sum(), (1 - Y[tr]).sum())
        for _ in range(epochs):                                # full batch: the set is small
            loss = loss_fn(model(xtr).squeeze(1), ytr)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with rg.no_grad():
            scores[te] = model(xte).squeeze(1).sigmoid().numpy()
    return scores


LOSSES = ["BCE", "weighted BCE", "focal γ=2", "focal γ=2, α=0.9"]
SEEDS = [0, 1] if SHORT else [0, 1, 2, 3, 4]
scores = {(name, s): out_of_fold_scores(name, seed=s) for name in LOSSES for s in SEEDS}

# %% [markdown]
# **Precision** is the share of flagged samples that are truly positive, **recall** the share of positives that
# get flagged. Sweeping the decision threshold on the score traces the precision–recall curve; its area,
# *average precision* (AP), summarizes it. The chance level is the positive rate, not 0.5. The dot on each curve
# marks the default threshold 0.5.

# %%
def spread(values):
    """Error bars from the mean to the min and the max (clipped at 0 against rounding)."""
    m = np.mean(values)
    return [[max(m - min(values), 0.0)], [max(max(values) - m, 0.0)]]


fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
ax = axes[0]
for i, name in enumerate(LOSSES):
    s = scores[name, SEEDS[0]]
    prec, rec, thr = precision_recall_curve(Y, s)
    ap = average_precision_score(Y, s)
    ax.step(rec, prec, where="post", color=f"C{i}", lw=1.8, label=f"{name} (AP {ap:.3f})")
    flagged = s >= 0.5
    p05 = (Y[flagged].sum() / max(flagged.sum(), 1))
    r05 = Y[flagged].sum() / Y.sum()
    ax.plot(r05, p05, "o", color=f"C{i}", ms=8, mec="k")
ax.axhline(Y.mean(), color="0.5", ls=":", label=f"chance (positive rate {Y.mean():.2f})")
ax.set_xlabel("recall (share of malignant tumours flagged)")
ax.set_ylabel("precision (share of flags that are malignant)")
ax.set_title(f"Precision–recall, out-of-fold scores (seed {SEEDS[0]}); dots: threshold 0.5")
ax.set_ylim(0, 1.03)
ax.legend(fontsize=8, loc="lower left")

ax = axes[1]
for i, name in enumerate(LOSSES):
    aps = [average_precision_score(Y, scores[name, s]) for s in SEEDS]
    rec05 = [((scores[name, s] >= 0.5) & (Y == 1)).sum() / Y.sum() for s in SEEDS]
    ax.errorbar([i - 0.15], [np.mean(aps)], yerr=spread(aps),
                fmt="o", color=f"C{i}", capsize=4, label="average precision" if i == 0 else None)
    ax.errorbar([i + 0.15], [np.mean(rec05)], yerr=spread(rec05),
                fmt="s", color=f"C{i}", mfc="white", capsize=4, label="recall at threshold 0.5" if i == 0 else None)
ax.set_xticks(range(len(LOSSES)), LOSSES, rotation=15, fontsize=8)
ax.set_ylabel("score (mean, bars: min–max)")
ax.set_title(f"Over {len(SEEDS)} cross-validation seeds")
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()

for name in LOSSES:
    aps = [average_precision_score(Y, scores[name, s]) for s in SEEDS]
    flagged = [(scores[name, s] >= 0.5).sum() for s in SEEDS]
    caught = [((scores[name, s] >= 0.5) & (Y == 1)).sum() for s in SEEDS]
    print(f"{name:18s} AP {np.mean(aps):.3f} (min {min(aps):.3f})   at 0.5: {np.mean(caught):.1f} of "
          f"{int(Y.sum())} malignant caught, {np.mean(flagged):.1f} flagged")

# %%
ap = {name: [average_precision_score(Y, scores[name, s]) for s in SEEDS] for name in LOSSES}
best = max(LOSSES, key=lambda n: np.mean(ap[n]))
clear = all(min(ap[best]) > max(ap[n]) for n in LOSSES if n != best)
print(f"highest mean AP: {best} ({np.mean(ap[best]):.3f}); "
      + ("its worst seed beats every other loss's best seed" if clear else
         "but its range over seeds overlaps another loss's: not a clear difference with so few positives"))

# %% [markdown]
# How to read it. Two effects are mixed here. A loss that weighs the positives up (the class weight,
# or focal loss with $\alpha > 0.5$) pushes their scores up, so more of them pass the 0.5 threshold: the dot moves
# right along its curve (higher recall, lower precision at that threshold). Whether the loss also *ranks* the
# samples better — a higher curve, a higher AP — is a separate question, and with a few dozen positives only a
# difference larger than the spread over cross-validation seeds counts (the right-hand panel). The lesson for
# an imbalanced problem: judge models by a threshold-free measure (AP, the PR curve) over several splits, then
# choose the threshold for the precision or recall the application needs.
#
# ## Part B: an image classifier, its confusion matrix and saliency maps

# %%
train_ds, test_ds = rg.data.fashion_mnist("train"), rg.data.fashion_mnist("test")
N_TRAIN, EPOCHS = (4000, 2) if SHORT else (10000, 3)
order = np.random.default_rng(0).permutation(len(train_ds))[:N_TRAIN]
x_img, y_img = (t[rg.tensor(order)] for t in train_ds.tensors)
x_test, y_test = (t[:2000] for t in test_ds.tensors)
print(f"training on {N_TRAIN} images for {EPOCHS} epochs; testing on {len(y_test)}")

rg.manual_seed(0)
cnn = CNN(channels=(16, 32))     # conv3x3(16)-ReLU-maxpool2-conv3x3(32)-ReLU-maxpool2-linear(10)
opt = rg.optim.Adam(cnn.parameters(), lr=2e-3)
loader = rg.data.DataLoader(rg.data.TensorDataset(x_img, y_img), batch_size=64, shuffle=True,
                            generator=rg.Generator().manual_seed(0))
for epoch in range(EPOCHS):
    t0, total = time.perf_counter(), 0.0
    for xb, yb in loader:
        loss = F.cross_entropy(cnn(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(yb)
    print(f"epoch {epoch + 1}: training loss {total / N_TRAIN:.3f} ({time.perf_counter() - t0:.0f} s)")

cnn.eval()
with rg.no_grad():
    pred = np.concatenate([cnn(x_test[i:i + 500]).argmax(-1).numpy() for i in range(0, len(y_test), 500)])
truth = y_test.numpy()
print(f"test accuracy: {(pred == truth).mean():.3f}")

# %% [markdown]
# The **confusion matrix** $C_{ij}$ counts test images of true class $i$ predicted as class $j$. Normalised by
# row it shows, for each true class, where its images go: the diagonal is the per-class recall.

# %%
K = len(FASHION_MNIST_CLASSES)
conf = np.zeros((K, K), int)
np.add.at(conf, (truth, pred), 1)
rate = conf / conf.sum(1, keepdims=True)
fig, ax = plt.subplots(figsize=(7.5, 6.5))
im = ax.imshow(100 * rate, cmap="Blues", vmin=0, vmax=100)
for i in range(K):
    for j in range(K):
        if conf[i, j]:
            ax.text(j, i, f"{conf[i, j]}", ha="center", va="center", fontsize=8,
                    color="white" if rate[i, j] > 0.5 else "black")
ax.set_xticks(range(K), FASHION_MNIST_CLASSES, rotation=45, ha="right")
ax.set_yticks(range(K), FASHION_MNIST_CLASSES)
ax.set_xlabel("predicted class")
ax.set_ylabel("true class")
fig.colorbar(im, label="share of the true class's test images (%)")
ax.set_title(f"Confusion matrix, {len(truth)} Fashion-MNIST test images\n(numbers in the cells: counts)")
plt.show()
off = conf - np.diag(np.diag(conf))
i, j = np.unravel_index(off.argmax(), off.shape)
print(f"most frequent confusion: {conf[i, j]} {FASHION_MNIST_CLASSES[i]!r} images predicted as "
      f"{FASHION_MNIST_CLASSES[j]!r}")

# %% [markdown]
# A **saliency map** (Simonyan, Vedaldi & Zisserman, 2014) is the gradient of the score of a class $c$ with
# respect to the input image $x$,
#
# $$S_c(x) = \left|\frac{\partial z_c(x)}{\partial x}\right|,$$
#
# the same backward pass as training, but with `requires_grad` on the image instead of the weights. Large
# values mark pixels where a small change would move the class score most. Raw gradients are noisy;
# *SmoothGrad* (Smilkov et al., 2017) averages them over copies of the image with a little Gaussian noise
# added, $\frac1n\sum_k \left|\nabla_x z_c(x + \epsilon_k)\right|$, $\epsilon_k \sim \mathcal N(0, \sigma^2)$.

# %%
def saliency(model, image, cls, n=1, sigma=0.1, seed=0):
    g = np.random.default_rng(seed)
    total = np.zeros(image.shape, np.float32)  # (1, 28, 28)
    for _ in range(n):
        noisy = image.numpy() + (g.normal(0, sigma, image.shape).astype(np.float32) if n > 1 else 0)
        x = rg.tensor(noisy[None], requires_grad=True)
        model(x)[0, cls].backward()
        total += np.abs(x.grad.numpy()[0])
    return (total / n)[0]


examples = [int(np.flatnonzero(truth == c)[0]) for c in range(0, K, 2)]
if conf[i, j]:  # the first test image of the most frequent confusion
    examples.append(int(np.flatnonzero((truth == i) & (pred == j))[0]))
fig, axes = plt.subplots(3, len(examples), figsize=(2.2 * len(examples), 7.2), layout="constrained")
for col, idx in enumerate(examples):
    img = x_test[idx]
    c_pred = int(pred[idx])
    plain = saliency(cnn, img, c_pred)
    smooth = saliency(cnn, img, c_pred, n=8 if SHORT else 25)
    axes[0, col].imshow(img.numpy()[0], cmap="gray_r")
    axes[0, col].set_title(f"true: {FASHION_MNIST_CLASSES[truth[idx]]}\npred: {FASHION_MNIST_CLASSES[c_pred]}",
                           fontsize=9, color="black" if c_pred == truth[idx] else "red")
    im1 = axes[1, col].imshow(plain / plain.max(), cmap="hot", vmin=0, vmax=1)
    axes[2, col].imshow(img.numpy()[0], cmap="gray_r", alpha=0.35)
    im2 = axes[2, col].imshow(smooth / smooth.max(), cmap="hot", vmin=0, vmax=1, alpha=0.75)
    for r in range(3):
        axes[r, col].set_xticks([])
        axes[r, col].set_yticks([])
axes[0, 0].set_ylabel("input image\n(28 x 28 pixels)")
axes[1, 0].set_ylabel("saliency |dz/dx|\n(one gradient)")
axes[2, 0].set_ylabel("SmoothGrad\n(over the image)")
fig.colorbar(im1, ax=axes[1:, :], shrink=0.8, label="gradient magnitude / its maximum in the image")
fig.suptitle("Saliency of the predicted class's logit with respect to the input pixels "
             "(last column: the most frequent confusion)", fontsize=10)
plt.show()

# %% [markdown]
# The brightest pixels sit on the edges and outlines that separate the classes — the sleeves of a shirt, the
# opening of a sandal, the handle of a bag — rather than on uniform areas, where a small change of brightness
# moves the score little. For the misclassified example, the saliency shows what the model looked at when it
# chose the wrong class. Saliency is a local, first-order explanation: it says where the score is sensitive,
# not what the model "understands".

# %%
elapsed = time.perf_counter() - T_START
print(f"this page ran in {elapsed:.0f} s ({'short' if SHORT else 'full'} form; load average "
      f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")

# %% [markdown]
# ## Exercises
#
# 1. Part A: make the positives rarer (a thirtieth of the malignant tumours). Which loss degrades least in AP?
#    Plot precision and recall against the threshold for the plain BCE model and pick the threshold that gives
#    90% recall.
# 2. Part A: try `pos_weight` values of 1, 3, 10 and $N_-/N_+$. Does AP change, or only the operating point?
# 3. Part B: compute saliency with respect to the *true* class for the misclassified example. Where do the two
#    maps differ?
# 4. Part B: replace the absolute gradient by *gradient × input* ($x \odot \nabla_x z_c$). What changes for the
#    dark (zero) pixels, and why?
