"""``retrograd.nn.modules``: PyTorch's import path (``torch.nn.modules`` and its submodules such as
``torch.nn.modules.loss``) to the layers of ``retrograd.nn``: each submodule re-exports the classes PyTorch's
submodule of that name holds (where retrograd has them), so ``from retrograd.nn.modules.loss import _Loss``
and ``retrograd.nn.modules.Linear is retrograd.nn.Linear`` hold."""
from . import activation, batchnorm, container, conv, dropout, flatten, linear, loss  # noqa: F401
from . import module, normalization, pixelshuffle, pooling, rnn, sparse, transformer, upsampling  # noqa: F401
from .activation import *  # noqa: F401,F403
from .batchnorm import *  # noqa: F401,F403
from .container import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .flatten import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .module import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pixelshuffle import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403
from .sparse import *  # noqa: F401,F403
from .transformer import *  # noqa: F401,F403
from .upsampling import *  # noqa: F401,F403
