"""``retrograd.nn.modules.transformer``: PyTorch's import path (``torch.nn.modules.transformer``) to the same
classes as ``retrograd.nn``."""
from ..transformer import (Transformer, TransformerDecoder, TransformerDecoderLayer, TransformerEncoder,
                           TransformerEncoderLayer, _generate_square_subsequent_mask)

__all__ = ["Transformer", "TransformerEncoder", "TransformerDecoder", "TransformerEncoderLayer",
           "TransformerDecoderLayer"]
