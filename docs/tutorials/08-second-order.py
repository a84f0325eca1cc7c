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
# # 8. Second-order tools: Hessian-vector products, Lanczos and Sophia
#
# The gradient says which way the loss goes down; the Hessian $H = \nabla^2 L(\theta)$ says how fast that
# direction bends. A network with $n$ parameters has an $n \times n$ Hessian — far too big to form — but
# backpropagation can multiply it by a vector for about the cost of two gradients. Everything on this page is
# built on that product.
#
# **What you will see**
#
# 1. **Hessian-vector products** with `rg.autograd.functional.hvp` and with double backward
#    (`rg.autograd.grad(..., create_graph=True)`), checked against finite differences.
# 2. **Lanczos**, written here in twenty lines, computing the extreme eigenvalues of a network's Hessian from
#    HVPs alone; on a tiny network it is compared with the full eigendecomposition of the explicit Hessian.
# 3. The **spectrum** of a larger network's Hessian (2,410 parameters) by stochastic Lanczos quadrature.
# 4. **Hutchinson's diagonal estimate** $\operatorname{diag}(H) \approx \mathbb E[u \odot Hu]$, and what the
#    **Sophia** optimizer does with it, compared with Adam on the same problem.
#
# Data: scikit-learn's bundled *iris* (150 flowers, 4 measurements, 3 species) and *digits* (1797 8x8 images of
# handwritten digits).
#
# *Running time.* `RETROGRAD_DOCS_SHORT=1` (as in CI): about 20 s on 2 cores. The full-length run (more Lanczos
# steps and training steps) took **14.6 min** (877 s wall, with `nice -n 10` on 2 cores shared with other
# jobs at a load average of about 23, so a quiet machine is much faster).

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np

import retrograd as rg
import retrograd.nn.functional as F
from retrograd.autograd import functional as AF
from retrograd.data.tabular import sklearn_dataset

SHORT = os.environ.get("RETROGRAD_DOCS_SHORT") == "1"
T_START = time.perf_counter()

# %% [markdown]
# ## 1. Hessian-vector products
#
# For a scalar $L(\theta)$ and a fixed vector $v$, $Hv = \nabla_\theta\left(\nabla_\theta L \cdot v\right)$:
# differentiate once keeping the graph of the gradient (`create_graph=True`), take its dot product with $v$,
# and differentiate again. No $n \times n$ matrix is ever formed.
#
# A network as a function of one flat parameter vector makes this concrete. Here is a tanh MLP on iris with
# $4 \cdot 6 + 6 + 6 \cdot 3 + 3 = 51$ parameters:

# %%
iris = sklearn_dataset("iris", standardize=True)
xi, yi = (rg.tensor(t.numpy()) for t in iris.tensors)


def mlp_loss(sizes, x, y):
    """loss(theta): the mean cross-entropy of a tanh MLP whose weights are the flat vector theta."""
    shapes = [s for a, b in zip(sizes[:-1], sizes[1:]) for s in ((b, a), (b,))]
    cuts = np.cumsum([0] + [int(np.prod(s)) for s in shapes])

    def loss(theta):
        h = x
        for i in range(0, len(shapes), 2):
            w = theta[cuts[i]:cuts[i + 1]].reshape(shapes[i])
            b = theta[cuts[i + 1]:cuts[i + 2]]
            h = h @ w.T + b
            if i + 2 < len(shapes):
                h = h.tanh()
        return F.cross_entropy(h, y)

    def init(seed):
        g = np.random.default_rng(seed)
        parts = [g.normal(0, 1 / np.sqrt(s[1]), s) if len(s) == 2 else np.zeros(s) for s in shapes]
        return np.concatenate([p.ravel() for p in parts]).astype(np.float64)

    return loss, init, int(cuts[-1])


loss_iris, init_iris, n_iris = mlp_loss([4, 6, 3], xi.double(), yi)
theta = rg.tensor(init_iris(0), requires_grad=True)
v = rg.tensor(np.random.default_rng(1).standard_normal(n_iris))

_, hv_functional = AF.hvp(loss_iris, theta, v)                       # the functional API

g, = rg.autograd.grad(loss_iris(theta), theta, create_graph=True)    # double backward by hand
hv_double, = rg.autograd.grad((g * v).sum(), theta)



