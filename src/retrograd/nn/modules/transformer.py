"""``retrograd.nn.modules.transformer``: PyTorch's import path (``torch.nn.modules.transformer``) to the same
classes as ``retrograd.nn``."""
from ..transformer import TransformerEncoderLayer, TransformerDecoderLayer, TransformerEncoder, TransformerDecoder

__all__ = ["TransformerEncoderLayer", "TransformerDecoderLayer", "TransformerEncoder", "TransformerDecoder"]
