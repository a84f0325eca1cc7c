"""Autocast and GradScaler against PyTorch 2.13 on the CPU."""
import warnings

import numpy as np
import pytest
import torch

import retrograd as rg


def _mlp_pair():
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    rm = rg.nn.Sequential(rg.nn.Linear(8, 16), rg.nn.ReLU(), rg.nn.Linear(16, 4))
    rm.load_state_dict({k: rg.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    return tm, rm


def test_autocast_mlp_forward_backward_matches_torch():
    tm, rm = _mlp_pair()
    x = torch.randn(32, 8)
    y = torch.randint(0, 4, (32,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_t = tm(x)
        sm_t = out_t.softmax(-1)
        loss_t = torch.nn.functional.cross_entropy(out_t, y)
        mse_t = torch.nn.functional.mse_loss(out_t, torch.zeros(32, 4))
    with rg.autocast("cpu", dtype=rg.bfloat16):
        assert rg.is_autocast_enabled("cpu") and rg.get_autocast_dtype("cpu") == rg.bfloat16
        out_r = rm(rg.tensor(x.numpy()))
        sm_r = out_r.softmax(-1)
        loss_r = rg.nn.functional.cross_entropy(out_r, rg.tensor(y.numpy()))
        mse_r = rg.nn.functional.mse_loss(out_r, rg.zeros(32, 4))
    assert not rg.is_autocast_enabled("cpu")
    for r, t in ((out_r, out_t), (sm_r, sm_t), (loss_r, loss_t), (mse_r, mse_t)):
        assert str(r.dtype) == str(t.dtype).replace("torch.", "")
    assert np.array_equal(out_r.float().detach().numpy(), out_t.float().detach().numpy())
    assert abs(loss_r.item() - loss_t.item()) <= 1e-6 * abs(loss_t.item())
    loss_t.backward()
    loss_r.backward()
    for p, q in zip(rm.parameters(), tm.parameters()):
        assert p.grad.dtype == rg.float32  # the float32 weights get float32 gradients through the cast
        scale = np.abs(q.grad.numpy()).max()
        assert np.abs(p.grad.numpy() - q.grad.numpy()).max() <= scale * 2 ** -8


def test_autocast_conv_attention_dtypes():
    x = torch.randn(2, 3, 8, 8)
    k = torch.randn(4, 3, 3, 3)
    q = torch.randn(2, 2, 5, 8)
    with torch.autocast("cpu"):
        ct = torch.nn.functional.conv2d(x, k)
        at = torch.nn.functional.scaled_dot_product_attention(q, q, q)
        pt = (x @ x.transpose(-1, -2)).sum()
    with rg.autocast("cpu"):
        cr = rg.nn.functional.conv2d(rg.tensor(x.numpy()), rg.tensor(k.numpy()))
        ar = rg.nn.functional.scaled_dot_product_attention(*(rg.tensor(q.numpy()),) * 3)
        pr = (rg.tensor(x.numpy()) @ rg.tensor(x.numpy()).transpose(-1, -2)).sum()
    assert (cr.dtype, ar.dtype, pr.dtype) == (rg.bfloat16, rg.bfloat16, rg.bfloat16)
    assert (ct.dtype, at.dtype, pt.dtype) == (torch.bfloat16,) * 3
    assert np.abs(cr.float().numpy() - ct.float().numpy()).max() <= np.abs(ct.float().numpy()).max() * 2 ** -7
    assert np.abs(ar.float().numpy() - at.float().numpy()).max() <= np.abs(at.float().numpy()).max() * 2 ** -6


def test_autocast_forms_and_cuda_warning():
    @rg.autocast("cpu")
    def f(a):
        return a @ a

    assert f(rg.ones(2, 2)).dtype == rg.bfloat16
    with rg.autocast("cpu", enabled=False):
        assert (rg.ones(2, 2) @ rg.ones(2, 2)).dtype == rg.float32
    with rg.autocast("cpu", dtype=rg.float16):
        assert (rg.ones(2, 2) @ rg.ones(2, 2)).dtype == rg.float16
    with pytest.warns(UserWarning, match="CUDA is not available"):
        ctx = rg.autocast("cuda")
    with ctx:
        assert (rg.ones(2, 2) @ rg.ones(2, 2)).dtype == rg.float32
        assert not rg.is_autocast_enabled() and not rg.is_autocast_enabled("cuda")
    with pytest.warns(UserWarning, match="target dtype is not supported"):
        rg.autocast("cpu", dtype=rg.float64)
    with pytest.warns(FutureWarning, match=r"torch.cpu.amp.autocast\(args...\)` is deprecated"):
        c = rg.cpu.amp.autocast()
    with c:
        assert (rg.ones(2, 2) @ rg.ones(2, 2)).dtype == rg.bfloat16
    with pytest.warns(FutureWarning), pytest.warns(UserWarning, match="CUDA is not available"):
        rg.cuda.amp.autocast()
    from retrograd.amp import autocast as a2
    assert a2 is rg.autocast
    assert rg.get_autocast_dtype("cuda") == rg.float16 and rg.amp.is_autocast_available("cpu")


def _scaler_run(lib, make_scaler):
    torch.manual_seed(1)
    p = lib.tensor(np.array([0.5, -1.0, 1.5, 2.0, -0.25, 0.75], np.float32), requires_grad=True)
    opt = lib.optim.SGD([p], lr=0.1)
    scaler = make_scaler()
    log = []
    for step in range(6):
        opt.zero_grad()
        loss = (p * p).sum() * (float("inf") if step == 2 else 1.0)
        scaled = scaler.scale(loss)
        log.append(float(scaled.item()) if step != 2 else None)
        scaled.backward()
        if step == 3:
            scaler.unscale_(opt)
            log.append(np.asarray(p.grad.detach().numpy()).tolist())
        scaler.step(opt)
        scaler.update()
        log.append((scaler.get_scale(), scaler.state_dict()["_growth_tracker"], p.detach().numpy().tolist()))
    return log, scaler.state_dict()


def test_grad_scaler_cpu_matches_torch_with_skipped_inf_step():
    kw = dict(init_scale=2.0 ** 10, growth_interval=2, growth_factor=4.0, backoff_factor=0.25)
    lt, st = _scaler_run(torch, lambda: torch.amp.GradScaler("cpu", **kw))
    lr, sr = _scaler_run(rg, lambda: rg.amp.GradScaler("cpu", **kw))
    def flat(v):
        return [z for x in v for z in (flat(x) if isinstance(x, (list, tuple)) else [x])]
    assert [x is None for x in flat(lr)] == [x is None for x in flat(lt)] and sr == st  # same scales, same skip
    assert [0 if x is None else x for x in flat(lr)] == pytest.approx([0 if x is None else x for x in flat(lt)], rel=1e-6, abs=0)  # float32 sums of 6 products: within an ulp
    s = rg.amp.GradScaler("cpu")
    s.load_state_dict(sr)
    assert s.get_scale() == st["scale"] and s.state_dict() == st


def test_grad_scaler_cuda_is_a_warned_no_op():
    with pytest.warns(UserWarning, match="CUDA is not available.  Disabling"):
        s = rg.amp.GradScaler("cuda")
    with pytest.warns(UserWarning, match="CUDA is not available.  Disabling"):
        rg.amp.GradScaler()
    with pytest.warns(FutureWarning, match="torch.cuda.amp.GradScaler"), pytest.warns(UserWarning):
        rg.cuda.amp.GradScaler()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = torch.amp.GradScaler("cuda")
    p = rg.tensor([1.0, 2.0], requires_grad=True)
    opt = rg.optim.SGD([p], lr=0.5)
    loss = (p * p).sum()
    assert s.scale(loss) is loss
    loss.backward()
    s.step(opt)
    s.update()
    assert p.tolist() == [0.0, 0.0]
    assert (s.get_scale(), s.is_enabled(), s.state_dict()) == (ts.get_scale(), ts.is_enabled(), ts.state_dict()) == (1.0, False, {})
    with pytest.raises(RuntimeError, match="state dict is empty"):
        rg.amp.GradScaler("cpu").load_state_dict({})
    with pytest.raises(AssertionError, match="_scale is None"):
        rg.amp.GradScaler("cpu").update()


def test_importable_paths():
    from retrograd.cuda.amp import GradScaler  # noqa: F401
    from retrograd.cpu.amp import autocast  # noqa: F401
    import retrograd.cpu.amp  # noqa: F401
    assert rg.cpu.is_available()