def grad_at(t):
    """The gradient at the flat numpy point t (vjp of a scalar function with v = 1)."""
    return AF.vjp(loss_iris, rg.tensor(t))[1].numpy()


eps = 1e-5                                                           # central differences of the gradient
t0_np = theta.detach().numpy()
hv_fd = (grad_at(t0_np + eps * v.numpy()) - grad_at(t0_np - eps * v.numpy())) / (2 * eps)

print(f"{n_iris} parameters, float64")
print(f"|hvp - double backward|_max      = {np.abs(hv_functional.numpy() - hv_double.numpy()).max():.2e}")
print(f"|hvp - finite differences|_max   = {np.abs(hv_functional.numpy() - hv_fd).max():.2e}"
      f"  (of |Hv|_max = {np.abs(hv_fd).max():.3f})")

# %% [markdown]
# ## 2. Lanczos: eigenvalues from products alone
#
# Lanczos builds an orthonormal basis $q_1, \dots, q_k$ of the Krylov space
# $\operatorname{span}\{q_1, Hq_1, \dots, H^{k-1}q_1\}$ with the three-term recurrence
#
# $$\beta_{j+1} q_{j+1} = Hq_j - \alpha_j q_j - \beta_j q_{j-1}, \qquad \alpha_j = q_j^\top H q_j,$$
#
# in which $H$ restricted to the basis is the tridiagonal matrix
# $T_k = \operatorname{tridiag}(\beta, \alpha, \beta)$. The eigenvalues of $T_k$ (*Ritz values*) approach the
# eigenvalues of $H$ from the extremes inwards, after $k \ll n$ products. In floating point the $q_j$ slowly lose
# orthogonality, so we re-orthogonalise each new vector against all previous ones (affordable for small $k$).

# %%
def lanczos(hvp, n, k, seed=0):
    """k steps of Lanczos on the symmetric operator hvp (R^n -> R^n). Returns the Ritz values of every
    step (list of arrays) and, for the last step, the Ritz values and their weights (first components
    of T's eigenvectors, squared)."""
    q = np.random.default_rng(seed).standard_normal(n)
    Q = [q / np.linalg.norm(q)]
    alphas, betas, ritz = [], [], []
    for j in range(k):
        w = hvp(Q[j])
        alphas.append(w @ Q[j])
        w = w - alphas[j] * Q[j] - (betas[j - 1] * Q[j - 1] if j else 0)
        basis = np.array(Q)
        w = w - basis.T @ (basis @ w)                     # full re-orthogonalisation
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        evals, evecs = np.linalg.eigh(T)
        ritz.append(evals)
        beta = np.linalg.norm(w)
        if beta < 1e-10 * abs(alphas[0]):                  # an invariant subspace: exact
            break
        betas.append(beta)
        Q.append(w / beta)
    return ritz, evals, evecs[0] ** 2


def hvp_numpy(loss, theta_np):
    t = rg.tensor(theta_np)
    return lambda vec: AF.hvp(loss, t, rg.tensor(vec))[1].numpy()


# train the iris net a little first (plain gradient descent): the Hessian of a trained net is the interesting one
theta_np = init_iris(0)
for _ in range(300):
    theta_np -= 0.5 * grad_at(theta_np)
H = AF.hessian(loss_iris, rg.tensor(theta_np)).numpy()
exact = np.linalg.eigvalsh(H)
ritz, _, _ = lanczos(hvp_numpy(loss_iris, theta_np), n_iris, 30)
print(f"loss after 300 GD steps: {loss_iris(rg.tensor(theta_np)).item():.4f}")
print(f"explicit Hessian {H.shape}: symmetric to {np.abs(H - H.T).max():.1e}; "
      f"eigenvalues from {exact[0]:.4f} to {exact[-1]:.4f}")
for k in (5, 10, 20, 30):
    print(f"Lanczos k={k:2d}: largest Ritz value {ritz[k - 1][-1]:.6f}, smallest {ritz[k - 1][0]:+.6f}   "
          f"(exact {exact[-1]:.6f}, {exact[0]:+.6f})")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
ax = axes[0]
for lam in exact:
    ax.axvline(lam, color="0.88", lw=0.7, zorder=0)
for k, vals in enumerate(ritz, start=1):
    ax.plot(vals, np.full_like(vals, k), "|", color="C0", ms=5)
