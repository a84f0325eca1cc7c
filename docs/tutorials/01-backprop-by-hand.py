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
# # 1. Backprop by hand
#
# Backpropagation is the chain rule, applied from the loss back to every weight, reusing what the forward
# pass computed. In this tutorial we write it out for a two-layer network in plain NumPy, line by line, and
# then check that retrograd's `loss.backward()` gives the same numbers, to the last bits a float64 can hold.
#
# **What you will see**
#
# 1. The forward and backward equations of a 2-layer network (tanh hidden layer, softmax cross-entropy
#    output), each beside the NumPy line that computes it.
# 2. The hand-written gradients compared with `loss.backward()` (they agree to about $10^{-16}$) and with
#    finite differences through `rg.autograd.gradcheck`.
# 3. The graph retrograd recorded during the forward pass, drawn by `rg.viz.draw_graph`: one box per op,
#    the shape of every tensor on the edges, and the gradient norm flowing back along each edge.
# 4. Gradient descent driven by the hand-written gradients and by retrograd side by side: the two loss
#    curves lie on top of each other.
#
# The data are the Iris flowers (150 flowers, 4 measurements in cm, 3 species), bundled with scikit-learn.
#
# *Running time.* This page is quick in either form: with `RETROGRAD_DOCS_SHORT=1` (as in CI) it trains for
# fewer steps. The full-length run took **FULL_TIME** (measured with `nice -n 10`, see the last cell).

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_iris

import retrograd as rg
import retrograd.nn.functional as F

SHORT = os.environ.get("RETROGRAD_DOCS_SHORT") == "1"
T_START = time.perf_counter()
STEPS = 150 if SHORT else 1500

iris = load_iris()
X = (iris.data - iris.data.mean(0)) / iris.data.std(0)  # standardised: each feature mean 0, std 1
y = iris.target
N, D, H, K = X.shape[0], X.shape[1], 16, 3
Y = np.eye(K)[y]  # one-hot targets, (N, K)
print(f"X {X.shape} (standardised cm), y {y.shape}, classes: {', '.join(iris.target_names)}")

# %% [markdown]
# ## The network and its forward pass
#
# With a batch $X \in \mathbb{R}^{N\times D}$ (rows are examples), the network is
#
# $$
# \begin{aligned}
# Z_1 &= X W_1^\top + b_1 &&(N, H)\\
# A_1 &= \tanh(Z_1) &&(N, H)\\
# Z_2 &= A_1 W_2^\top + b_2 &&(N, K)\quad\text{(logits)}\\
# P &= \operatorname{softmax}(Z_2) &&(N, K),\quad P_{nk} = \frac{e^{Z_{2,nk}}}{\sum_j e^{Z_{2,nj}}}\\
# L &= -\frac{1}{N}\sum_{n}\sum_k Y_{nk}\log P_{nk} &&\text{(mean cross-entropy)}
# \end{aligned}
# $$
#
# with $W_1 \in \mathbb{R}^{H\times D}$, $W_2 \in \mathbb{R}^{K\times H}$, stored as PyTorch's `nn.Linear` stores
# them (out_features, in_features). Everything here is float64 so that the comparisons below are exact to
# rounding.

# %%
rng = np.random.default_rng(0)
params0 = {
    "W1": rng.normal(0, 1 / np.sqrt(D), (H, D)), "b1": np.zeros(H),
    "W2": rng.normal(0, 1 / np.sqrt(H), (K, H)), "b2": np.zeros(K),
}


def forward(p, X):
    Z1 = X @ p["W1"].T + p["b1"]
    A1 = np.tanh(Z1)
    Z2 = A1 @ p["W2"].T + p["b2"]
    Z2s = Z2 - Z2.max(axis=1, keepdims=True)  # subtracting the row max changes nothing but avoids overflow
    P = np.exp(Z2s) / np.exp(Z2s).sum(axis=1, keepdims=True)
    loss = -np.mean(np.sum(Y * np.log(P), axis=1))
    return loss, (Z1, A1, Z2, P)


loss_np, cache = forward(params0, X)
print(f"loss at initialisation: {loss_np:.6f}  (a uniform guess over 3 classes would give log 3 = {np.log(3):.6f})")

