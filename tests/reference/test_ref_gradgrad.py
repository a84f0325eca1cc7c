"""Second derivatives of the main ops: Hessian-vector products against PyTorch's
double backward, and ``rg.autograd.gradgradcheck`` against finite differences."""
from __future__ import annotations

import pytest

from ref_helpers import compare_hvp_with_torch, gradgradcheck_float64
from test_ref_ops import TABLE

MAIN_OPS = {
    "add", "sub", "mul", "div", "pow", "pow_scalar2", "pow_scalar_half", "rpow", "rdiv_scalar", "neg",
    "maximum", "minimum", "atan2", "matmul", "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "abs", "sin",
    "cos", "tan", "tanh", "sigmoid", "relu", "erf", "softplus", "clamp", "where", "masked_fill", "sum",
    "sum_dim", "mean", "mean_dim", "var", "var_dim", "std", "std_dim", "max", "max_dim", "amax_dims",
    "logsumexp", "prod", "prod_dim", "cumsum", "cumprod", "norm", "norm_dim", "norm_p1", "norm_p3",
    "softmax", "log_softmax", "reshape", "permute", "transpose", "expand", "repeat", "flip", "roll", "cat",
    "stack", "split", "pad", "pad_reflect", "pad_replicate", "pad_circular", "tril", "gather",
    "take_along_dim", "index_select", "scatter_add", "getitem_slice_step", "getitem_intarray",
    "getitem_mask", "einsum_batch", "einsum_attn", "einsum_diag", "einsum_ellipsis", "sort", "topk",
}
# the first shape of each main op that has elements (second derivatives of size-0 tensors say nothing)
GG_CASES = []
for _c in TABLE:
    if _c.name in MAIN_OPS and _c.name not in {c.name for c in GG_CASES} \
            and all(all(s for s in i.shape) for i in _c.inputs):
        GG_CASES.append(_c)
assert {c.name for c in GG_CASES} == MAIN_OPS, MAIN_OPS - {c.name for c in GG_CASES}
IDS = [c.id for c in GG_CASES]


@pytest.mark.parametrize("case", GG_CASES, ids=IDS)
def test_hvp_against_torch(case):
    compare_hvp_with_torch(case)


@pytest.mark.parametrize("case", GG_CASES, ids=IDS)
def test_gradgradcheck(case):
    gradgradcheck_float64(case)