ax.plot([], [], "|", color="C0", label="Ritz values (eigenvalues of $T_k$)")
ax.plot([], [], color="0.85", label="exact eigenvalues of H (eigh)")
ax.set_xscale("symlog", linthresh=1e-3)
ax.set_xlabel("eigenvalue (symmetric log scale, linear within ±0.001)")
ax.set_ylabel("Lanczos step k (Hessian-vector products)")
ax.set_title(f"Lanczos on the Hessian of a {n_iris}-parameter iris MLP")
ax.legend(fontsize=8, loc="upper left")
ax = axes[1]
steps = np.arange(1, len(ritz) + 1)
ax.semilogy(steps, [abs(r[-1] - exact[-1]) / exact[-1] + 1e-17 for r in ritz], "o-", ms=3, label="largest")
ax.semilogy(steps, [abs(r[-2] - exact[-2]) / exact[-1] + 1e-17 if len(r) > 1 else np.nan for r in ritz], "s-",
            ms=3, label="2nd largest")
ax.set_xlabel("Lanczos step k")
ax.set_ylabel(r"error $|\theta_k - \lambda| / \lambda_{max}$ (log)")
ax.set_title("Convergence of the top Ritz values")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The top eigenvalue is exact to rounding after a handful of products, long before $k$ reaches $n = 51$; the
# bulk near zero (directions the loss hardly bends in) converges last. Note the negative eigenvalues: even after
# training, the loss of a network is not convex.
#
# ## 3. The spectrum of a larger network
#
# On a 64-32-10 tanh MLP for digits ($n = 2{,}410$; its explicit Hessian would have 5.8 million entries) we run
# Lanczos only. *Stochastic Lanczos quadrature* turns the Ritz values $\theta_i$ and weights $w_i = (e_1^\top
# s_i)^2$ into an estimate of the spectral density, $\rho(\lambda) \approx \sum_i w_i\,
# \mathcal N(\lambda; \theta_i, \sigma^2)$, averaged over random start vectors (Ghorbani, Krishnan & Xiao, 2019).

# %%
digits = sklearn_dataset("digits")
xd, yd = (t.numpy() for t in digits.tensors)
loss_dig, init_dig, n_dig = mlp_loss([64, 32, 10], rg.tensor(xd[:1400]).double(), rg.tensor(yd[:1400]))
theta_dig = init_dig(0)
spectra = {}
K = 30 if SHORT else 80
for label, gd_steps in (("at initialisation", 0), ("after 200 GD steps", 200)):
    for _ in range(gd_steps):
        theta_dig -= 0.5 * AF.vjp(loss_dig, rg.tensor(theta_dig))[1].numpy()
    runs = [lanczos(hvp_numpy(loss_dig, theta_dig), n_dig, K, seed=s)[1:] for s in range(2 if SHORT else 4)]
    spectra[label] = (runs, loss_dig(rg.tensor(theta_dig)).item())
    print(f"{label}: loss {spectra[label][1]:.3f}, top eigenvalue {max(r[0][-1] for r in runs):.3f}, "
          f"most negative {min(r[0][0] for r in runs):.4f}")

grid = np.linspace(-0.5, 3.5, 800)
fig, ax = plt.subplots(figsize=(7.5, 4))
for (label, (runs, loss_value)), color in zip(spectra.items(), ("C0", "C1")):
    top = max(r[0][-1] for r in runs)
    sigma = 0.01 * top
    dens = np.mean([np.sum(w[:, None] * np.exp(-(grid[None] * top - t[:, None]) ** 2 / (2 * sigma ** 2)), 0)
                    / np.sqrt(2 * np.pi * sigma ** 2) * top for t, w in runs], axis=0)
    ax.semilogy(grid, dens + 1e-8, color=color, label=f"{label} (loss {loss_value:.2f}, "
                f"$\\lambda_{{max}}$ = {top:.2f})")
