"""The algorithms' formulas on fixed batches against independent computations: GAE against a direct
sum, PPO's clipped loss and gradient against torch, A2C/REINFORCE losses and DQN targets against NumPy."""
import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd.distributions import Categorical
from retrograd.rl.a2c import a2c_loss
from retrograd.rl.dqn import dqn_targets, linear_schedule
from retrograd.rl.ppo import ppo_loss
from retrograd.rl.reinforce import reinforce_loss
from retrograd.rl.returns import discounted_returns, gae

RNG = np.random.default_rng(1)


def direct_gae(rewards, values, dones, last_value, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l}, summed until the episode ends or the rollout does."""
    T, N = rewards.shape
    nxt = np.concatenate([values[1:], last_value[None]])
    delta = rewards + gamma * (1 - dones) * nxt - values
    adv = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            total, w = 0.0, 1.0
            for k in range(t, T):
                total += w * delta[k, n]
                if dones[k, n]:
                    break
                w *= gamma * lam
            adv[t, n] = total
    return adv


@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
def test_gae_against_direct_sum(lam):
    T, N = 9, 3
    rewards = RNG.normal(size=(T, N)).astype(np.float32)
    values = RNG.normal(size=(T, N)).astype(np.float32)
    dones = np.zeros((T, N), np.float32)
    dones[2, 0] = dones[7, 0] = dones[4, 1] = dones[8, 2] = 1  # env 2 ends on the rollout's last step
    last = RNG.normal(size=N).astype(np.float32)
    adv, ret = gae(rewards, values, dones, last, 0.97, lam)
    expected = direct_gae(rewards, values, dones, last, 0.97, lam)
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, expected + values, rtol=1e-5, atol=1e-5)
    if lam == 1.0:  # Monte Carlo returns within an episode, bootstrapped with last_value at the cut
        g = 0.0
        for t in reversed(range(T)):
            g = rewards[t, 1] + 0.97 * (0.0 if dones[t, 1] else (last[1] if t == T - 1 else g))
            np.testing.assert_allclose(ret[t, 1], g, rtol=1e-5)


def test_truncation_bootstrap_in_rollout_reward():
    """A time-limit cut adds gamma V(s_final) to the last reward; with done=1 GAE then treats it as the end."""
    r = np.array([[1.0], [1.0]], np.float32)
    r_cut = r.copy()
    r_cut[1] += 0.9 * 5.0  # V(s_final) = 5
    adv, ret = gae(r_cut, np.zeros((2, 1), np.float32), np.array([[0.0], [1.0]], np.float32),
                   np.array([100.0], np.float32), 0.9, 1.0)
    np.testing.assert_allclose(ret[:, 0], [1 + 0.9 * (1 + 0.9 * 5), 1 + 0.9 * 5], rtol=1e-6)


def test_discounted_returns():
    r = np.array([1.0, 0.0, 2.0, -1.0])
    np.testing.assert_allclose(discounted_returns(r, 0.5), [1 + 0.25 * 2 - 0.125, 0.5 * 2 - 0.25, 2 - 0.5, -1],
                               rtol=1e-6)


@pytest.mark.parametrize("clip_vloss", [False, True])
@pytest.mark.parametrize("norm_adv", [False, True])
def test_ppo_loss_and_gradient_match_torch(clip_vloss, norm_adv):
    B, A = 16, 3
    logits = RNG.normal(size=(B, A)).astype(np.float32)
    new_v = RNG.normal(size=B).astype(np.float32)
    actions = RNG.integers(0, A, B)
    old_logp = (np.log(np.exp(logits) / np.exp(logits).sum(1, keepdims=True))[np.arange(B), actions]
                + RNG.normal(0, 0.3, B)).astype(np.float32)  # ratios both inside and outside the clip range
    adv = RNG.normal(size=B).astype(np.float32)
    old_v = (new_v + RNG.normal(0, 0.5, B)).astype(np.float32)
    ret = RNG.normal(size=B).astype(np.float32)
    kw = dict(clip_coef=0.2, vf_coef=0.5, ent_coef=0.01)

    lg, v = rg.tensor(logits, requires_grad=True), rg.tensor(new_v, requires_grad=True)
    dist = Categorical(logits=lg)
    loss, info = ppo_loss(dist.log_prob(rg.tensor(actions)), old_logp, adv, v, old_v, ret, dist.entropy(),
                          norm_adv=norm_adv, clip_vloss=clip_vloss, **kw)
    loss.backward()

    tlg, tv = torch.tensor(logits, requires_grad=True), torch.tensor(new_v, requires_grad=True)
    tdist = torch.distributions.Categorical(logits=tlg)
    ratio = torch.exp(tdist.log_prob(torch.tensor(actions)) - torch.tensor(old_logp))
    a = torch.tensor(adv)
    if norm_adv:
        a = (a - a.mean()) / (a.std() + 1e-8)
    pg = torch.max(-a * ratio, -a * torch.clamp(ratio, 0.8, 1.2)).mean()
    tr = torch.tensor(ret)
    if clip_vloss:
        tov = torch.tensor(old_v)
        vc = tov + torch.clamp(tv - tov, -0.2, 0.2)
        vl = 0.5 * torch.max((tv - tr) ** 2, (vc - tr) ** 2).mean()
    else:
        vl = 0.5 * ((tv - tr) ** 2).mean()
    tloss = pg - 0.01 * tdist.entropy().mean() + 0.5 * vl
    tloss.backward()
    np.testing.assert_allclose(float(loss.item()), float(tloss.detach()), rtol=1e-5)
    np.testing.assert_allclose(lg.grad.numpy(), tlg.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(v.grad.numpy(), tv.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert 0 < info["clip_fraction"] < 1
    np.testing.assert_allclose(info["policy_loss"], float(pg.detach()), rtol=1e-5)


def test_a2c_and_reinforce_losses_against_numpy():
    B = 10
    logp = RNG.normal(-1, 0.5, B).astype(np.float32)
    value = RNG.normal(size=B).astype(np.float32)
    ret = RNG.normal(size=B).astype(np.float32)
    adv = RNG.normal(size=B).astype(np.float32)
    ent = RNG.uniform(0.1, 1.0, B).astype(np.float32)
    lp_t, v_t = rg.tensor(logp, requires_grad=True), rg.tensor(value, requires_grad=True)
    loss, _ = a2c_loss(lp_t, adv, v_t, ret, rg.tensor(ent), vf_coef=0.25, ent_coef=0.01)
    expect = -(adv * logp).mean() + 0.25 * ((ret - value) ** 2).mean() - 0.01 * ent.mean()
    np.testing.assert_allclose(loss.item(), expect, rtol=1e-5)
    loss.backward()
    np.testing.assert_allclose(lp_t.grad.numpy(), -adv / B, rtol=1e-5)
    np.testing.assert_allclose(v_t.grad.numpy(), 0.25 * 2 * (value - ret) / B, rtol=1e-5)

    lp_t, v_t = rg.tensor(logp, requires_grad=True), rg.tensor(value, requires_grad=True)
    loss, _ = reinforce_loss(lp_t, ret, v_t, rg.tensor(ent), vf_coef=0.5, ent_coef=0.0, norm_adv=True)
    a = ret - value
    a = (a - a.mean()) / (a.std(ddof=1) + 1e-8)
    np.testing.assert_allclose(loss.item(), -(a * logp).mean() + 0.5 * ((ret - value) ** 2).mean(), rtol=1e-5)
    loss.backward()
    np.testing.assert_allclose(lp_t.grad.numpy(), -a / B, rtol=1e-4)  # the baseline is not differentiated
    np.testing.assert_allclose(v_t.grad.numpy(), (value - ret) / B, rtol=1e-5)


@pytest.mark.parametrize("double", [False, True])
def test_dqn_targets_against_numpy(double):
    B, A = 12, 4
    r = RNG.normal(size=B).astype(np.float32)
    term = (RNG.random(B) < 0.3).astype(np.float32)
    qt = RNG.normal(size=(B, A)).astype(np.float32)
    qo = RNG.normal(size=(B, A)).astype(np.float32)
    y = dqn_targets(r, term, qt, 0.9, qo if double else None)
    for i in range(B):
        a_star = int(np.argmax(qo[i])) if double else int(np.argmax(qt[i]))
        expect = r[i] + (0.0 if term[i] else 0.9 * qt[i, a_star])
        np.testing.assert_allclose(y[i], expect, rtol=1e-6)
    if double:  # the two targets differ where the nets disagree on a'
        assert not np.allclose(y, dqn_targets(r, term, qt, 0.9))


def test_linear_epsilon_schedule():
    assert linear_schedule(1.0, 0.05, 100, 0) == 1.0
    np.testing.assert_allclose(linear_schedule(1.0, 0.05, 100, 50), 0.525)
    assert linear_schedule(1.0, 0.05, 100, 1000) == 0.05


def test_running_mean_std_matches_numpy():
    from retrograd.rl.envs import RunningMeanStd
    rms = RunningMeanStd((3,), epsilon=1e-12)  # the prior (mean 0, var 1) weighs 1e-12 of a sample
    batches = [RNG.normal(2.0, 3.0, size=(n, 3)) for n in (5, 1, 17, 8)]
    for b in batches:
        rms.update(b)
    allx = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, allx.mean(0), rtol=1e-9)
    np.testing.assert_allclose(rms.var, allx.var(0), rtol=1e-9)
    np.testing.assert_allclose(rms.count, len(allx))