# %% [markdown]
# ## The backward pass, one line per rule
#
# Backprop walks the same equations in reverse. Write $\bar{V} = \partial L/\partial V$ for the gradient of the
# loss with respect to any intermediate $V$; it always has $V$'s shape. Each line uses only the gradient of the
# line below it and values saved from the forward pass:
#
# $$
# \begin{aligned}
# \bar{Z}_2 &= \tfrac{1}{N}(P - Y) &&\text{softmax + cross-entropy (derived in tutorial 2)}\\
# \bar{W}_2 &= \bar{Z}_2^\top A_1, \qquad \bar{b}_2 = \textstyle\sum_n \bar{Z}_{2,n} &&\text{a linear layer: outer products, summed over the batch}\\
# \bar{A}_1 &= \bar{Z}_2 W_2 &&\text{back through the weights}\\
# \bar{Z}_1 &= \bar{A}_1 \odot (1 - A_1^2) &&\tanh'(z) = 1-\tanh^2(z)\text{, elementwise}\\
# \bar{W}_1 &= \bar{Z}_1^\top X, \qquad \bar{b}_1 = \textstyle\sum_n \bar{Z}_{1,n}
# \end{aligned}
# $$
#
# Two things to notice. The bias gradients are sums over the batch, because the bias was *broadcast* to every
# row in the forward pass (a broadcast forward is a sum backward). And the backward pass needs $A_1$ and $P$ from
# the forward pass: these are the "saved tensors" every autograd engine keeps, and why training needs more
# memory than inference.

# %%
def backward(p, X, cache):
    Z1, A1, Z2, P = cache
    dZ2 = (P - Y) / N
    dW2 = dZ2.T @ A1
    db2 = dZ2.sum(axis=0)
    dA1 = dZ2 @ p["W2"]
    dZ1 = dA1 * (1 - A1 ** 2)
    dW1 = dZ1.T @ X
    db1 = dZ1.sum(axis=0)
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


grads_np = backward(params0, X, cache)
for k, g in grads_np.items():
    print(f"dL/d{k}: shape {g.shape}, norm {np.linalg.norm(g):.6f}")

# %% [markdown]
# ## The same network in retrograd
#
# Now the same computation with retrograd tensors. `F.linear(x, W, b)` computes $xW^\top + b$ and
# `F.cross_entropy` fuses the softmax and the log-likelihood. Every op records a node in the graph;
# `loss.backward()` walks it from the loss to the leaves and stores $\partial L/\partial W$ in `W.grad`.

# %%
def forward_rg(W1, b1, W2, b2, X):
    hidden = F.linear(X, W1, b1).tanh()
    logits = F.linear(hidden, W2, b2)
    return F.cross_entropy(logits, rg.tensor(y))


params = {k: rg.tensor(v, requires_grad=True) for k, v in params0.items()}
Xt = rg.tensor(X)
loss = forward_rg(params["W1"], params["b1"], params["W2"], params["b2"], Xt)
loss.backward(retain_graph=True)  # retain_graph: we draw the graph below, after backward
print(f"loss: NumPy {loss_np:.17g}, retrograd {loss.item():.17g}")
print(f"{'parameter':<10}{'max |hand - backward()|':>26}{'max |grad|':>14}")
for k in params0:
    diff = np.abs(grads_np[k] - params[k].grad.numpy()).max()
    print(f"{k:<10}{diff:>26.2e}{np.abs(grads_np[k]).max():>14.3e}")

# %% [markdown]
# The hand-written gradients and `backward()` agree to about $10^{-17}$, which is the rounding of float64:
# the two do the same arithmetic, in nearly the same order.
#
# ## What retrograd recorded
#
# `rg.viz.draw_graph(loss, params=..., show_grads=True)` draws the graph behind `loss`. Read it top to bottom
# as the forward pass: the green boxes are the parameters (leaves), the blue boxes are the ops, each named by
# its backward node (`LinearBackward`, `TanhBackward`, ...), with the arrays its backward keeps ("saved").
# Each edge carries the shape and dtype of the tensor that flows along it and $\lVert \bar V\rVert$, the
# norm of the gradient that backward sends back along it. The backward pass walks this picture bottom to
# top. Compare the saved arrays with the cache of our hand-written `backward`: `TanhBackward` keeps its
# result $A_1$ (for $1-A_1^2$), `CrossEntropyBackward` keeps the probabilities $P$.

# %%
graph = rg.viz.draw_graph(loss, params=params, show_grads=True)
graph

# %% [markdown]
# The gradient norms on the parameter boxes are those of the `.grad` each parameter received:

# %%
for k in params0:
    print(f"|dL/d{k}| = {np.linalg.norm(params[k].grad.numpy()):.3g}")

# %% [markdown]
# ## Checking gradients with finite differences
#
# Agreement between two implementations of the same formula only shows the formula was typed the same way
# twice. An independent check is the definition of the derivative itself: for every entry $\theta_i$,
#
# $$
# \frac{\partial L}{\partial \theta_i} \approx \frac{L(\theta + \epsilon e_i) - L(\theta - \epsilon e_i)}{2\epsilon},
# $$
#
# with an error of order $\epsilon^2$. Here is one entry by hand, then all of them with
# `rg.autograd.gradcheck`, which compares the whole Jacobian column by column (and raises naming the worst
# element if any disagrees).

