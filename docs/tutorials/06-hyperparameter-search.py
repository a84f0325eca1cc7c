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
# # 6. Hyperparameter search: grid, random and TPE
#
# A hyperparameter search is an optimization problem whose objective is a whole training run: expensive, noisy
# and without gradients. The three classic strategies spend the same budget of trials differently:
#
# * **grid search** tries every combination of a few values per parameter;
# * **random search** draws each parameter independently from its range (Bergstra & Bengio, 2012): with the
#   same number of trials it tries many more *distinct* values of each parameter, which pays when only a few
#   parameters matter;
# * **TPE** (Tree-structured Parzen Estimator, Bergstra et al., 2011), a Bayesian method, models which values
#   gave good and bad results so far and proposes the next trial where good results are likely.
#
# **What you will see**
#
# 1. The same search space and the same budget of trials run by `rg.tune.search` (on Optuna) with
#    `method="grid"`, `"random"` and `"tpe"`.
# 2. **Best-so-far against trials** for the three: how fast each finds a good configuration.
# 3. Where each method put its trials in the (learning rate, momentum) plane.
# 4. **Pruning**: the median pruner stops trials whose validation loss is worse than the median of earlier
#    trials at the same epoch; the learning curves of pruned and completed trials.
#
# The model is an MLP on scikit-learn's bundled *digits* set (1797 handwritten digits, 8x8 pixels, 10 classes),
# small enough that a trial takes about a second.
#
# *Running time.* `RETROGRAD_DOCS_SHORT=1` (as in CI): 16 trials per method, 8 epochs, one seed (about 35 s on
# 2 cores). The full-length run (3 seeds for random and TPE, 20 epochs) took **28.5 min** (1,710 s wall, with
# `nice -n 10` on 2 cores shared with other jobs at a load average of about 25, so a quiet machine is much faster).

# %%
import contextlib
import io
import math
import os
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
import optuna

import retrograd as rg
import retrograd.tune as tune
from retrograd import nn
from retrograd.data.tabular import sklearn_dataset

optuna.logging.set_verbosity(optuna.logging.WARNING)
SHORT = os.environ.get("RETROGRAD_DOCS_SHORT") == "1"
T_START = time.perf_counter()
EPOCHS = 8 if SHORT else 20
SEEDS = [0] if SHORT else [0, 1, 2]
N_TRIALS = 16

digits = sklearn_dataset("digits")
x, y = (t.numpy() for t in digits.tensors)
perm = np.random.default_rng(0).permutation(len(y))
train_idx, val_idx = perm[:1400], perm[1400:]
x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
print(f"digits: {len(y_train)} training and {len(y_val)} validation images of {x.shape[1]} pixels")

# %% [markdown]
# ## The training function and the search space
#
# `rg.tune.search` is generic: it sets each trial's values into a copy of a config (dotted keys such as
# `optim.lr`), and calls our `train_fn(cfg, reporter)`. The function trains, calls
# `reporter(epoch, metrics)` after every epoch (this is what the pruner sees; it returns `True` when the trial
# should stop) and returns the final metrics. We minimize the validation cross-entropy
#
# $$L_{\text{val}} = -\frac{1}{|V|}\sum_{(x, y) \in V} \log p_\theta(y \mid x).$$
#
# A run that diverges scores 3 nats (worse than guessing, $\ln 10 \approx 2.30$), so that the samplers learn
# to avoid its region instead of seeing a failed trial.

# %%
loss_fn = nn.CrossEntropyLoss()


def train_fn(cfg: dict, reporter) -> dict:
    rg.manual_seed(cfg["train"]["seed"])
    h = cfg["model"]["hidden"]
    model = nn.Sequential(nn.Linear(64, h), nn.ReLU(), nn.Linear(h, 10))
    opt = rg.optim.SGD(model.parameters(), lr=cfg["optim"]["lr"], momentum=cfg["optim"]["momentum"])
    data = rg.data.TensorDataset(rg.tensor(x_train), rg.tensor(y_train))
    batches = rg.data.DataLoader(data, batch_size=32, shuffle=True,
                                 generator=rg.Generator().manual_seed(cfg["train"]["seed"]))
    for epoch in range(cfg["train"]["epochs"]):
        for xb, yb in batches:
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with rg.no_grad():
            logits = model(rg.tensor(x_val))
            val_loss = loss_fn(logits, rg.tensor(y_val)).item()
            acc = float((logits.argmax(-1).numpy() == y_val).mean())
        val_loss = val_loss if math.isfinite(val_loss) else 3.0
        val_loss = min(val_loss, 3.0)
        if reporter(epoch, {"val_loss": val_loss, "val_accuracy": acc}):
            break  # pruned: the search marks the trial PRUNED
    return {"val_loss": val_loss, "val_accuracy": acc}


