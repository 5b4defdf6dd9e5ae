"""The streaming model: one time step of a trained classifier as a Loop-free ONNX graph.

``best.onnx`` runs a whole series in one ``Loop``; runtimes without ``Loop`` (tract, ONNX-to-C
and ONNX-to-TFLite converters) and devices that read a sensor one sample at a time want one step::

    state = initial_state                       # metadata "seqeq.initial_state", shape (S,)
    for x_t in samples:                         # raw, unnormalised (B, C)
        state, logits, probabilities = step(x_t, state)

After the t-th sample, ``logits`` equal ``best.onnx``'s on the series' first t samples (every
front end included), so the label can be read at any time, not only at a window's end.

The state is one float32 vector per series, laid out as (:func:`state_layout`):

* ``h`` -- the cell's state (``cell.state_size``);
* ``window`` -- with a convolution front end, the last ``CONV_KERNEL - 1`` inputs it read
  (normalised samples, or with ``conv_first`` off, block means), oldest first (zeros at the
  start: the convolution is causal with zero padding);
* ``lookback``, ``seen`` -- for a cell whose time-parallel features read earlier steps too (the
  code variant of TARNN reads ``x_{t-1}``), the last inputs it read and whether it has read any
  (before the first, the series' first input stands in for the earlier ones, as in the
  whole-series model);
* ``block``, ``block_count`` -- with a pooling front end, the block being filled and how many
  samples it holds: the largest value of each convolution filter so far in it (a model whose
  convolution reads the input first, ``conv_first``), or else the sum of its normalised
  samples. The recurrence steps once per full block; until a block is full its logits come from
  a step on the partial block (what the whole-series model does with a series that ends there),
  which is not kept.

The graph is traced from :class:`Streaming`, written in terms of the model's own pieces
(normalisation, front end, ``cell.prepare``, ``cell.step``, ``cell.readout``, head), so any
registered cell streams without code of its own. How far back a cell's ``prepare`` reads is
measured, not declared (:func:`lookback`); a cell whose features depend on the step's position
(per-timestep step sizes, ``n_timesteps``) cannot stream and is refused.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from .. import __version__
from ..errors import SeqeqError
from ..models import CONV_KERNEL
from . import _format as F
from .exporter import (
    DEFAULT_OPSET,
    _Builder,
    _check_inputs,
    _finish,
    _h0_row,
    _int8_weights,
    _trace,
    metadata_json,
    write_model_file,
)
from .quantize import quantization_plan, quantize_model_weights

__all__ = ["Streaming", "state_layout", "build_streaming_model", "export_streaming_onnx"]

_TRACE_BATCH = 2
#: the furthest back (in steps, the current one included) a cell's ``prepare`` may read
MAX_LOOKBACK = 8


def _cell_width(model: nn.Module) -> int:
    """Features per step that the cell reads (the front end's filters, or the channels)."""
    with torch.no_grad():
        x = model.mean + torch.zeros(1, 2 * model.pool, model.input_size)
        return int(model.inputs(x)[0].shape[-1])


def lookback(model: nn.Module) -> int:
    """How many steps (the current one included) the cell's ``prepare`` reads: the smallest R
    for which ``prepare`` of the last R inputs (the first input repeated before the series'
    start) gives each step's features, checked on random inputs; a cell that no R serves (its
    features depend on the step's position) is refused."""
    cell = model.cell
    g = torch.Generator().manual_seed(3)
    T = MAX_LOOKBACK + 3
    x = torch.randn(2, T, _cell_width(model), generator=g)
    with torch.no_grad():
        try:
            whole = cell.prepare(x)
        except ValueError:  # per-timestep weights for fewer steps than T
            whole = None
        for R in range(1, MAX_LOOKBACK + 1):
            if whole is None:
                break
            ok = True
            for t in range(T):
                w = x[:, max(0, t - R + 1): t + 1]
                w = torch.cat([w[:, :1].expand(2, R - w.shape[1], w.shape[2]), w], dim=1)
                if not torch.allclose(cell.prepare(w)[:, -1], whole[:, t], atol=1e-6):
                    ok = False
                    break
            if ok:
                return R
    raise SeqeqError(f"the {cell.name!r} cell's features depend on the step's position in "
                     "the series (per-timestep step sizes, n_timesteps), so it cannot run one "
                     "step at a time",
                     "Export the whole-series model (best.onnx) instead, or search without "
                     "n_timesteps")


def state_layout(model: nn.Module, R: int | None = None) -> dict[str, tuple[int, int]]:
    """``{part: (start, stop)}`` of the streaming state vector (see the module docstring);
    ``R``: the cell's :func:`lookback`, where already measured."""
    out, o = {}, 0
    parts = [("h", model.cell.state_size)]
    if model.front is not None:
        parts.append(("window", (CONV_KERNEL - 1) * model.input_size))
    R = lookback(model) if R is None else R
    if R > 1:
        parts += [("lookback", (R - 1) * _cell_width(model)), ("seen", 1)]
    if model.pool > 1:  # the block's filters (conv_first) or its sum of normalised samples
        parts += [("block", _cell_width(model) if model.conv_first else model.input_size),
                  ("block_count", 1)]
    for name, n in parts:
        out[name] = (o, o + n)
        o += n
    return out


def initial_state(model: nn.Module, layout: dict | None = None) -> np.ndarray:
    """The state before the first sample, ``(S,)`` float32: the cell's ``h_0``, zeros elsewhere
    (``layout``: the model's :func:`state_layout`, where already known)."""
    lay = state_layout(model) if layout is None else layout
    s = np.zeros(max(b for _, b in lay.values()), np.float32)
    a, b = lay["h"]
    s[a:b] = _h0_row(model.cell)[0]
    return s


class Streaming(nn.Module):
    """``(x_t (B, C) raw, state (B, S)) -> (state_next, logits, probabilities)``, one sample of
    ``model`` (a :class:`~seqeq.models.SequenceClassifier`); see the module docstring."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.lookback = lookback(model)
        self.layout = state_layout(model, self.lookback)

    def forward(self, x_t: torch.Tensor, state: torch.Tensor):
        m, lay = self.model, self.layout
        B, d = x_t.shape
        a, b = lay["h"]
        h = state[:, a:b]
        z = m.normalise(x_t)
        first = m.conv_first  # the convolution reads every sample, the blocks its filters
        if m.front is not None:
            a, b = lay["window"]
            window = state[:, a:b].reshape(B, CONV_KERNEL - 1, d)

        def convolve(v):  # the filters over the window and v (oldest first)
            seen = torch.cat([window, v[:, None]], dim=1)  # (B, K, d)
            return seen, torch.relu(m.front(seen.transpose(1, 2)))[:, :, 0]

        if first:
            seen, z = convolve(z)
        if m.pool > 1:  # the block so far: its sum (the mean's) or its filters' largest values
            a, b = lay["block"]
            c = lay["block_count"][0]
            block = torch.maximum(state[:, a:b], z) if first else state[:, a:b] + z
            count = state[:, c:c + 1] + 1
            v = block if first else block / count
            full = count >= m.pool  # (B, 1): this sample ends a block
        else:
            v = z
        if m.front is not None and not first:
            seen, f = convolve(v)
        else:
            f = v
        R = self.lookback
        if R > 1:  # the cell's features read the R - 1 inputs before this one too
            a, b = lay["lookback"]
            past = state[:, a:b].reshape(B, R - 1, f.shape[1])
            s = lay["seen"][0]
            fresh = (state[:, s:s + 1] < 0.5)[:, :, None]  # nothing read yet: repeat this one
            past = torch.where(fresh.expand_as(past), f[:, None].expand_as(past), past)
            run = torch.cat([past, f[:, None]], dim=1)
            u = m.cell.prepare(run)[:, -1]
        else:
            u = m.cell.prepare(f[:, None])[:, 0]
        h_new = m.cell.step(u, h)
        logits = m.head(m.cell.readout(h_new))

        def kept(new, old):  # with pooling, what a full block commits; else the new value
            return torch.where(full.expand_as(new), new, old) if m.pool > 1 else new

        parts_next = [kept(h_new, h)]
        if m.front is not None:  # read at every sample, or at every full block
            w_new = seen[:, 1:].reshape(B, -1)
            parts_next.append(w_new if first else kept(w_new, window.reshape(B, -1)))
        if R > 1:
            parts_next.append(kept(run[:, 1:].reshape(B, -1), state[:, a:b]))
            one = torch.ones_like(state[:, s:s + 1])
            parts_next.append(kept(one, state[:, s:s + 1]))
        if m.pool > 1:
            parts_next.append(torch.where(full.expand_as(block), torch.zeros_like(block), block))
            parts_next.append(torch.where(full, torch.zeros_like(count), count))
        return torch.cat(parts_next, dim=1), logits, torch.softmax(logits, dim=-1)


def build_streaming_model(model: nn.Module, *, opset: int = DEFAULT_OPSET,
                          quantize: str | None = None, backend: str = "auto") -> onnx.ModelProto:
    """The ONNX graph of one step of ``model`` (no metadata); see the module docstring."""
    model = copy.deepcopy(model).float().cpu().eval()
    plan = {}
    if quantize == "int8":
        plan = quantization_plan(model)
        model = quantize_model_weights(model)
    wrapper = Streaming(model)
    S = max(b for _, b in wrapper.layout.values())
    g = torch.Generator().manual_seed(0)
    x_ex = model.mean + model.std * torch.randn(_TRACE_BATCH, model.input_size, generator=g)
    s0 = initial_state(model, wrapper.layout)
    s_ex = torch.as_tensor(s0).expand(_TRACE_BATCH, S).contiguous()
    traced = _trace(wrapper, (x_ex, s_ex), [F.INPUT_X_T, F.INPUT_STATE],
                    [F.OUTPUT_STATE, F.OUTPUT_LOGITS, F.OUTPUT_PROBABILITIES],
                    {F.INPUT_X_T: {0: "batch"}, F.INPUT_STATE: {0: "batch"},
                     F.OUTPUT_STATE: {0: "batch"}, F.OUTPUT_LOGITS: {0: "batch"},
                     F.OUTPUT_PROBABILITIES: {0: "batch"}}, opset, backend)
    names = set(model.state_dict(keep_vars=True).keys())
    names.update(n for n, _ in model.named_parameters(remove_duplicate=False))
    b = _Builder(names)
    io_names = {n: n for n in (F.INPUT_X_T, F.INPUT_STATE, F.OUTPUT_STATE, F.OUTPUT_LOGITS,
                               F.OUTPUT_PROBABILITIES)}
    nodes = b.import_graph(traced.graph, "step/", io_names)
    nodes = _int8_weights(b, plan) + nodes
    C = model.head.out_features
    graph = helper.make_graph(
        nodes, "seqeq_streaming",
        [helper.make_tensor_value_info(F.INPUT_X_T, TensorProto.FLOAT,
                                       ["batch", model.input_size]),
         helper.make_tensor_value_info(F.INPUT_STATE, TensorProto.FLOAT, ["batch", S])],
        [helper.make_tensor_value_info(F.OUTPUT_STATE, TensorProto.FLOAT, ["batch", S]),
         helper.make_tensor_value_info(F.OUTPUT_LOGITS, TensorProto.FLOAT, ["batch", C]),
         helper.make_tensor_value_info(F.OUTPUT_PROBABILITIES, TensorProto.FLOAT, ["batch", C])],
        initializer=list(b.inits.values()))
    m = _finish(graph, opset)
    bad = {n.op_type for n in m.graph.node} & {"Loop", "Scan", "If"}
    if bad:  # pragma: no cover - a cell's step that branches on data would land here
        raise SeqeqError(f"the {model.cell.name!r} cell's step traced to control flow "
                         f"({', '.join(sorted(bad))})", "Export the whole-series model instead")
    return m


def _verify(data: bytes, model: nn.Module, quantize: str | None) -> float | None:
    """Max |logit| difference between the streamed file in onnxruntime and the whole-series torch
    model on every prefix of a random batch."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - onnxruntime is a dependency
        return None
    ref = quantize_model_weights(model) if quantize == "int8" else model
    ref = copy.deepcopy(ref).float().cpu().eval()
    T = 2 * ref.pool + 3
    g = torch.Generator().manual_seed(1)
    x = ref.mean + ref.std * torch.randn(3, T, ref.input_size, generator=g)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    state = np.tile(initial_state(ref), (3, 1))
    worst = 0.0
    with torch.no_grad():
        for t in range(T):
            state, logits = sess.run([F.OUTPUT_STATE, F.OUTPUT_LOGITS],
                                     {F.INPUT_X_T: x[:, t].numpy(), F.INPUT_STATE: state})
            want = ref(x[:, : t + 1]).numpy()
            worst = max(worst, float(np.abs(logits - want).max()))
    return worst


def export_streaming_onnx(model: nn.Module, spec, path: str | Path, *, class_names,
                          channel_names, quantize: str | None = None,
                          metadata: dict[str, Any] | None = None, opset: int = DEFAULT_OPSET,
                          verify: bool = True, backend: str = "auto") -> dict[str, Any]:
    """Write one step of ``model`` as a Loop-free ONNX file (see the module docstring).

    Inputs ``x_t`` float32 (batch, channels) raw and ``state`` float32 (batch, S); outputs
    ``state_next``, ``logits`` and ``probabilities``. The metadata is ``best.onnx``'s plus
    ``seqeq.streaming`` (the state's layout and size) and ``seqeq.initial_state``.
    Returns the same keys as :func:`~seqeq.export.export_onnx` plus ``state_size``.
    """
    class_names, channel_names = _check_inputs(model, spec, class_names, channel_names,
                                               quantize, opset)
    meta_json = metadata_json(metadata)
    m = build_streaming_model(model, opset=opset, quantize=quantize, backend=backend)
    ref = copy.deepcopy(model).float().cpu().eval()
    layout = state_layout(ref)
    S = max(b for _, b in layout.values())
    data, info = write_model_file(
        m, path, model, spec, fmt=F.FORMAT_STREAMING, class_names=class_names,
        channel_names=channel_names, quantize=quantize, meta_json=meta_json, opset=opset,
        doc=(f"seqeq {__version__} {spec.cell} classifier, one time step: x_t float32 "
             f"(batch, {len(channel_names)}) raw + state float32 (batch, {S}) -> state_next, "
             f"logits, probabilities (batch, {len(class_names)}); start from the metadata's "
             "seqeq.initial_state"),
        extra_props={
            F.KEY_STREAMING: json.dumps({"state_size": S, "layout": layout,
                                         "pool": int(ref.pool)}, sort_keys=True),
            F.KEY_INITIAL_STATE: json.dumps([float(v) for v in initial_state(ref, layout)]),
        })
    return {**info, "state_size": S,
            "max_abs_error": _verify(data, model, quantize) if verify else None}
