"""``rg.autograd``: the engine's public face, above ``Tensor``.

The engine itself (graph nodes, grad and anomaly modes, the backward walk,
``backward`` and ``grad``) is ``retrograd.engine``, below ``tensor.py``; this
package re-exports it together with the helpers built on Tensors
(``Function``, ``gradcheck``, ``functional``).
"""
from ..engine import (AnomalyError, Node, backward, detect_anomaly, enable_grad, grad, is_anomaly_enabled,
                      is_grad_enabled, no_grad, set_grad_enabled)
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .function import Function, FunctionCtx
from . import functional

__all__ = ["AnomalyError", "Function", "FunctionCtx", "GradcheckError", "Node", "backward", "detect_anomaly",
           "enable_grad", "functional", "grad", "gradcheck", "gradgradcheck", "is_anomaly_enabled",
           "is_grad_enabled", "no_grad", "set_grad_enabled"]