config = {"model": {"hidden": 64}, "optim": {"lr": 0.01, "momentum": 0.0}, "train": {"epochs": EPOCHS, "seed": 0}}
space = {
    "optim.lr": {"log_uniform": [1e-3, 3.0], "grid": [0.003, 0.03, 0.3, 3.0]},
    "optim.momentum": {"uniform": [0.0, 0.99], "grid": [0.0, 0.9]},
    "model.hidden": {"choice": [16, 128]},
}

# %% [markdown]
# The grid has $4 \times 2 \times 2 = 16$ points, so every method gets 16 trials. For random search and TPE
# the learning rate is drawn from its log-uniform range $[10^{-3}, 3]$ and the momentum uniformly from
# $[0, 0.99]$; the grid only ever sees the listed values.

# %%
studies = {}
with tempfile.TemporaryDirectory() as tmp:
    for method in ("grid", "random", "tpe"):
        for seed in ([0] if method == "grid" else SEEDS):
            t0 = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):  # the per-trial progress lines
                result = tune.search(config, space, train_fn=train_fn, method=method, n_trials=N_TRIALS,
                                     metric="val_loss", direction="minimize", pruner="median", seed=seed,
                                     study_dir=os.path.join(tmp, f"{method}{seed}"), study_name=f"{method}{seed}",
                                     plots=False, heartbeat_interval=None, out=io.StringIO())
            studies[method, seed] = result
            states = result.states
            print(f"{method:6s} seed {seed}: best val loss {result.best_value:.4f} with {result.best_params} "
                  f"({states.get('COMPLETE', 0)} complete, {states.get('PRUNED', 0)} pruned, "
                  f"{time.perf_counter() - t0:.0f} s)")

# %% [markdown]
# ## Best-so-far against trials
#
# The curve that matters to someone paying for trials: after $n$ trials, how good is the best configuration
# found so far? Pruned trials cost less than a full trial but do not count as candidates. TPE's first 10 trials
# are random draws (Optuna's `n_startup_trials`), so with the same seed they are exactly random search's first
# 10 trials and the two curves coincide there; they part when TPE starts to use its model.

# %%
def trials_of(result):
    return sorted(result.study.trials, key=lambda t: t.number)


def best_so_far(result):
    best, out = math.inf, []
    for t in trials_of(result):
        if t.state == optuna.trial.TrialState.COMPLETE:
            best = min(best, t.value)
        out.append(best)
    return np.array(out)


colors = {"grid": "C0", "random": "C1", "tpe": "C2"}
fig, ax = plt.subplots(figsize=(7, 4))
n = np.arange(1, N_TRIALS + 1)
for method in colors:
    curves = np.array([best_so_far(studies[method, s]) for s in ([0] if method == "grid" else SEEDS)])
    label = method if curves.shape[0] == 1 else f"{method} (mean of {curves.shape[0]} seeds, range shaded)"
    ax.step(n, curves.mean(0), where="post", color=colors[method], lw=2.5 if method == "tpe" else 1.5,
            ls={"grid": "-", "random": "--", "tpe": "-"}[method], label=label)
    if curves.shape[0] > 1:
        ax.fill_between(n, curves.min(0), curves.max(0), step="post", color=colors[method], alpha=0.15)
ax.set_yscale("log")
ax.set_xlabel("trial number (budget spent)")
ax.set_ylabel("validation loss, cross-entropy (nats, log scale)")
ax.set_title("Best-so-far validation loss against trials, digits MLP")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Where each method looked
#
# Each trial as a point in the (learning rate, momentum) plane, coloured by its validation loss; circles are
# completed trials (size: hidden width), crosses pruned ones. The grid stacks its 16 trials on 8 points of this
# plane (the hidden width is the third axis); random search spreads them; TPE starts like random search (its
# first 10 trials are random) and then concentrates where the loss was low.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharey=True, layout="constrained")
norm = plt.matplotlib.colors.LogNorm(vmin=0.05, vmax=3.0)
for ax, method in zip(axes, colors):
    for t in trials_of(studies[method, 0]):
        lr, mom, h = t.params["optim.lr"], t.params["optim.momentum"], t.params["model.hidden"]
        if t.state == optuna.trial.TrialState.COMPLETE:
            sc = ax.scatter(lr, mom, c=[t.value], cmap="viridis_r", norm=norm, s=30 if h == 16 else 90,
                            edgecolors="k", linewidths=0.5)
        else:
            last = t.intermediate_values[max(t.intermediate_values)]
            ax.scatter(lr, mom, c=[last], cmap="viridis_r", norm=norm, marker="X", s=80)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_title(f"{method}: 16 trials")
