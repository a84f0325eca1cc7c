"""CombinedOptimizer and muon_param_groups: Muon for the hidden weights, AdamW for the rest, as
PyTorch users write it with two optimizers (torch.optim.Muon's docstring)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import retrograd as rg
from retrograd.models import CNN, GPT, MLP

from optim_helpers import TOL, rel_errors


def _shapes(params):
    return [tuple(p.shape) for p in params]


def test_muon_param_groups_give_muon_the_hidden_weights_only():
    hidden, rest = rg.optim.muon_param_groups(MLP([64, 32, 16, 10]))
    assert _shapes(hidden) == [(32, 64), (16, 32)]           # the output layer (10, 16) is the head
    assert _shapes(rest) == [(32,), (16,), (10, 16), (10,)]
    gpt = GPT(vocab_size=20, block_size=8, n_layer=1, n_head=2, d_model=16)
    hidden, rest = rg.optim.muon_param_groups(gpt)
    assert _shapes(hidden) == [(48, 16), (16, 16), (64, 16), (16, 64)]  # attention and MLP matrices
    names = {id(p): n for n, p in gpt.named_parameters()}
    assert {names[id(p)] for p in rest} >= {"tok.weight", "pos.weight", "head.weight", "ln.weight"}
    hidden, rest = rg.optim.muon_param_groups(CNN(channels=[4], hidden=[16], input_size=8))
    assert _shapes(hidden) == [(16, 36)] and (4, 1, 3, 3) in _shapes(rest)  # conv kernels: not 2-D
    # torch.optim.Muon takes exactly the 2-D ones of what we give it
    for p in hidden:
        torch.optim.Muon([torch.zeros(tuple(p.shape), requires_grad=True)])
    with pytest.raises(ValueError, match="MLP has no hidden 2-D weight for Muon"):
        rg.optim.muon_param_groups(MLP([64, 10]))


def _net(lib, rng_seed=0):
    """(hidden weight, bias, head weight) as leaves of ``lib``, the same values in both."""
    rng = np.random.default_rng(rng_seed)
    vals = [rng.standard_normal((8, 6)).astype(np.float32), rng.standard_normal(8).astype(np.float32),
            rng.standard_normal((3, 8)).astype(np.float32)]
    if lib is torch:
        return [torch.tensor(v, requires_grad=True) for v in vals]
    return [rg.tensor(v, requires_grad=True) for v in vals]


def _grad(value: np.ndarray, step: int) -> np.ndarray:
    # each parameter's gradient depends on its own value only, so the AdamW part of the
    # trajectory does not inherit Muon's bfloat16 roundings
    return (np.sin(value * (1 + step % 3)) + 0.1 * value).astype(np.float32)


def test_combined_muon_adamw_matches_torchs_two_optimizers():
    """20 steps of CombinedOptimizer(Muon, AdamW) against torch.optim.Muon + torch.optim.AdamW
    stepped one after the other on the same parameters: AdamW's part to float32 rounding, Muon's
    to its bfloat16 update (bit for bit where PyTorch runs its AVX2 kernels, see test_optim_torch_extra)."""
    tp, rp = _net(torch), _net(rg)
    t_muon, t_adamw = torch.optim.Muon(tp[:1], lr=0.02), torch.optim.AdamW(tp[1:], lr=3e-3, weight_decay=0.01)
    opt = rg.optim.CombinedOptimizer(rg.optim.Muon(rp[:1], lr=0.02),
                                     rg.optim.AdamW(rp[1:], lr=3e-3, weight_decay=0.01))
    for step in range(20):
        for p, q in zip(rp, tp):
            g = _grad(q.detach().numpy(), step)
            q.grad = torch.tensor(g)
            p.grad = rg.tensor(_grad(np.asarray(p.data), step))
        t_muon.step()
        t_adamw.step()
        opt.step()
        opt.zero_grad()
    ours, theirs = [np.asarray(p.data) for p in rp], [q.detach().numpy() for q in tp]
    assert max(rel_errors(ours[1:], theirs[1:])) <= TOL["float32"]
    assert rel_errors(ours[:1], theirs[:1])[0] <= 2.0 ** -6
    assert np.abs(ours[0] - np.asarray(_net(rg)[0].data)).max() > 0.05  # Muon moved its weight


def _combined(params, lr=0.02):
    return rg.optim.CombinedOptimizer(rg.optim.Muon(params[:1], lr=lr), rg.optim.AdamW(params[1:], lr=3e-3))


def _run(opt, params, steps, start=0):
    for step in range(start, start + steps):
        for p in params:
            p.grad = rg.tensor(_grad(np.asarray(p.data), step))
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("wrap", [False, True], ids=["combined", "lookahead"])
def test_state_dict_round_trip_continues_exactly(wrap):
    """Save after 7 steps, load into a fresh optimizer on copies of the weights, 6 more steps:
    bit for bit the run of 13 (also inside Lookahead, which wraps the combined optimizer)."""
    def make(params):
        opt = _combined(params)
        return rg.optim.Lookahead(opt, k=3, alpha=0.5) if wrap else opt

    full = _net(rg)
    opt = make(full)
    _run(opt, full, 13)
    cut = _net(rg)
    opt = make(cut)
    _run(opt, cut, 7)
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1, 2]]   # numbered across the optimizers
    assert sorted(sd["state"]) == [0, 1, 2] and set(sd["state"][0]) == {"momentum_buffer"}
    if not wrap:
        assert sd["optimizers"] == [{"name": "Muon", "param_groups": 1}, {"name": "AdamW", "param_groups": 1}]
    import copy
    sd = copy.deepcopy(sd)
    again = [rg.tensor(np.asarray(p.data).copy(), requires_grad=True) for p in cut]
    opt2 = make(again)
    opt2.load_state_dict(sd)
    _run(opt2, again, 6, start=7)
    for a, b in zip(full, again):
        assert np.array_equal(np.asarray(a.data), np.asarray(b.data))


def test_load_state_dict_checks_before_changing_anything():
    params = _net(rg)
    opt = _combined(params)
    _run(opt, params, 2)
    before = [np.asarray(v.data).copy() for v in opt.state_dict()["state"][1].values()]
    other = rg.optim.CombinedOptimizer(rg.optim.Muon(params[:1]), rg.optim.Adam(params[1:]))
    with pytest.raises(ValueError, match=r"of optimizers Muon \(1 groups\) \+ Adam \(1 groups\), this one "
                                         r"combines Muon \(1 groups\) \+ AdamW \(1 groups\)"):
        opt.load_state_dict(other.state_dict())
    sd = opt.state_dict()
    bad = {"state": {**sd["state"], 2: {"step": sd["state"][2]["step"], "exp_avg": np.zeros(5),
                                        "exp_avg_sq": np.zeros((3, 8))}},
           "param_groups": sd["param_groups"], "optimizers": sd["optimizers"]}
    with pytest.raises(ValueError, match="state 'exp_avg' of parameter 1 has shape"):
        opt.load_state_dict(bad)
    after = [np.asarray(v.data) for v in opt.state_dict()["state"][1].values()]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_combined_optimizer_with_a_scheduler_and_errors():
    params = _net(rg)
    opt = _combined(params)
    sched = rg.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    _run(opt, params, 1)
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.01, 1.5e-3]  # each group from its own initial lr
    with pytest.raises(ValueError, match="a parameter belongs to two of the optimizers"):
        rg.optim.CombinedOptimizer(rg.optim.Muon(params[:1]), rg.optim.AdamW(params))
    with pytest.raises(TypeError, match="expected retrograd optimizers, got SGD"):
        rg.optim.CombinedOptimizer(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
