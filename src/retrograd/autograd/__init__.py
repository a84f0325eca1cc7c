"""``rg.autograd``: the engine's public face.

``engine`` (graph nodes, grad mode, the backward walk) sits below ``tensor``;
the helpers built on Tensors (``Function``, ``gradcheck``, ``functional``) sit
above it.
"""
from .engine import (AnomalyError, Node, detect_anomaly, enable_grad, is_anomaly_enabled, is_grad_enabled,
                     no_grad, set_grad_enabled)
from ..tensor import backward, grad
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .function import Function, FunctionCtx
from . import functional

__all__ = ["AnomalyError", "Function", "FunctionCtx", "GradcheckError", "Node", "backward", "detect_anomaly",
           "enable_grad", "functional", "grad", "gradcheck", "gradgradcheck", "is_anomaly_enabled",
           "is_grad_enabled", "no_grad", "set_grad_enabled"]
