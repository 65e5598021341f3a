"""Recurrent cells, RNN and Bidirectional (``flax.linen.recurrent``)."""

from __future__ import annotations

from ._cells import ConvLSTMCell as ConvLSTMCell
from ._cells import DenseParams as DenseParams
from ._cells import GRUCell as GRUCell
from ._cells import LSTMCell as LSTMCell
from ._cells import MGUCell as MGUCell
from ._cells import OptimizedLSTMCell as OptimizedLSTMCell
from ._cells import RNNCellBase as RNNCellBase
from ._cells import SimpleCell as SimpleCell
from ._rnn import RNN as RNN
from ._rnn import Bidirectional as Bidirectional
from ._rnn import RNNBase as RNNBase
from ._rnn import flip_sequences as flip_sequences

__all__ = [
    "Bidirectional",
    "ConvLSTMCell",
    "DenseParams",
    "flip_sequences",
    "GRUCell",
    "LSTMCell",
    "MGUCell",
    "OptimizedLSTMCell",
    "RNN",
    "RNNBase",
    "RNNCellBase",
    "SimpleCell",
]
