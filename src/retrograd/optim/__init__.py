"""Optimizers on flat parameter and gradient buffers, with ``torch.optim``'s API.

``rg.optim.Adam(params, lr=1e-3)`` etc.: same constructor arguments, defaults,
update order and state dict layout as PyTorch. Learning-rate schedules:
``optim.scheduling`` says which of the forms (``lr=schedule``,
``lr_scheduler`` objects, by name) to use; the formulas are in ``optim.schedules``.
"""
from .optimizer import (Optimizer, StepArrays, register_optimizer_step_post_hook,
                        register_optimizer_step_pre_hook, required)
from .sgd import SGD
from .adam import Adam, AdamW, Adamax, NAdam, RAdam
from .adagrad import Adadelta, Adagrad, RMSprop
from . import fused, lr_scheduler, schedules, scheduling
from .plotting import plot_schedule
from .rprop import Rprop
from .asgd import ASGD
from .lbfgs import LBFGS
from .adafactor import Adafactor
from .muon import Muon
from .lion import Lion
from .lookahead import Lookahead
from .combined import CombinedOptimizer, muon_param_groups
from .lamb import LAMB
from .lars import LARS
from . import swa_utils
from .swa_utils import AveragedModel
from .schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD
from .sophia import Sophia

__all__ = ["Optimizer", "StepArrays", "required", "register_optimizer_step_pre_hook",
           "register_optimizer_step_post_hook", "SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "Adagrad",
           "Adadelta", "RMSprop", "Rprop", "ASGD", "LBFGS", "Adafactor", "Muon",
           "Lion", "Lookahead", "CombinedOptimizer", "muon_param_groups", "LAMB", "LARS", "swa_utils", "AveragedModel",
           "ScheduleFreeAdamW", "ScheduleFreeSGD", "Sophia",
           "fused", "lr_scheduler", "schedules", "scheduling", "plot_schedule"]