axes[0].set_ylabel("SGD momentum")
fig.colorbar(sc, ax=axes, label="validation loss (nats)")
handles = [plt.Line2D([], [], marker="o", ls="", color="0.5", ms=5, label="complete, hidden 16"),
           plt.Line2D([], [], marker="o", ls="", color="0.5", ms=9, label="complete, hidden 128"),
           plt.Line2D([], [], marker="X", ls="", color="0.5", ms=8, label="pruned")]
axes[0].legend(handles=handles, fontsize=8, loc="lower left")
fig.suptitle("Trials in the (learning rate, momentum) plane (seed 0)")
plt.show()

# %% [markdown]
# ## Pruning
#
# The median pruner (`pruner="median"`, Optuna's `MedianPruner` with 5 start-up trials) compares a running
# trial's reported value at epoch $e$ with the median of what the earlier trials reported at epoch $e$, and stops
# it when it is worse. The saving is the epochs not run:
#
# $$\text{saved} = 1 - \frac{\sum_{\text{trials}} \text{epochs run}}{\text{trials} \times \text{epochs}}.$$

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharey=True, layout="constrained")
for ax, method in zip(axes, colors):
    run_epochs = 0
    for t in trials_of(studies[method, 0]):
        steps = sorted(t.intermediate_values)
        run_epochs += len(steps)
        pruned = t.state == optuna.trial.TrialState.PRUNED
        ax.plot(np.array(steps) + 1, [t.intermediate_values[s] for s in steps], color="C3" if pruned else "0.4",
                lw=1.2, alpha=0.9 if pruned else 0.6, marker="x" if pruned else None, markevery=[-1])
    saved = 1 - run_epochs / (N_TRIALS * EPOCHS)
    n_pruned = sum(t.state.name == "PRUNED" for t in trials_of(studies[method, 0]))
    ax.set_title(f"{method}: {n_pruned} pruned, {100 * saved:.0f}% of epochs saved", fontsize=10)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
axes[0].set_ylabel("validation loss (nats, log scale)")
axes[0].legend(handles=[plt.Line2D([], [], color="0.4", label="completed trial"),
                        plt.Line2D([], [], color="C3", marker="x", label="pruned trial (x: where it stopped)")],
               fontsize=8)
fig.suptitle("Learning curves of every trial (seed 0), median pruner")
plt.show()

# %% [markdown]
# The best configurations, and what the search wrote: `tune.search` keeps the study in an SQLite file in
# `study_dir` (so a search can be resumed), and writes `trials.csv` and the best config as TOML — the same
# files `retrograd tune CONFIG` writes from the command line.

# %%
for method in colors:
    r = studies[method, 0]
    print(f"{method:6s}: best trial #{r.best_trial}, val loss {r.best_value:.4f}, "
          f"accuracy {r.study.best_trial.user_attrs['metrics']['val_accuracy']:.3f}, params {r.best_params}")
print(tune.format_table(studies["tpe", 0].rows[:6]))

# %%
elapsed = time.perf_counter() - T_START
print(f"this page ran in {elapsed:.0f} s ({'short' if SHORT else 'full'} form; load average "
      f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")

# %% [markdown]
# ## Exercises
#
# 1. Add a fourth parameter that does not matter (for example `train.unused` uniform in $[0, 1]$, grid $[0, 1]$).
#    The grid doubles to 32 points; what happens to random search and TPE with 16 trials?
# 2. Run with `pruner="hyperband"` and with `pruner="none"`. How many epochs does each spend, and does pruning
#    ever throw away the eventual best configuration?
# 3. Give TPE 40 trials and plot the learning rate it proposes against the trial number. When does it stop
#    exploring?
# 4. Replace the search space by a conditional one: `"optim.momentum": {"uniform": [0, 0.99], "when":
#    {"optim.name": "sgd"}}` with `"optim.name": {"choice": ["sgd", "adam"]}`, and build the optimizer from
#    `cfg["optim"]["name"]` in `train_fn`.
