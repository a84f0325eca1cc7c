"""Composite functions built from ops, as ``torch.nn.functional`` (``import retrograd.nn.functional as F``).

One module per op family, each holding its rules, its compiled kernels and its public functions:
``activation``, ``dense`` (linear, bilinear), ``sparse`` (embedding), ``regularization`` (dropout),
``norm``, ``loss``, ``conv``, ``pool``, ``resample`` (interpolate) and ``attention``; ``_args`` holds
the argument checks they share. (No family module is named like a function it holds: ``F.linear``
must stay the function, not a submodule ``linear.py``.)

Most functions are short compositions of Tensor methods (so they get second-order gradients for
free); the hot or numerically delicate ones (GELU, ELU family, leaky ReLU, hardtanh, SiLU, embedding,
the fused log-softmax + NLL of ``cross_entropy``, conv2d and its two adjoints, max/avg pooling, the
attention core ``softmax(Q K^T scale + mask) V`` and CTC's forward-backward) are ``Rule``s with their
backward written next to their forward.
"""
from ...tensor_functions import pad
from .activation import (celu, elu, gelu, hardtanh, leaky_relu, log_softmax, mish, prelu, relu, relu6, selu,
                         sigmoid, silu, softmax, softplus, softsign, tanh)
from .activation import (celu_, elu_, hardsigmoid, hardswish, hardtanh_, leaky_relu_, relu_, selu_, threshold,
                         threshold_)
from .activation import logsigmoid
from .attention import multi_head_attention_forward, scaled_dot_product_attention
from .conv import conv1d, conv2d, conv_transpose1d, conv_transpose2d
from .dense import bilinear, linear
from .loss import (binary_cross_entropy, binary_cross_entropy_with_logits, cosine_embedding_loss, cross_entropy,
                   ctc_loss, gaussian_nll_loss, huber_loss, kl_div, l1_loss, margin_ranking_loss, mse_loss,
                   nll_loss, pairwise_distance, poisson_nll_loss, sigmoid_focal_loss, smooth_l1_loss,
                   triplet_margin_loss, soft_margin_loss, hinge_embedding_loss, multilabel_soft_margin_loss)
from .norm import batch_norm, group_norm, layer_norm, normalize, rms_norm
from .pool import (adaptive_avg_pool1d, adaptive_avg_pool2d, avg_pool1d, avg_pool2d, max_pool1d,
                   max_pool2d)
from .regularization import dropout, dropout1d, dropout2d, dropout3d
from .resample import interpolate, pixel_shuffle, pixel_unshuffle
from .sparse import embedding, one_hot

__all__ = [
    "relu_", "elu_", "selu_", "celu_", "leaky_relu_", "hardtanh_", "hardsigmoid", "hardswish", "threshold",
    "threshold_",
    "relu", "relu6", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid", "tanh",
    "hardtanh", "softplus", "softsign", "softmax", "log_softmax", "linear", "bilinear", "embedding",
    "dropout", "layer_norm", "rms_norm", "group_norm", "batch_norm", "mse_loss", "l1_loss",
    "smooth_l1_loss", "huber_loss", "cross_entropy", "nll_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "kl_div", "cosine_embedding_loss", "margin_ranking_loss",
    "pairwise_distance", "triplet_margin_loss", "poisson_nll_loss", "gaussian_nll_loss", "sigmoid_focal_loss",
    "ctc_loss", "soft_margin_loss", "hinge_embedding_loss", "multilabel_soft_margin_loss", "logsigmoid",
    "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "max_pool1d", "max_pool2d",
    "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "interpolate",
    "scaled_dot_product_attention", "multi_head_attention_forward", "pad", "normalize", "one_hot",
    "dropout1d", "dropout2d", "dropout3d", "pixel_shuffle", "pixel_unshuffle",
]