ax.set_ylim(1e-5, None)
ax.set_xlim(-0.1, 1.1)
ax.set_xlabel(r"eigenvalue / $\lambda_{max}$ (each spectrum scaled by its own top eigenvalue)")
ax.set_ylabel("spectral density (log scale)")
ax.set_title(f"Hessian spectrum of a digits MLP ({n_dig:,} parameters), {K} Lanczos steps")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Almost all the mass sits at $\lambda \approx 0$; a few *outliers* stand far to the right (for classification
# roughly one per class, Papyan 2019). Those few sharp directions limit the learning rate of gradient descent:
# it is stable only if $\eta < 2 / \lambda_{\max}$. The flat bulk is where a first-order method crawls.
#
# ## 4. Hutchinson's diagonal and Sophia
#
# For a random vector $u$ with independent entries $\pm 1$ (Rademacher), $\mathbb E[u_i u_j] = \delta_{ij}$,
# so
#
# $$\mathbb E\left[u \odot Hu\right]_i = \sum_j H_{ij}\,\mathbb E[u_i u_j] = H_{ii}.$$
#
# One HVP gives an unbiased estimate of the whole diagonal. Its error shrinks as $1/\sqrt{\text{probes}}$ —
# compare it with the diagonal of the explicit iris Hessian:

# %%
hvp_iris = hvp_numpy(loss_iris, theta_np)
rng = np.random.default_rng(0)
N_PROBES = 300 if SHORT else 1000
probes = [rng.choice([-1.0, 1.0], n_iris) for _ in range(N_PROBES)]
estimates = np.cumsum([u * hvp_iris(u) for u in probes], axis=0) / np.arange(1, N_PROBES + 1)[:, None]
diag = np.diag(H)
rel_err = np.linalg.norm(estimates - diag, axis=1) / np.linalg.norm(diag)

fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
ax = axes[0]
for n_probes, marker in ((1, "x"), (10, "s"), (N_PROBES, "o")):
    ax.plot(diag, estimates[n_probes - 1], marker, ms=5, ls="", mfc="none",
            label=f"{n_probes} probe(s): relative error {rel_err[n_probes - 1]:.2f}")
lim = [diag.min() - 0.05, diag.max() + 0.05]
ax.plot(lim, lim, "k--", lw=1, label="estimate = exact")
ax.set_xlabel("exact diagonal $H_{ii}$ (explicit Hessian)")
ax.set_ylabel(r"Hutchinson estimate of $H_{ii}$ (mean of $u \odot Hu$)")
ax.set_title(f"Diagonal of the iris MLP's Hessian ({n_iris} parameters)")
ax.legend(fontsize=8)
ax = axes[1]
probes_axis = np.arange(1, N_PROBES + 1)
ax.loglog(probes_axis, rel_err, label="measured")
ax.loglog(probes_axis, rel_err[:10].mean() * np.sqrt(5.5) / np.sqrt(probes_axis), "k--",
          label=r"$\propto 1/\sqrt{\mathrm{probes}}$")
ax.set_xlabel("number of probe vectors u (Hessian-vector products)")
ax.set_ylabel(r"relative error $\|\hat d - \mathrm{diag}\,H\| / \|\mathrm{diag}\,H\|$")
ax.set_title("Hutchinson's error against the number of probes")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# **Sophia** (Liu et al., 2024; `rg.optim.Sophia`) keeps an exponential average $h$ of these estimates,
# refreshed every $k$ steps by `opt.update_hessian(loss)`, and divides the momentum by it, clipped:
#
# $$\theta \leftarrow \theta - \eta\,\operatorname{clip}\left(\frac{m}{\max(\rho\, h, \epsilon)}, -1, 1\right).$$
#
# Where the curvature $h_i$ is large the step is Newton-like, $m_i / (\rho h_i)$: short along sharp directions.
# Where $h_i$ is small, or negative (non-convex), the ratio is large and the clip caps the step at $\eta$ — a
# sign step, which is what keeps Sophia safe where a raw Newton step would fly off. Adam instead divides by
# $\sqrt{v}$, the root mean square of the gradient: a measure of gradient *size*, not curvature.
#
# On the digits MLP (minibatches of 64, three learning rates each, no weight decay, the same initial weights
# and batches), training loss against steps, and how many of Sophia's coordinates are clipped:

# %%
class DigitsMLP(rg.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = rg.nn.Linear(64, 32), rg.nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(self.fc1(x).tanh())


STEPS = 300 if SHORT else 600
batch_order = np.random.default_rng(0).integers(0, 1400, (STEPS, 64))
x_dig, y_dig = rg.tensor(xd[:1400]), rg.tensor(yd[:1400])


def run(make_opt):
    rg.manual_seed(0)
    model = DigitsMLP()
    opt = make_opt(model.parameters())
    losses, clipped = [], []
    for idx in batch_order:
        loss = F.cross_entropy(model(x_dig[idx]), y_dig[idx])
        opt.zero_grad()
        if isinstance(opt, rg.optim.Sophia) and opt.hessian_due():
            opt.update_hessian(loss)            # before backward: it differentiates the same graph twice
        loss.backward()
        opt.step()
        if isinstance(opt, rg.optim.Sophia):
            m = np.concatenate([opt.state[p]["exp_avg"].numpy().ravel() for p in model.parameters()])
            h = np.concatenate([opt.state[p]["hessian"].numpy().ravel() for p in model.parameters()])
            ratio = m / np.maximum(0.04 * h, 1e-12)
            clipped.append(np.mean(np.abs(ratio) >= 1))
        with rg.no_grad():
            losses.append(F.cross_entropy(model(x_dig), y_dig).item())
    return np.array(losses), np.array(clipped)


curves = {}
for lr in (1e-3, 3e-3, 1e-2):
    curves["Adam", lr] = run(lambda ps: rg.optim.Adam(ps, lr=lr))
    curves["Sophia", lr] = run(lambda ps: rg.optim.Sophia(ps, lr=lr, rho=0.04, weight_decay=0.0, k=10, seed=0))

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for (name, lr), (losses, clipped) in curves.items():
    style = "-" if name == "Adam" else "--"
    color = {1e-3: "C0", 3e-3: "C1", 1e-2: "C2"}[lr]
    axes[0].semilogy(losses, style, color=color, label=f"{name}, lr {lr:g}: final {losses[-1]:.3f}")
    if name == "Sophia":
        axes[1].plot(100 * clipped, color=color, label=f"Sophia, lr {lr:g}")
axes[0].set_xlabel("optimizer step (batch 64)")
axes[0].set_ylabel("training loss on all 1400 images (nats, log scale)")
axes[0].set_title("Adam (solid) vs Sophia (dashed) on a digits MLP")
axes[0].legend(fontsize=7, ncol=2)
axes[1].set_xlabel("optimizer step")
axes[1].set_ylabel("coordinates at the clip, |m/(ρh)| ≥ 1 (%)")
axes[1].set_title("Share of Sophia's coordinates taking a sign step")
axes[1].set_ylim(0, 100)
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
for name in ("Adam", "Sophia"):
    lr, (losses, clipped) = min(((lr, c) for (n, lr), c in curves.items() if n == name), key=lambda t: t[1][0][-1])
    extra = f"; {100 * clipped.mean():.0f}% of coordinates at the clip on average" if name == "Sophia" else ""
    print(f"{name:6s}: best lr {lr:g}, final training loss {losses[-1]:.4f}{extra}")

# %% [markdown]
# What to take away: each Sophia step costs one extra HVP every $k$ steps (here $k = 10$, about 10% more
# backward work), and in exchange the step along each coordinate is scaled by measured curvature. The right-hand
# plot shows how little of this small network actually gets the Newton-like step: with $\rho = 0.04$ most
# coordinates sit at the clip, where Sophia is a sign-of-momentum method with step $\eta$ (like Lion). Its
# advantage in the paper comes from large language models, whose curvature differs by orders of magnitude
# between parameters; on a small, well-scaled problem the comparison above is close and depends on the
# learning rate, so tune both before you compare them.

# %%
elapsed = time.perf_counter() - T_START
print(f"this page ran in {elapsed:.0f} s ({'short' if SHORT else 'full'} form; load average "
      f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")

# %% [markdown]
# ## Exercises
#
# 1. Drop the re-orthogonalisation line from `lanczos` and run 50 steps on the iris net. What happens to the Ritz
#    values (look for "ghost" copies of the top eigenvalue)?
# 2. Track $\lambda_{\max}$ (10 Lanczos steps) while training the digits MLP with gradient descent at
#    $\eta = 0.5$ and at $\eta = 2$. Does $\lambda_{\max}$ settle near $2/\eta$ ("the edge of stability",
#    Cohen et al. 2021)?
# 3. Replace the Rademacher probes by Gaussian ones in the Hutchinson estimate. Which has the smaller variance,
#    and why (hint: $\mathbb E[u_i^4]$)?
# 4. Give Sophia `rho=0.4` and `rho=0.004`. How does the clipped share change, and with it the training curve?
