"""``retrograd.nn.modules.rnn``: PyTorch's import path (``torch.nn.modules.rnn``) to the same classes
as ``retrograd.nn``."""
from ..rnn import RNNBase, RNN, LSTM, GRU, RNNCellBase, RNNCell, LSTMCell, GRUCell

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]
