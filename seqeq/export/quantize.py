"""Post-training 8-bit weight quantisation (weights only; activations stay float32).

One rule, used by the torch-side fake quantisation and by the ONNX exporter, so the two agree bit
for bit:

* a parameter with >= 2 dimensions whose rows have >= 2 elements (a weight matrix) gets one
  symmetric scale per output row (axis 0): ``s_r = max|w_r| / 127``, ``q = round(w / s_r)`` in
  ``[-127, 127]``;
* any other parameter with >= :data:`MIN_VECTOR_NUMEL` elements (a bias, a diagonal) gets one
  symmetric scale for the whole tensor (a scale per element would cost more than it saves);
* smaller parameters -- scalars and per-step vectors such as alpha, eta, gamma, zeta, nu -- stay
  float32, and buffers (normalisation statistics, int64 index tables) are never touched.

The dequantised weight is ``float32(q) * s`` (one float32 multiply), exactly what ONNX
``DequantizeLinear`` computes, so a fake-quantised torch model predicts what the int8 ONNX file
predicts.

Size: :func:`int8_size_bytes` counts 1 byte per quantised weight, 4 bytes per scale and 4 bytes per
kept float32 parameter -- the honest int8 counterpart of ``spec_size_bytes(spec, 4)``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "MIN_VECTOR_NUMEL",
    "QuantizedTensor",
    "quantize_array",
    "quantization_plan",
    "quantize_model_weights",
    "int8_size_bytes",
]

#: 1-D (or column) parameters smaller than this stay float32
MIN_VECTOR_NUMEL = 16
QMAX = 127


@dataclass(frozen=True)
class QuantizedTensor:
    """``w ~= q * scale`` with ``scale`` broadcast along ``axis`` (``None``: one scale)."""

    q: np.ndarray  # int8, the parameter's shape
    scale: np.ndarray  # float32, shape (rows,) for axis=0, () for axis=None
    axis: int | None

    def dequantize(self) -> np.ndarray:
        s = self.scale
        if self.axis is not None:
            s = s.reshape((-1,) + (1,) * (self.q.ndim - 1))
        return self.q.astype(np.float32) * s

    @property
    def nbytes(self) -> int:
        """Stored bytes: 1 per weight + 4 per scale."""
        return int(self.q.size + 4 * self.scale.size)


def _scales(amax: np.ndarray) -> np.ndarray:
    s = (amax.astype(np.float32) / np.float32(QMAX)).astype(np.float32)
    # an all-zero row (or one so small its scale underflows) stores q = 0 under any scale
    return np.where(np.isfinite(s) & (s > 0), s, np.float32(1.0)).astype(np.float32)


def quantize_array(w: np.ndarray) -> QuantizedTensor | None:
    """Quantise one float parameter by the module rule; ``None`` if it stays float32."""
    w = np.asarray(w, dtype=np.float32)
    if not np.isfinite(w).all():
        raise ValueError("cannot quantise a tensor with NaN or infinite values")
    if w.ndim >= 2 and int(np.prod(w.shape[1:])) >= 2:
        rows = w.reshape(w.shape[0], -1)
        scale = _scales(np.abs(rows).max(axis=1))
        q = np.clip(np.rint(rows / scale[:, None]), -QMAX, QMAX).astype(np.int8).reshape(w.shape)
        return QuantizedTensor(q=q, scale=scale, axis=0)
    if w.size >= MIN_VECTOR_NUMEL:
        scale = _scales(np.abs(w).max())
        q = np.clip(np.rint(w / scale), -QMAX, QMAX).astype(np.int8)
        return QuantizedTensor(q=q, scale=np.asarray(scale, np.float32).reshape(()), axis=None)
    return None


def quantization_plan(model: nn.Module) -> dict[str, QuantizedTensor | None]:
    """Every parameter name (tied aliases included) -> its quantisation, or ``None`` if kept.

    Floating-point parameters only; integer parameters and all buffers are absent.
    """
    by_id: dict[int, QuantizedTensor | None] = {}
    plan: dict[str, QuantizedTensor | None] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if not p.is_floating_point():
            continue
        if id(p) not in by_id:
            by_id[id(p)] = quantize_array(p.detach().float().cpu().numpy())
        plan[name] = by_id[id(p)]
    return plan


def quantize_model_weights(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose weights are fake-quantised (int8 quantise -> dequantise).

    Use it to measure in torch what the int8 ONNX file will predict. ``model`` is not modified.
    """
    out = copy.deepcopy(model)
    plan = quantization_plan(out)
    done: set[int] = set()
    with torch.no_grad():
        for name, p in out.named_parameters(remove_duplicate=False):
            qt = plan.get(name)
            if qt is None or id(p) in done:
                continue
            done.add(id(p))
            p.copy_(torch.from_numpy(qt.dequantize()).to(dtype=p.dtype, device=p.device))
    return out


def int8_size_bytes(model: nn.Module) -> int:
    """Exact stored size of the parameters after int8 quantisation.

    1 byte per quantised weight + 4 bytes per scale + 4 bytes per parameter kept in float32. Like
    ``spec_size_bytes`` it counts learnable parameters only (not normalisation buffers).
    """
    plan = quantization_plan(model)
    total, seen = 0, set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen or not p.is_floating_point():
            continue
        seen.add(id(p))
        qt = plan[name]
        total += qt.nbytes if qt is not None else 4 * p.numel()
    return int(total)
