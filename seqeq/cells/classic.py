"""Library baselines: GRU and LSTM (PyTorch's fused kernels) and a plain tanh RNN.

Training uses the fused ``nn.GRU`` / ``nn.LSTM`` over the whole sequence (cuDNN on a GPU); the
per-step :meth:`step` reproduces exactly the same equations from the same weights, and is what the
ONNX exporter and the gradient diagnostic use. PyTorch's GRU::

    r = sigma(W_ir x + b_ir + W_hr h + b_hr);  z = sigma(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn));  h' = (1 - z) * n + z * h

Sizes: GRU ``3D(d + D) + 6D``; LSTM ``4D(d + D) + 8D`` (state ``[h, c]``, width 2D);
RNN ``D(d + D) + 2D``.
"""

from __future__ import annotations

import torch
from torch import nn

from ._base import Cell
from ._registry import register_cell


class _FusedCell(Cell):
    """Shared machinery for cells backed by one fused ``torch.nn`` recurrent layer."""

    gates: int = 1
    rnn: nn.RNNBase

    def prepare(self, x):
        return x @ self.rnn.weight_ih_l0.T + self.rnn.bias_ih_l0  # (B, T, gates*D)

    def _gh(self, h):
        return h @ self.rnn.weight_hh_l0.T + self.rnn.bias_hh_l0  # (B, gates*D)

    @classmethod
    def count_params(cls, input_size, hidden_size, **_):
        g, D = cls.gates, hidden_size
        return g * D * (input_size + D) + 2 * g * D

    def forward_sequence(self, x, lengths=None, h0=None):
        if h0 is not None:  # the generic loop handles explicit initial states
            return super().forward_sequence(x, lengths, h0)
        out, _ = self.rnn(x)  # (B, T, D): unidirectional, so out[len-1] ignores later padding
        if lengths is None:
            return out[:, -1]
        idx = (lengths.to(x.device) - 1).clamp(min=0)
        return out[torch.arange(x.shape[0], device=x.device), idx]


@register_cell("gru")
class GRU(_FusedCell):
    gates = 3

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        self.rnn = nn.GRU(input_size, hidden_size, batch_first=True)

    def step(self, u_t, h):
        D = self.hidden_size
        gh = self._gh(h)
        r = torch.sigmoid(u_t[:, :D] + gh[:, :D])
        z = torch.sigmoid(u_t[:, D:2 * D] + gh[:, D:2 * D])
        n = torch.tanh(u_t[:, 2 * D:] + r * gh[:, 2 * D:])
        return (1 - z) * n + z * h


@register_cell("lstm")
class LSTM(_FusedCell):
    gates = 4

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        self.rnn = nn.LSTM(input_size, hidden_size, batch_first=True)

    @classmethod
    def state_size_for(cls, hidden_size, **_):
        return 2 * hidden_size  # [h, c]

    def step(self, u_t, state):
        D = self.hidden_size
        h, c = state[:, :D], state[:, D:]
        a = u_t + self._gh(h)
        i, f = torch.sigmoid(a[:, :D]), torch.sigmoid(a[:, D:2 * D])
        g, o = torch.tanh(a[:, 2 * D:3 * D]), torch.sigmoid(a[:, 3 * D:])
        c = f * c + i * g
        return torch.cat([o * torch.tanh(c), c], dim=1)


@register_cell("rnn")
class RNN(_FusedCell):
    gates = 1

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True, nonlinearity="tanh")

    def step(self, u_t, h):
        return torch.tanh(u_t + self._gh(h))