# %%
eps = 1e-6
i, j = 3, 2
plus = {k: v.copy() for k, v in params0.items()}
minus = {k: v.copy() for k, v in params0.items()}
plus["W1"][i, j] += eps
minus["W1"][i, j] -= eps
numeric = (forward(plus, X)[0] - forward(minus, X)[0]) / (2 * eps)
print(f"dL/dW1[{i},{j}]: central difference {numeric:.10f}, backprop {grads_np['W1'][i, j]:.10f}, "
      f"difference {abs(numeric - grads_np['W1'][i, j]):.1e}")

ok = rg.autograd.gradcheck(lambda a, b, c, d: forward_rg(a, b, c, d, Xt),
                           tuple(rg.tensor(v, requires_grad=True) for v in params0.values()), eps=1e-6, atol=1e-7)
print("gradcheck over all", sum(v.size for v in params0.values()), "parameters:", ok)

# %% [markdown]
# ## Training with the hand-written gradients
#
# A gradient-descent step is $\theta \leftarrow \theta - \eta\,\bar\theta$. We run it twice from the same
# initial weights: once with our NumPy `backward`, once with retrograd's `backward()` and `rg.optim.SGD`.
# If the gradients are the same, the two runs are the same run.

# %%
LR = 0.5
p_np = {k: v.copy() for k, v in params0.items()}
p_rg = {k: rg.tensor(v, requires_grad=True) for k, v in params0.items()}
opt = rg.optim.SGD(list(p_rg.values()), lr=LR)
hist_np, hist_rg, acc_np = [], [], []
for step in range(STEPS):
    loss_v, cache = forward(p_np, X)
    g = backward(p_np, X, cache)
    for k in p_np:
        p_np[k] -= LR * g[k]
    hist_np.append(loss_v)
    acc_np.append(float((cache[3].argmax(1) == y).mean()))

    opt.zero_grad()
    loss_t = forward_rg(p_rg["W1"], p_rg["b1"], p_rg["W2"], p_rg["b2"], Xt)
    loss_t.backward()
    opt.step()
    hist_rg.append(loss_t.item())

print(f"after {STEPS} steps: loss NumPy {hist_np[-1]:.6f}, retrograd {hist_rg[-1]:.6f}, "
      f"largest difference over the run {np.max(np.abs(np.array(hist_np) - hist_rg)):.1e}; "
      f"training accuracy {acc_np[-1]:.1%}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
steps = np.arange(1, STEPS + 1)
ax1.plot(steps, hist_np, lw=4, alpha=0.5, label="NumPy, hand-written backward")
ax1.plot(steps, hist_rg, "k--", lw=1.2, label="retrograd, loss.backward() + SGD")
ax1.set_xscale("log")
ax1.set_xlabel("gradient-descent step (log scale)")
ax1.set_ylabel("mean cross-entropy (nats)")
ax1.set_title(f"Training loss, Iris, lr = {LR}")
ax1.legend()
ax2.plot(steps, np.abs(np.array(hist_np) - hist_rg), color="C3", label="|NumPy loss - retrograd loss|")
ax2.set_yscale("symlog", linthresh=1e-17)
ax2.set_xscale("log")
ax2.set_xlabel("gradient-descent step (log scale)")
ax2.set_ylabel("absolute difference (nats)")
ax2.set_title("The two runs differ only by float64 rounding")
ax2.legend()
plt.show()

# %% [markdown]
# ## Exercises
#
# 1. Replace $\tanh$ by ReLU in both `forward` and `backward`. What is $\mathrm{ReLU}'(0)$ in retrograd (and in
#    PyTorch)? Does `gradcheck` pass if an input to the ReLU sits exactly at 0?
# 2. Add a third layer. Which lines of `backward` repeat? Write `backward` as a loop over layers.
# 3. Replace the mean cross-entropy by the mean squared error between $P$ and $Y$ and derive $\bar Z_2$ by hand
#    (you need the softmax Jacobian $\partial P_k/\partial Z_j = P_k(\delta_{kj} - P_j)$). Check it against
#    `backward()`. Why does tutorial 2 prefer cross-entropy?
# 4. Draw the graph with `collapse=False` and without `params`: what changes in the labels and clusters?
# 5. `gradcheck` uses float64. Run the hand-made central difference in float32 with $\epsilon = 10^{-6}$ and then
#    $10^{-3}$: why is the smaller step worse?

# %%
print(f"this page ran in {time.perf_counter() - T_START:.1f} s ({'short' if SHORT else 'full'} form, "
      f"load average {os.getloadavg()[0]:.1f})")
