"""``retrograd.nn.modules.loss``: PyTorch's import path (``torch.nn.modules.loss``) to the same classes
as ``retrograd.nn``."""
from ..loss import (_Loss, _WeightedLoss, BCELoss, BCEWithLogitsLoss, CosineEmbeddingLoss, CrossEntropyLoss,
                    CTCLoss, GaussianNLLLoss, HuberLoss, KLDivLoss, L1Loss, MarginRankingLoss, MSELoss, NLLLoss,
                    PoissonNLLLoss, SmoothL1Loss, TripletMarginLoss, SoftMarginLoss, HingeEmbeddingLoss,
                    MultiLabelSoftMarginLoss)

__all__ = [
    "_Loss", "_WeightedLoss", "BCELoss", "BCEWithLogitsLoss", "CosineEmbeddingLoss", "CrossEntropyLoss",
    "CTCLoss", "GaussianNLLLoss", "HuberLoss", "KLDivLoss", "L1Loss", "MarginRankingLoss", "MSELoss",
    "NLLLoss", "PoissonNLLLoss", "SmoothL1Loss", "TripletMarginLoss", "SoftMarginLoss", "HingeEmbeddingLoss",
    "MultiLabelSoftMarginLoss",
]
