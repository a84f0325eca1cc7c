"""The optimizers beyond ``torch.optim`` against Optax's reference implementations.

Every test drives one retrograd optimizer and its Optax counterpart in lock
step for 100 steps from the same weights (``optim_helpers``' MLP, ``(16, 4) ->
8 -> 3`` with tanh, the four parameters ``W1, b1, W2, b2``). Each step the
gradient is computed once, by retrograd at retrograd's parameters, and the SAME
arrays go to ``tx.update``: only the update rules are compared. At the end the
parameters (and, where there are several sequences, the other ones: Lookahead's
slow weights, schedule-free's ``x`` and ``z``) must agree to ``max |rg - optax|
/ max |optax| <= 1e-5`` in float32 and ``1e-10`` in float64, and must have moved
(no vacuous pass). Both run inside ``jax.enable_x64(True)``, which restores
the flag afterwards (float32 arrays stay float32). Optax's step is jit-compiled
once per optimizer structure and dtype, with the float hyperparameters traced.

Optax is the reference where it implements the same algorithm; where its
convention differs, the hyperparameters are mapped so both run the same
algorithm, and each test's docstring says precisely how and what stays out:

- Lion: identical (``optax.lion``'s ``weight_decay`` is decoupled and scaled by
  ``lr``, as in retrograd); the weight decay is always passed, since the
  defaults differ (Optax 1e-3, retrograd 0).
- LAMB: identical for ``bias_correction=True, trust_clip=None``; Optax has
  neither switch, so those two options are only checked against the paper
  (``test_optim_beyond``).
- LARS: identical for ``weight_decay=0``; with weight decay the trust ratios
  differ by design (see ``test_lars_weight_decay_trust_ratio_differs``).
- Lookahead: identical (``reset_state=False``), around Adam and SGD(momentum).
- Schedule-free AdamW/SGD: identical with ``r=0`` (Optax has no ``r``);
  Optax's ``warmup_steps`` shortcut feeds the z-step a learning rate one step
  behind the averaging weights, so warmup runs use ``optax.contrib.schedule_free``
  with the base optimizer's schedule shifted by one step (the reference
  implementation's convention, which retrograd follows), and Optax's schedule
  is evaluated at a float64 step count (it computes ``t / warmup`` in float32).
- Sophia: Optax bias-corrects the momentum and folds a new Hessian estimate in
  one step later than the paper; both are mapped exactly (see ``test_sophia``).
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import retrograd as rg
from optim_helpers import Net, default_dtype, initial_weights, rel_errors

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
optax = pytest.importorskip("optax")
optax_contrib = pytest.importorskip("optax.contrib")

STEPS = 100
TOL = {"float32": 1e-5, "float64": 1e-10}
DTYPES = ("float32", "float64")
SHAPES = ((4, 8), (8,), (8, 3), (3,))  # W1, b1, W2, b2


# --------------------------------------------------------------------------- Optax side
# An Optax optimizer is built from ``spec`` (a hashable tuple: which optimizer and
# its structural options) and ``hp`` (a dict of float hyperparameters). The step is
# jit-compiled once per spec and dtype with ``hp`` traced (Python floats stay
# weakly typed, so float32 runs stay float32): eager Optax costs ~1 s per 100-step
# run, the compiled step ~1 ms.
def _sf_schedule(hp: dict, warmup: int):
    """Optax's warmup schedule, evaluated at a float64 count: from the int32 step
    count it computes ``t / warmup`` in float32 even with x64 enabled, which
    would cap float64 runs at float32 rounding of the learning rate."""
    if not warmup:
        return hp["lr"]
    sched = optax.warmup_constant_schedule(0.0, hp["lr"], warmup)
    return lambda count: sched(jnp.asarray(count, jnp.float64))


def _build(spec: tuple, hp: dict):
    kind = spec[0]
    if kind == "lion":
        return optax.lion(hp["lr"], b1=hp["b1"], b2=hp["b2"], weight_decay=hp["wd"])
    if kind == "lamb":
        return optax.lamb(hp["lr"], b1=hp["b1"], b2=hp["b2"], eps=hp["eps"], weight_decay=hp["wd"])
    if kind == "lars":
        _, nesterov, adapt = spec
        return optax.lars(hp["lr"], weight_decay=hp["wd"], weight_decay_mask=list(adapt),
                          trust_coefficient=hp["eta"], eps=hp["eps"], trust_ratio_mask=list(adapt),
                          momentum=hp["mu"], nesterov=nesterov)
    if kind == "lookahead":
        _, inner, k, momentum, nesterov = spec
        if inner == "Adam":
            fast = optax.adam(hp["lr"], b1=hp["b1"], b2=hp["b2"], eps=hp["eps"])
        else:
            fast = optax.sgd(hp["lr"], momentum=hp["mu"] if momentum else None, nesterov=nesterov)
        return optax.lookahead(fast, sync_period=k, slow_step_size=hp["alpha"], reset_state=False)
    if kind in ("sf_adamw", "sf_sgd"):
        warmup = spec[1]
        sched = _sf_schedule(hp, warmup)
        # the z-step's learning rate at the averaging weight's step (see test_schedule_free)
        z_lr = (lambda count: sched(count + 1)) if warmup else sched
        if kind == "sf_adamw":
            base = optax.chain(optax.scale_by_rms(decay=hp["b2"], eps=hp["eps"], eps_in_sqrt=False,
                                                  bias_correction=True),
                               optax.add_decayed_weights(hp["wd"]), optax.scale_by_learning_rate(z_lr))
        else:
            base = optax.chain(optax.add_decayed_weights(hp["wd"]), optax.sgd(z_lr))
        return optax_contrib.schedule_free(base, sched, b1=hp["b1"], weight_lr_power=hp["power"])
    if kind == "sophia":
        return optax_contrib.sophia(hp["lr"], b1=hp["b1"], b2=hp["b2"], eps=hp["eps"], weight_decay=hp["wd"],
                                    gamma=hp["rho"], clip_threshold=1.0, update_interval=hp["k"],
                                    hessian_diagonal_fn=optax_contrib.hutchinson_estimator_diag_hessian(
                                        jax.random.PRNGKey(spec[1])))
    raise ValueError(kind)


@functools.partial(jax.jit, static_argnums=0)
def _optax_step(spec: tuple, hp: dict, grads, state, params, data=None):
    tx = _build(spec, hp)
    extra = {}
    if spec[0] == "sophia":
        X, Y = data
        extra["obj_fn"] = lambda ps: jnp.mean((X @ ps[0] + ps[1] - Y) ** 2)
    updates, state = tx.update(grads, state, params, **extra)
    return optax.apply_updates(params, updates), state


def _np(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in tree]


def _check(label: str, got: list[np.ndarray], want: list[np.ndarray], start: list[np.ndarray], dtype: str) -> float:
    """Relative agreement per parameter, dtype kept, and the parameters really moved."""
    for x, y in zip(got, want):
        assert x.dtype == y.dtype == np.dtype(dtype), (label, x.dtype, y.dtype)
    errs = rel_errors(got, want)
    assert max(errs) <= TOL[dtype], f"{label}: relative errors per parameter {errs} exceed {TOL[dtype]}"
    moved = rel_errors(want, start)
    assert max(moved) > 1e-2, f"{label}: the parameters hardly moved ({moved}): the comparison is vacuous"
    print(f"{label}: worst relative error {max(errs):.2e}")
    return max(errs)


def _lockstep(make_rg, spec: tuple, hp: dict, dtype: str, *, lookahead: bool = False, steps: int = STEPS):
    """Run retrograd's optimizer and Optax's on the same gradients (retrograd's, at
    retrograd's parameters); returns ``(rg_params, rg_opt, optax_params, optax_state, initial_values)``."""
    w = initial_weights(dtype)
    with default_dtype(dtype), jax.enable_x64(True):
        net = Net(rg, w)
        params = net.params[:4]  # c is unused (use_c=False): leave it out of both
        start = [p.detach().numpy().copy() for p in params]
        opt = make_rg(params)
        jp = [jnp.asarray(v.copy()) for v in start]
        if lookahead:
            jp = optax.LookaheadParams.init_synced(jp)
        state = _build(spec, hp).init(jp)
        for i in range(steps):
            opt.zero_grad()
            net.loss(i).backward()
            grads = [jnp.asarray(p.grad.detach().numpy().copy()) for p in params]
            opt.step()
            jp, state = _optax_step(spec, hp, grads, state, jp)
        return params, opt, jp, state, start


# --------------------------------------------------------------------------- Lion
LION_CASES = [
    dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0),
    dict(lr=3e-3, betas=(0.95, 0.98), weight_decay=0.1),
    dict(lr=1e-3, betas=(0.5, 0.999), weight_decay=1.0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", LION_CASES)
def test_lion(kw, dtype):
    """``optax.lion(lr, b1, b2, weight_decay)``: ``u = -lr (sign(c) + wd theta)``,
    the same as retrograd's ``theta (1 - lr wd) - lr sign(c)`` (Optax's default
    ``weight_decay=1e-3`` is overridden by retrograd's value)."""
    hp = dict(lr=kw["lr"], b1=kw["betas"][0], b2=kw["betas"][1], wd=kw["weight_decay"])
    params, _, jp, _, start = _lockstep(lambda ps: rg.optim.Lion(ps, **kw), ("lion",), hp, dtype)
    _check(f"Lion {kw} {dtype}", [p.data for p in params], _np(jp), start, dtype)


# --------------------------------------------------------------------------- LAMB
LAMB_CASES = [
    dict(lr=1e-2),
    dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-8, weight_decay=0.01),
    dict(lr=5e-3, betas=(0.9, 0.999), eps=1e-4, weight_decay=0.3),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", LAMB_CASES)
def test_lamb(kw, dtype):
    """``optax.lamb(lr, b1, b2, eps, weight_decay)`` = ``scale_by_adam`` (bias
    corrected, eps outside the root, ``eps_root=0``) + ``wd theta`` (no mask) +
    trust ratio ``||theta|| / ||r||`` (1 where a norm is 0) + ``-lr``: retrograd's
    ``LAMB`` with ``bias_correction=True, trust_clip=None``. Those two options
    have no Optax counterpart (they are checked against the paper in
    ``test_optim_beyond``)."""
    full = dict(betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0) | kw
    hp = dict(lr=full["lr"], b1=full["betas"][0], b2=full["betas"][1], eps=full["eps"], wd=full["weight_decay"])
    params, _, jp, _, start = _lockstep(lambda ps: rg.optim.LAMB(ps, **kw), ("lamb",), hp, dtype)
    _check(f"LAMB {kw} {dtype}", [p.data for p in params], _np(jp), start, dtype)


# --------------------------------------------------------------------------- LARS
LARS_CASES = [
    dict(lr=0.5, momentum=0.9, trust_coefficient=0.02, eps=1e-8),
    dict(lr=0.5, momentum=0.9, nesterov=True, trust_coefficient=0.02, eps=0.0),
    dict(lr=0.3, momentum=0.0, trust_coefficient=0.1, eps=1e-3),
    dict(lr=2.0, momentum=0.5, trust_coefficient=0.05, eps=1e-8, exclude_1d=False),
    dict(lr=5.0, momentum=0.95, nesterov=True, trust_coefficient=0.001, eps=1e-6, exclude_1d=False),
]


def _lars_spec(kw: dict) -> tuple:
    """retrograd's ``exclude_1d`` as Optax's two masks (both False for 1-D parameters when excluded)."""
    adapt = tuple(len(s) > 1 or not kw.get("exclude_1d", True) for s in SHAPES)
    return ("lars", kw.get("nesterov", False), adapt)


def _lars_hp(kw: dict) -> dict:
    return dict(lr=kw["lr"], wd=kw.get("weight_decay", 0.0), eta=kw["trust_coefficient"], eps=kw["eps"],
                mu=kw["momentum"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", LARS_CASES)
def test_lars(kw, dtype):
    """``optax.lars`` = ``g + wd theta`` (masked) -> trust ratio ``eta ||theta|| /
    (||g + wd theta|| + eps)`` (masked; 1 where a norm is 0) -> ``lr`` -> ``trace``
    (``b = mu b + d`` from ``b = 0``; nesterov ``d + mu b``). With
    ``weight_decay=0`` this is retrograd's LARS exactly: retrograd's first-step
    ``b_1 = d_1`` is the trace from zero, and ``lr`` before the trace equals
    ``lr`` after it for a constant ``lr``. ``exclude_1d`` maps to both masks;
    ``eps`` is passed explicitly (Optax's default is 0, retrograd's 1e-8). With
    weight decay the two differ by design: ``test_lars_weight_decay_trust_ratio_differs``."""
    params, _, jp, _, start = _lockstep(lambda ps: rg.optim.LARS(ps, **kw), _lars_spec(kw), _lars_hp(kw), dtype)
    _check(f"LARS {kw} {dtype}", [p.data for p in params], _np(jp), start, dtype)


def test_lars_weight_decay_trust_ratio_differs():
    """With ``weight_decay > 0`` the libraries compute different trust ratios, so
    their trajectories cannot be compared: retrograd follows the paper (You,
    Gitman & Ginsburg 2017, Algorithm 1) and timm, ``eta ||theta|| / (||g|| +
    lambda ||theta|| + eps)``; Optax takes the norm of the decayed update,
    ``eta ||theta|| / (||g + lambda theta|| + eps)``, which is larger (triangle
    inequality). The special cases follow: retrograd uses ratio 1 where ``||g||
    = 0``, Optax where ``||g + lambda theta|| = 0``. Checked here on one step
    from the same weights: each library matches its own formula, the biases
    (excluded from adaptation and decay in both) agree."""
    kw = dict(lr=0.5, momentum=0.9, weight_decay=0.05, trust_coefficient=0.02, eps=1e-8)
    dtype = "float64"
    params, _, jp, _, start = _lockstep(lambda ps: rg.optim.LARS(ps, **kw), _lars_spec(kw), _lars_hp(kw), dtype,
                                        steps=1)
    with default_dtype(dtype):
        ref = Net(rg, initial_weights(dtype))
        ref.loss(0).backward()
        grads = [p.grad.data for p in ref.params[:4]]
    got_rg, got_ox = [p.data for p in params], _np(jp)
    lam, eta, eps, lr = kw["weight_decay"], kw["trust_coefficient"], kw["eps"], kw["lr"]
    for i, (p0, g) in enumerate(zip(start, grads)):
        if p0.ndim == 1:
            np.testing.assert_allclose(got_rg[i], p0 - lr * g, rtol=1e-13)
            np.testing.assert_allclose(got_ox[i], p0 - lr * g, rtol=1e-13)
            continue
        d = g + lam * p0
        q_paper = eta * np.linalg.norm(p0) / (np.linalg.norm(g) + lam * np.linalg.norm(p0) + eps)
        q_optax = eta * np.linalg.norm(p0) / (np.linalg.norm(d) + eps)
        assert q_optax > q_paper * (1 + 1e-3)
        np.testing.assert_allclose(got_rg[i], p0 - lr * q_paper * d, rtol=1e-13)
        np.testing.assert_allclose(got_ox[i], p0 - lr * q_optax * d, rtol=1e-13)


# --------------------------------------------------------------------------- Lookahead
LOOKAHEAD_CASES = [
    ("Adam", dict(lr=1e-2), 5, 0.5),
    ("Adam", dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6), 5, 0.8),
    ("SGD", dict(lr=0.1, momentum=0.9), 3, 0.5),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True), 3, 0.3),
    ("SGD", dict(lr=0.2, momentum=0.5), 1, 0.5),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inner, kw, k, alpha", LOOKAHEAD_CASES)
def test_lookahead(inner, kw, k, alpha, dtype):
    """``optax.lookahead(fast, sync_period=k, slow_step_size=alpha, reset_state=False)``
    around ``optax.adam`` / ``optax.sgd``, which follow torch's Adam and SGD
    (eps outside the root; momentum buffer ``b = mu b + g`` from zero, nesterov
    ``g + mu b``). Gradients are taken at the fast weights; after 100 steps the
    fast weights (retrograd's parameters) and the slow weights agree (100 is a
    multiple of k = 1, 5 but not 3, so both phases of the cycle are compared).
    ``sync_period`` is structural in Optax (checked ``>= 1`` in Python), so each
    ``k`` costs a compilation: the cases share few."""
    b1, b2 = kw.get("betas", (0.9, 0.999))
    hp = dict(lr=kw["lr"], b1=b1, b2=b2, eps=kw.get("eps", 1e-8), mu=kw.get("momentum", 0.0), alpha=alpha)
    spec = ("lookahead", inner, k, bool(kw.get("momentum")), kw.get("nesterov", False))
    params, opt, jp, _, start = _lockstep(
        lambda ps: rg.optim.Lookahead(getattr(rg.optim, inner)(ps, **kw), k=k, alpha=alpha), spec, hp, dtype,
        lookahead=True)
    label = f"Lookahead({inner} {kw}, k={k}, alpha={alpha}) {dtype}"
    _check(label + " fast", [p.data for p in params], _np(jp.fast), start, dtype)
    slow = opt.state_dict()["lookahead"]["slow_weights"]
    _check(label + " slow", [slow[i] for i in range(4)], _np(jp.slow), start, dtype)


# --------------------------------------------------------------------------- schedule-free
SF_CASES = [
    ("ScheduleFreeAdamW", dict(lr=1e-2)),
    ("ScheduleFreeAdamW", dict(lr=2e-2, betas=(0.95, 0.99), eps=1e-6, weight_decay=0.05, weight_lr_power=1.0)),
    ("ScheduleFreeAdamW", dict(lr=1e-2, betas=(0.9, 0.999), weight_decay=0.01, warmup_steps=10)),
    ("ScheduleFreeAdamW", dict(lr=5e-3, betas=(0.8, 0.98), warmup_steps=10, weight_lr_power=0.0)),
    ("ScheduleFreeSGD", dict(lr=0.1)),
    ("ScheduleFreeSGD", dict(lr=0.2, momentum=0.95, weight_decay=0.01, weight_lr_power=1.0)),
    ("ScheduleFreeSGD", dict(lr=0.1, momentum=0.8, weight_decay=0.05, warmup_steps=10)),
    ("ScheduleFreeSGD", dict(lr=0.3, momentum=0.9, warmup_steps=10, weight_lr_power=0.5)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, kw", SF_CASES)
def test_schedule_free(name, kw, dtype):
    """``optax.contrib.schedule_free`` (Defazio et al. 2024) over the base chains
    of ``schedule_free_adamw`` / ``schedule_free_sgd``: ``z <- z - lr_t d_t``
    with ``d_t`` the base step at ``y`` (RMS, bias corrected, eps outside the
    root, plus ``wd y``; or ``g + wd y``), ``x <- (1 - c) x + c z`` with ``c =
    w_t / sum w``, ``w_t = max lr^weight_lr_power``, ``y = b1 x + (1 - b1) z``:
    retrograd's with ``r = 0`` (Optax has no ``r``; its weight is retrograd's
    with ``t^r = 1``). Without warmup the chain is exactly the shortcut's.

    Warmup: retrograd, like the reference facebookresearch/schedule_free, uses
    ``lr_t = lr min(1, t / warmup)`` (``t = k + 1``) for both the z-step and the
    averaging weight. Optax's ``warmup_steps`` shortcut evaluates the same
    ``warmup_constant_schedule`` at ``step_count = t`` for the weight but, via
    ``scale_by_learning_rate``'s own counter from 0, at ``t - 1`` for the z-step
    (its first z-step is 0): a one-step lag. With warmup the base chain's
    schedule is therefore shifted by one step (``sched(count + 1)``), which is
    the reference algorithm. Compared: ``y`` (the parameters in train mode),
    ``z``, and ``x`` (``eval()`` vs ``schedule_free_eval_params``)."""
    if name == "ScheduleFreeAdamW":
        full = dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, warmup_steps=0, weight_lr_power=2.0) | kw
        b1, b2 = full["betas"]
        spec = ("sf_adamw", full["warmup_steps"])
        hp = dict(lr=full["lr"], b1=b1, b2=b2, eps=full["eps"], wd=full["weight_decay"],
                  power=full["weight_lr_power"])
    else:
        full = dict(momentum=0.9, weight_decay=0.0, warmup_steps=0, weight_lr_power=2.0) | kw
        spec = ("sf_sgd", full["warmup_steps"])
        hp = dict(lr=full["lr"], b1=full["momentum"], wd=full["weight_decay"], power=full["weight_lr_power"])
    params, opt, jp, state, start = _lockstep(lambda ps: getattr(rg.optim, name)(ps, **kw), spec, hp, dtype)
    label = f"{name} {kw} {dtype}"
    _check(label + " y", [p.data for p in params], _np(jp), start, dtype)
    _check(label + " z", [opt.state[p]["z"].data for p in params], _np(state.z), start, dtype)
    opt.eval()
    with jax.enable_x64(True):
        x = optax_contrib.schedule_free_eval_params(state, jp)
    _check(label + " x", [p.data for p in params], _np(x), start, dtype)


def test_schedule_free_optax_warmup_shortcut_lags_one_step():
    """The lag described in ``test_schedule_free``, shown on the first step: with
    ``warmup_steps`` Optax's shortcut leaves ``z`` (and so the parameters) where
    they are, retrograd and the shifted chain move them by ``lr / warmup``."""
    g = jnp.ones(3)
    with jax.enable_x64(True):
        p0 = jnp.full(3, 2.0)
        tx = optax_contrib.schedule_free_sgd(0.5, warmup_steps=5, b1=0.9)
        u, state = tx.update(g, tx.init(p0), p0)
        np.testing.assert_array_equal(np.asarray(state.z), np.asarray(p0))
        np.testing.assert_array_equal(np.asarray(u), 0.0)
    p = rg.tensor(np.full(3, 2.0), requires_grad=True)
    opt = rg.optim.ScheduleFreeSGD([p], lr=0.5, momentum=0.9, warmup_steps=5)
    p.grad = rg.tensor(np.ones(3))
    opt.step()
    np.testing.assert_allclose(opt.state[p]["z"].data, 2.0 - 0.5 / 5)


# --------------------------------------------------------------------------- Sophia
SOPHIA_CASES = [
    dict(lr=1e-2, betas=(0.0, 0.99), rho=0.05, weight_decay=0.0, k=1, eps=1e-8),
    dict(lr=2e-2, betas=(0.0, 0.9), rho=0.5, weight_decay=0.1, k=3, eps=1e-12),
    dict(lr=1e-2, betas=(0.965, 0.99), rho=0.04, weight_decay=0.1, k=10, eps=1e-12),
    dict(lr=3e-2, betas=(0.9, 0.95), rho=2.0, weight_decay=0.02, k=4, eps=1e-6),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", SOPHIA_CASES)
def test_sophia(kw, dtype):
    """``optax.contrib.sophia(lr, b1, b2, eps, weight_decay, gamma=rho,
    clip_threshold=1, update_interval=k)`` with its own Hutchinson estimator
    (``hutchinson_estimator_diag_hessian``: ``u * (H u)``, ``u`` Rademacher drawn
    from a jax key, ``H u`` by ``jvp(grad(obj_fn))``). Optax differs from the
    paper (Liu et al., ICLR 2024, Algorithm 3), which retrograd follows, in two
    documented ways, both mapped exactly here:

    1. Optax divides the momentum by ``1 - b1^t`` (bias correction, after
       Levanter); the paper and retrograd do not. Optax is fed ``g'_t = (1 -
       b1^t) g_t + b1^t m_{t-1}`` (``m``: the uncorrected momentum of the same
       gradients), whose bias-corrected EMA is exactly ``m_t``; for ``b1 = 0``
       that is ``g`` itself (the first two cases feed the raw gradients).
    2. Optax draws the estimate at step ``t`` (``t % k == 0``, counting from 0)
       but folds it into ``h`` after that step's update, so it acts from step
       ``t + 1``; the paper folds ``h_t`` before step ``t``'s update. So
       retrograd's ``update_hessian`` is called one step later, with Optax's
       probe vectors (reproduced from the estimator's key), on a problem whose
       Hessian is constant (linear least squares ``mean((X W + b - Y)^2)``), so
       the estimate does not depend on which of the two points it is taken at.
       Before the first estimate both steps are ``lr sign(m)`` (``h = 0``, the
       ratio is clipped).

    Compared: the parameters and the Hessian EMA ``h``. Not comparable: the
    estimate on a curved loss (the lag changes the point where it is taken) and
    the random draws themselves (each library's own generator; here the same
    vector goes to both)."""
    lr, (b1, b2), rho, wd, k, eps = (kw[n] for n in ("lr", "betas", "rho", "weight_decay", "k", "eps"))
    seed = 42
    spec = ("sophia", seed)
    hp = dict(lr=lr, b1=b1, b2=b2, eps=eps, wd=wd, rho=rho, k=k)
    w = initial_weights(dtype)
    with default_dtype(dtype), jax.enable_x64(True):
        Wt = rg.tensor(w["W1"][:, :3].copy(), requires_grad=True)
        bt = rg.tensor(w["b2"].copy(), requires_grad=True)
        params = [Wt, bt]
        start = [p.detach().numpy().copy() for p in params]
        X, Y = rg.tensor(w["X"]), rg.tensor(w["Y"])

        def rg_loss():
            return ((X @ Wt + bt - Y) ** 2).mean()

        data = (jnp.asarray(w["X"]), jnp.asarray(w["Y"]))
        opt = rg.optim.Sophia(params, **kw)
        jp = [jnp.asarray(v.copy()) for v in start]
        state = _build(spec, hp).init(jp)
        key = jax.random.PRNGKey(seed)
        pending = None  # Optax's probes of step t, for retrograd's update_hessian at t + 1
        m = [np.zeros_like(v) for v in start]
        for t in range(STEPS):
            for p in params:
                p.grad = None
            loss = rg_loss()
            if pending is not None:
                opt.update_hessian(loss, u=pending)
                pending = None
            if t % k == 0:  # the draw Optax's estimator makes inside this step's update
                key, sub = jax.random.split(key)
                signs = optax.tree.random_like(sub, jp, jax.random.rademacher, dtype=jnp.float32)
                pending = [np.asarray(s).astype(dtype) for s in signs]
            loss.backward()
            g = [p.grad.detach().numpy().copy() for p in params]
            opt.step()
            c = b1 ** (t + 1)
            fed = [(1 - c) * gi + c * mi for gi, mi in zip(g, m)] if b1 else g
            m = [b1 * mi + (1 - b1) * gi for gi, mi in zip(g, m)]
            jp, state = _optax_step(spec, hp, [jnp.asarray(x) for x in fed], state, jp, data)
        if pending is not None:  # Optax folded its last draw after the last step: fold it here too
            opt.update_hessian(rg_loss(), u=pending)
        label = f"Sophia {kw} {dtype}"
        _check(label, [p.data for p in params], _np(jp), start, dtype)
        nu = _np(state[0].nu)
        _check(label + " h", [opt.state[p]["hessian"].data for p in params], nu, [np.zeros_like(v) for v in nu],
               dtype)
