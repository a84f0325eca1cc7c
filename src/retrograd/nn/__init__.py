"""Neural-network building blocks with PyTorch's ``torch.nn`` names, signatures, defaults and numbers.

``rg.nn.functional`` holds the functional forms (one module per op family); ``rg.nn.init`` holds the
initialisers.
"""
from . import functional
from . import init
from . import utils
from .activation import Hardsigmoid, Hardswish, LogSigmoid, Threshold
from .activation import (CELU, ELU, GELU, SELU, Hardtanh, LeakyReLU, LogSoftmax, Mish, PReLU, ReLU, ReLU6,
                         Sigmoid, SiLU, Softmax, Softplus, Softsign, Tanh)
from .containers import Flatten, Identity, ModuleDict, ModuleList, ParameterList, Sequential, Unflatten
from .layers import (BatchNorm1d, BatchNorm2d, Bilinear, Dropout, Dropout1d, Dropout2d, Dropout3d, Embedding,
                     GroupNorm, LayerNorm, Linear, RMSNorm)
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from .loss import (BCELoss, BCEWithLogitsLoss, CosineEmbeddingLoss, CrossEntropyLoss, CTCLoss, GaussianNLLLoss,
                   HuberLoss, KLDivLoss, L1Loss, MarginRankingLoss, MSELoss, NLLLoss, PoissonNLLLoss, SmoothL1Loss,
                   TripletMarginLoss)
from .loss import HingeEmbeddingLoss, MultiLabelSoftMarginLoss, SoftMarginLoss
from .pooling import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d,
                      PixelShuffle, PixelUnshuffle, Upsample)
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase
from .transformer import (MultiheadAttention, Transformer, TransformerDecoder, TransformerDecoderLayer,
                          TransformerEncoder, TransformerEncoderLayer)
from .module import Module, Parameter, RemovableHandle
from .sync_batchnorm import SyncBatchNorm
from . import modules  # PyTorch's import paths: retrograd.nn.modules.<sub>
from . import parallel

__all__ = [
    "functional", "init", "utils", "Module", "Parameter", "RemovableHandle",
    "Sequential", "ModuleList", "ModuleDict", "ParameterList", "Identity", "Flatten", "Unflatten",
    "Linear", "Bilinear", "Embedding", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "LayerNorm", "RMSNorm",
    "GroupNorm", "BatchNorm1d",
    "BatchNorm2d", "SyncBatchNorm",
    "Hardsigmoid", "Hardswish", "Threshold", "LogSigmoid",
    "ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Sigmoid", "Tanh",
    "Hardtanh", "Softplus", "Softsign", "Softmax", "LogSoftmax",
    "MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "CrossEntropyLoss", "NLLLoss", "BCELoss",
    "BCEWithLogitsLoss", "KLDivLoss", "CosineEmbeddingLoss", "MarginRankingLoss", "TripletMarginLoss",
    "PoissonNLLLoss", "GaussianNLLLoss", "CTCLoss", "SoftMarginLoss", "HingeEmbeddingLoss", "MultiLabelSoftMarginLoss",
    "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "Upsample",
    "PixelShuffle", "PixelUnshuffle", "MultiheadAttention", "Transformer", "TransformerEncoderLayer",
    "TransformerDecoderLayer", "TransformerEncoder", "TransformerDecoder", "RNNBase", "RNN", "LSTM", "GRU",
    "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell",
]
