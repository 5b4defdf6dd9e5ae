"""Export a :class:`~seqeq.models.SequenceClassifier` to one self-describing ONNX file.

torch.onnx unrolls a Python time loop (and cannot turn a custom recurrent cell into a ``Loop``), so
the exporter never traces the time loop. It traces three small pieces of any cell through the
:class:`~seqeq.cells.Cell` interface, without asking which cell it holds:

* the *prelude* ``x (B, T, d) -> u (B, T, F)``: normalisation ``(x - mean) / std`` and
  ``cell.prepare`` (time-parallel);
* the *step* ``(u_t (B, F), h (B, S)) -> h (B, S)``: ``cell.step`` (Euler steps unrolled);
* the *head* ``h (B, S) -> logits (B, C)``: ``cell.readout`` and the linear head;

and stitches them with ``onnx.helper`` into::

    u = prelude(x);  h_0 = init_state;  T = shape(u)[1]
    Loop t in 0..T-1, cond true (body: u_t = u[:, t]; h = where(t < lengths, step(u_t, h), h))
    logits = head(h_T);  probabilities = softmax(logits)

so the graph is the same for every sequence length. Weights are initializers of the main graph
(the loop body reads them from the outer scope), named by their ``state_dict`` key and stored once.
Nodes of the step that depend on weights only (transposes, ``eta[i]`` picks) are hoisted out of
the loop, so the loop body holds the recurrence alone; constant sub-expressions are folded,
repeated ones computed once, integer index tables stored as uint8/uint16 (+ ``Cast``) and internal
value names shortened, because for a model of a few KiB the graph itself is a good part of the file.

With ``quantize="int8"`` every weight chosen by :mod:`seqeq.export.quantize` is stored as an int8
initializer plus float32 scales, dequantised once per call by ``DequantizeLinear`` in front of the
loop (weights-only quantisation; activations stay float32).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from .. import __version__
from .._io import atomic_write_bytes
from ..errors import SeqeqError
from . import _format as F
from .quantize import QuantizedTensor, quantization_plan, quantize_model_weights

__all__ = ["DEFAULT_OPSET", "export_onnx"]

#: ONNX opset of exported files (Loop, per-axis DequantizeLinear: >= 13)
DEFAULT_OPSET = 17
_MIN_OPSET = 13
_TRACE_BATCH = 2
_TRACE_LENGTH = 5
_NONDETERMINISTIC = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                     "Multinomial", "Bernoulli"}
# IR version to write for an opset, so older runtimes (mobile builds) accept the file
_IR_FOR_OPSET = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


# ---------------------------------------------------------------------------------------------
# the three traced pieces
class _Prelude(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, lengths=None):
        # normalised and, with a pooling front end, pooled (its lengths too): the model's own
        u, pooled_lengths = self.model.inputs(x, lengths)
        u = self.model.cell.prepare(u)
        return u if lengths is None else (u, pooled_lengths)


class _Step(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, u_t, h):
        return self.model.cell.step(u_t, h)


class _Head(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, h):
        return self.model.head(self.model.cell.readout(h))


def _trace_legacy(module, args, input_names, output_names, dynamic_axes, opset) -> onnx.ModelProto:
    buf = io.BytesIO()
    kw: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kw["dynamo"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=opset, export_params=True,
                          do_constant_folding=False, keep_initializers_as_inputs=False, **kw)
    return onnx.load_from_string(buf.getvalue())


def _trace_dynamo(module, args, input_names, output_names, dynamic_axes, opset) -> onnx.ModelProto:
    dims = {name: torch.export.Dim(name) for ax in dynamic_axes.values() for name in ax.values()}
    shapes = tuple({i: dims[n] for i, n in dynamic_axes[name].items()} for name in input_names)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(module, args, dynamo=True, input_names=input_names,
                                 output_names=output_names, dynamic_shapes=shapes,
                                 opset_version=max(opset, 18), optimize=False, verbose=False,
                                 external_data=False)
    m = prog.model_proto
    if m.functions:
        m = onnx.inliner.inline_local_functions(m)
    if max(opset, 18) != opset:
        m = onnx.version_converter.convert_version(m, opset)
    return m


def _trace(module, args, input_names, output_names, dynamic_axes, opset, backend):
    """Trace ``module`` to ONNX with the TorchScript exporter, else (``backend="auto"``) with
    torch.export."""
    if backend in ("auto", "torchscript"):
        try:
            return _trace_legacy(module, args, input_names, output_names, dynamic_axes, opset)
        except Exception as e:
            if backend == "torchscript":
                raise
            legacy_error = e
    try:
        return _trace_dynamo(module, args, input_names, output_names, dynamic_axes, opset)
    except Exception as e:
        if backend == "auto":
            raise RuntimeError(f"torch.onnx could not trace {type(module).__name__[1:].lower()} "
                               f"(TorchScript exporter: {legacy_error!r}; torch.export: {e!r})"
                               ) from e
        raise


# ---------------------------------------------------------------------------------------------
# graph surgery
class _Builder:
    """Collects the main graph: initializers by name, nodes in order, unique value names."""

    def __init__(self, param_names: set[str]):
        self.param_names = param_names
        self.inits: dict[str, TensorProto] = {}
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"seqeq/{stem}_{self._n}"

    def add_init(self, name: str, t: TensorProto) -> None:
        t = copy.deepcopy(t)
        t.name = name
        old = self.inits.get(name)
        if old is not None:
            if _tensor_key(old) != _tensor_key(t):
                raise RuntimeError(f"two traced pieces disagree on the value of {name!r}")
            return
        self.inits[name] = t

    def const(self, nodes: list, stem: str, value: np.ndarray) -> str:
        out = self.name(stem)
        nodes.append(helper.make_node("Constant", [], [out], name=out,
                                      value=numpy_helper.from_array(np.asarray(value), out)))
        return out

    def import_graph(self, g: onnx.GraphProto, prefix: str, rename: dict[str, str]) -> list:
        """Nodes of a traced graph, names mapped into the main graph's namespace.

        ``rename`` maps the piece's input/output names; weights keep their ``state_dict`` name
        (the wrapper's ``model.`` stripped); every other name gets ``prefix``.
        """
        names = dict(rename)
        for t in g.initializer:
            key = t.name[len("model."):] if t.name.startswith("model.") else t.name
            new = key if key in self.param_names else prefix + t.name
            names[t.name] = new
            self.add_init(new, t)

        def m(n: str) -> str:
            return "" if n == "" else names.get(n, prefix + n)

        def copy_nodes(nodes) -> list:
            out = []
            for node in nodes:
                node = copy.deepcopy(node)
                node.name = prefix + (node.name or node.op_type)
                node.input[:] = [m(i) for i in node.input]
                node.output[:] = [m(o) for o in node.output]
                for a in node.attribute:
                    for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                        for vi in list(sub.input) + list(sub.output) + list(sub.value_info):
                            vi.name = m(vi.name)
                        for t in sub.initializer:
                            t.name = m(t.name)
                        new_nodes = copy_nodes(sub.node)
                        del sub.node[:]
                        sub.node.extend(new_nodes)
                out.append(node)
            return out

        return copy_nodes(g.node)


def _tensor_key(t: TensorProto) -> tuple:
    a = numpy_helper.to_array(t)
    digest = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
    return (t.data_type, tuple(t.dims), digest)


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    out = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def _hoist_invariants(body: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Remove from ``body`` (in place) and return the nodes that do not change across iterations:
    those reading only outer-scope values and constants."""
    variant = {i.name for i in body.input}
    keep, hoisted = [], []
    for node in body.node:
        moves = (node.op_type not in _NONDETERMINISTIC and not _subgraphs(node)
                 and not any(i in variant for i in node.input if i))
        if moves:
            hoisted.append(node)
        else:
            keep.append(node)
            variant.update(node.output)
    del body.node[:]
    body.node.extend(keep)
    return hoisted


def _fold_constants(nodes: list[onnx.NodeProto], opset: int) -> list[onnx.NodeProto]:
    """Evaluate nodes whose inputs are all ``Constant`` outputs (never weights) into constants,
    and keep one ``Constant`` per distinct value (references in loop bodies are rewritten)."""
    from onnx.reference import ReferenceEvaluator

    values: dict[str, np.ndarray] = {}
    first: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    out = []

    def add_const(name: str, v: np.ndarray) -> None:
        t = numpy_helper.from_array(np.asarray(v))
        values[name] = np.asarray(v)
        k = _tensor_key(t)
        if k in first:
            alias[name] = first[k]
        else:
            first[k] = name
            out.append(helper.make_node("Constant", [], [name], value=t))

    for node in nodes:
        node.input[:] = [alias.get(i, i) for i in node.input]
        if (node.op_type == "Constant" and len(node.attribute) == 1
                and node.attribute[0].name == "value"):
            add_const(node.output[0], numpy_helper.to_array(node.attribute[0].t))
            continue
        ins = [i for i in node.input if i]
        if (ins and all(i in values for i in ins) and node.op_type not in _NONDETERMINISTIC
                and not _subgraphs(node) and node.domain in ("", "ai.onnx")):
            try:
                feeds = {i: values[i] for i in ins}
                res = ReferenceEvaluator(
                    _single_node_model(node, feeds, opset)).run(None, feeds)
            except Exception:  # an op the reference evaluator lacks: keep the node
                out.append(node)
                continue
            for name, v in zip(node.output, res, strict=True):
                add_const(name, v)
            continue
        _rewrite_inputs(_subgraphs(node), alias)
        out.append(node)
    return out


def _rewrite_inputs(graphs, alias: dict[str, str]) -> None:
    for g in graphs:
        for node in g.node:
            node.input[:] = [alias.get(i, i) for i in node.input]
            _rewrite_inputs(_subgraphs(node), alias)


def _single_node_model(node, feeds: dict[str, np.ndarray], opset: int) -> onnx.ModelProto:
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for k, v in feeds.items()]
    outs = [helper.make_empty_tensor_value_info(o) for o in node.output]
    g = helper.make_graph([node], "fold", ins, outs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _used_names(nodes, outputs) -> set[str]:
    used = set(outputs)
    for node in nodes:
        used.update(i for i in node.input if i)
        for sub in _subgraphs(node):
            used |= _used_names(sub.node, [o.name for o in sub.output])
    return used


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes (main graph and loop bodies) whose outputs nothing reads, and unused weights."""
    while True:
        used = _used_names(graph.node, [o.name for o in graph.output])
        changed = False
        for g in [graph] + [s for n in graph.node for s in _subgraphs(n)]:
            body_outs = {o.name for o in g.output}
            keep = [n for n in g.node if any(o in used or o in body_outs for o in n.output)]
            if len(keep) != len(g.node):
                changed = True
                del g.node[:]
                g.node.extend(keep)
        if not changed:
            break
    used = _used_names(graph.node, [o.name for o in graph.output])
    keep_inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)


def _elide_identities(graph: onnx.GraphProto) -> None:
    """Drop ``Identity`` nodes (the TorchScript exporter aliases equal weights with them), reading
    their input directly; an Identity producing a graph output stays."""
    outs = {o.name for o in graph.output}
    alias: dict[str, str] = {}
    keep = []
    for node in graph.node:
        node.input[:] = [alias.get(i, i) for i in node.input]
        if node.op_type == "Identity" and node.output[0] not in outs:
            alias[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    subs = [s for n in graph.node for s in _subgraphs(n)]
    _rewrite_inputs(subs, alias)
    for s in subs:
        _elide_identities(s)


def _cse(graph: onnx.GraphProto, alias: dict[str, str] | None = None) -> None:
    """Common-subexpression elimination: identical nodes on identical inputs are computed once
    (the TorchScript exporter emits one ``Gather`` per use of ``alpha[l]``, for example)."""
    alias = dict(alias or {})
    seen: dict[tuple, list[str]] = {}
    keep = []
    for node in graph.node:
        node.input[:] = [alias.get(i, i) for i in node.input]
        subs = _subgraphs(node)
        if subs:
            for sub in subs:
                _cse(sub, alias)
            keep.append(node)
            continue
        if node.op_type in _NONDETERMINISTIC:
            keep.append(node)
            continue
        key = (node.domain, node.op_type, tuple(node.input),
               tuple(a.SerializeToString() for a in node.attribute))
        if key in seen:
            alias.update(zip(node.output, seen[key], strict=True))
        else:
            seen[key] = list(node.output)
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def _compact_names(graph: onnx.GraphProto) -> None:
    """Give every intermediate value a short name (and drop node names): the graph's text is a
    sizeable part of a tiny model's file. Inputs, outputs and weight names are kept."""
    reserved = ({i.name for i in graph.input} | {o.name for o in graph.output}
                | {t.name for t in graph.initializer})
    names: dict[str, str] = {}
    counter = iter(range(1 << 30))

    def fresh(old: str) -> str:
        if old == "" or old in reserved:
            return old
        if old not in names:
            new = f"v{next(counter)}"
            while new in reserved:
                new = f"v{next(counter)}"
            names[old] = new
        return names[old]

    def walk(g: onnx.GraphProto, top: bool) -> None:
        if not top:
            for vi in list(g.input) + list(g.output):
                vi.name = fresh(vi.name)
        for node in g.node:
            node.input[:] = [names.get(i, i) for i in node.input]
            node.output[:] = [fresh(o) for o in node.output]
            node.name = "time_loop" if node.op_type == "Loop" else ""
            for sub in _subgraphs(node):
                walk(sub, False)
        if not top:  # body outputs may be produced by its own nodes: map after they are named
            for vi in g.output:
                vi.name = names.get(vi.name, vi.name)
        del g.value_info[:]

    walk(graph, True)


def _dedupe_initializers(graph: onnx.GraphProto) -> None:
    """Store identical initializers (tied or equal weights, equal scales) once."""
    first: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    keep = []
    for t in graph.initializer:
        k = _tensor_key(t)
        if k in first:
            alias[t.name] = first[k]
        else:
            first[k] = t.name
            keep.append(t)
    if not alias:
        return
    del graph.initializer[:]
    graph.initializer.extend(keep)
    for node in graph.node:
        node.input[:] = [alias.get(i, i) for i in node.input]
    _rewrite_inputs([s for n in graph.node for s in _subgraphs(n)], alias)


def int_storage_dtype(a: np.ndarray) -> np.dtype:
    """Narrowest unsigned type that holds a non-negative integer table (index buffers), else
    its own type. Tables of fewer than 16 entries are left as they are."""
    a = np.asarray(a)
    if a.dtype.kind not in "iu" or a.size < 16 or a.min() < 0:
        return a.dtype
    for t in (np.uint8, np.uint16):
        if a.max() <= np.iinfo(t).max and np.dtype(t).itemsize < a.dtype.itemsize:
            return np.dtype(t)
    return a.dtype


def _shrink_integer_tables(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Store integer initializers (permutation/selection indices) as uint8/uint16 with a
    ``Cast`` back to their type; returns the Cast nodes (to put first in the graph)."""
    casts = []
    for t in graph.initializer:
        a = numpy_helper.to_array(t)
        small = int_storage_dtype(a)
        if small == a.dtype:
            continue
        name, stored = t.name, f"{t.name}.{small.name}"
        t.CopyFrom(numpy_helper.from_array(a.astype(small), stored))
        casts.append(helper.make_node("Cast", [stored], [name], to=int(
            helper.np_dtype_to_tensor_dtype(a.dtype))))
    return casts


def count_nodes(graph: onnx.GraphProto) -> int:
    """Nodes of a graph including those of its subgraphs (loop bodies)."""
    return sum(1 + sum(count_nodes(s) for s in _subgraphs(n)) for n in graph.node)


# ---------------------------------------------------------------------------------------------
def _check_inputs(model, spec, class_names, channel_names, quantize, opset):
    cell = model.cell
    if not getattr(cell, "onnx_exportable", True):
        raise SeqeqError(f"the {spec.cell!r} cell cannot be exported to ONNX",
                         "Choose another cell, or keep the PyTorch model")
    if quantize not in (None, "int8"):
        raise SeqeqError(f"unknown quantisation {quantize!r}", "Use quantize=None or 'int8'")
    if not _MIN_OPSET <= int(opset) <= max(_IR_FOR_OPSET):
        raise SeqeqError(f"opset {opset} is not supported",
                         f"Use an opset between {_MIN_OPSET} and {max(_IR_FOR_OPSET)}")
    class_names = [str(c) for c in class_names]
    channel_names = [str(c) for c in channel_names]
    n_out = model.head.out_features
    if not len(class_names) == spec.num_classes == n_out:
        raise SeqeqError(f"{len(class_names)} class names for a model with {n_out} classes "
                         f"(spec: {spec.num_classes})", "Pass one name per class, in label order")
    if not len(channel_names) == spec.input_size == model.input_size:
        raise SeqeqError(f"{len(channel_names)} channel names for a model with "
                         f"{model.input_size} input channels (spec: {spec.input_size})",
                         "Pass one name per input channel, in column order")
    if len(set(class_names)) != len(class_names):
        raise SeqeqError(f"class names are not unique: {class_names}")
    return class_names, channel_names


def _h0_row(cell) -> np.ndarray:
    h0 = cell.init_state(_TRACE_BATCH, torch.device("cpu"), torch.float32).detach().numpy()
    if h0.shape != (_TRACE_BATCH, cell.state_size) or not np.array_equal(h0[0], h0[1]):
        raise ValueError(f"cell {cell.name!r}: init_state must give the same (B, S) row for every "
                         "series to be exported")
    return h0[:1].astype(np.float32)


def _trace_length_for(model: nn.Module, wanted: int) -> int:
    """A sequence length the cell accepts (cells with per-timestep weights for T0 steps reject
    longer series): ``wanted``, else the longest shorter one >= 2 (length 1 would let the
    tracer treat the time axis as a broadcast dimension)."""
    for T in range(int(wanted), 1, -1):
        x = model.mean + model.std * torch.zeros(_TRACE_BATCH, T, model.input_size)
        try:
            with torch.no_grad():
                model.cell.prepare(model.inputs(x)[0])
        except ValueError:
            continue
        return T
    raise ValueError(f"cell {model.cell.name!r} accepts no sequence of length 2..{wanted} to trace")


def build_onnx_model(model: nn.Module, *, opset: int = DEFAULT_OPSET,
                     quantize: str | None = None, backend: str = "auto",
                     _trace_length: int = _TRACE_LENGTH) -> onnx.ModelProto:
    """The ONNX graph of ``model`` (no metadata); see the module docstring."""
    model = copy.deepcopy(model).float().cpu().eval()
    plan: dict[str, QuantizedTensor | None] = {}
    if quantize == "int8":
        plan = quantization_plan(model)
        model = quantize_model_weights(model)
    cell = model.cell
    state_names = set(model.state_dict(keep_vars=True).keys())
    for name, _ in model.named_parameters(remove_duplicate=False):
        state_names.add(name)
    b = _Builder(state_names)

    pool = model.pool
    # a pooled trace needs at least two blocks of steps (one would look like a broadcast axis)
    B, d = _TRACE_BATCH, model.input_size
    T = _trace_length_for(model, max(_trace_length, 2 * pool + 1) if pool > 1 else _trace_length)
    S = cell.state_size
    gen = torch.Generator().manual_seed(0)
    x_ex = model.mean + model.std * torch.randn(B, T, d, generator=gen)
    with torch.no_grad():
        u_ex = cell.prepare(model.inputs(x_ex)[0])
        T_u = -(-T // pool)
        if u_ex.ndim != 3 or tuple(u_ex.shape[:2]) != (B, T_u):
            raise ValueError(f"cell {cell.name!r}: prepare must map (B, T, d) to (B, T, F), "
                             f"got {tuple(u_ex.shape)}")
        h_ex = cell.step(u_ex[:, 0], cell.init_state(B, torch.device("cpu"), torch.float32))

    lengths = F.INPUT_LENGTHS  # what the time loop masks with: the input's, or the blocks'
    if pool > 1:
        L_ex = torch.tensor([T - k % max(T - 1, 1) for k in range(B)], dtype=torch.int64)
        pre = _trace(_Prelude(model), (x_ex, L_ex), ["x", "lengths"], ["u", "lengths_p"],
                     {"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
                      "u": {0: "batch", 1: "time"}, "lengths_p": {0: "batch"}}, opset, backend)
        lengths = "seqeq/pooled_lengths"
    else:
        pre = _trace(_Prelude(model), (x_ex,), ["x"], ["u"],
                     {"x": {0: "batch", 1: "time"}, "u": {0: "batch", 1: "time"}}, opset,
                     backend)
    step = _trace(_Step(model), (u_ex[:, 0].contiguous(), h_ex), ["u_t", "h"], ["h_next"],
                  {"u_t": {0: "batch"}, "h": {0: "batch"}, "h_next": {0: "batch"}}, opset, backend)
    head = _trace(_Head(model), (h_ex,), ["h"], ["logits"],
                  {"h": {0: "batch"}, "logits": {0: "batch"}}, opset, backend)

    # ---- main graph: prelude, initial state, trip count
    nodes: list[onnx.NodeProto] = []
    u = "seqeq/u"
    nodes += b.import_graph(pre.graph, "prelude/", {"x": F.INPUT_X, "u": u,
                                                    "lengths": F.INPUT_LENGTHS,
                                                    "lengths_p": lengths})
    u_shape = b.name("u_shape")
    nodes.append(helper.make_node("Shape", [u], [u_shape], name=u_shape))
    trips = b.name("T")
    nodes.append(helper.make_node("Gather", [u_shape, b.const(nodes, "one", np.array(1, np.int64))],
                                  [trips], name=trips, axis=0))
    batch = b.name("B")
    zero1 = b.const(nodes, "zero1", np.array([0], np.int64))
    one1 = b.const(nodes, "one1", np.array([1], np.int64))
    nodes.append(helper.make_node("Slice", [u_shape, zero1, one1], [batch], name=batch))
    h0_shape = b.name("h0_shape")
    nodes.append(helper.make_node("Concat", [batch, b.const(nodes, "S", np.array([S], np.int64))],
                                  [h0_shape], name=h0_shape, axis=0))
    h0, row = b.name("h0"), _h0_row(cell)
    if not row.any():
        nodes.append(helper.make_node("ConstantOfShape", [h0_shape], [h0], name=h0,
                                      value=numpy_helper.from_array(np.zeros(1, np.float32))))
    else:
        b.add_init("seqeq/h0_row", numpy_helper.from_array(row))
        nodes.append(helper.make_node("Expand", ["seqeq/h0_row", h0_shape], [h0], name=h0))

    # ---- loop body: u_t = u[:, t]; h = where(t < lengths, step(u_t, h), h)
    t_in, c_in, h_in = "seqeq/t", "seqeq/cond_in", "seqeq/h"
    body: list[onnx.NodeProto] = []
    u_t, h_step = "seqeq/u_t", "seqeq/h_step"
    body.append(helper.make_node("Gather", [u, t_in], [u_t], name=u_t, axis=1))
    body += b.import_graph(step.graph, "step/", {"u_t": u_t, "h": h_in, "h_next": h_step})
    live, live2, h_out, c_out = "seqeq/live", "seqeq/live_col", "seqeq/h_next", "seqeq/cond_out"
    body.append(helper.make_node("Less", [t_in, lengths], [live], name=live))
    axis1 = b.const(body, "axis1", np.array([1], np.int64))
    body.append(helper.make_node("Unsqueeze", [live, axis1], [live2], name=live2))
    body.append(helper.make_node("Where", [live2, h_step, h_in], [h_out], name=h_out))
    body.append(helper.make_node("Identity", [c_in], [c_out], name=c_out))
    body_graph = helper.make_graph(
        body, "seqeq_step",
        [helper.make_tensor_value_info(t_in, TensorProto.INT64, []),
         helper.make_tensor_value_info(c_in, TensorProto.BOOL, []),
         helper.make_tensor_value_info(h_in, TensorProto.FLOAT, ["batch", S])],
        [helper.make_tensor_value_info(c_out, TensorProto.BOOL, []),
         helper.make_tensor_value_info(h_out, TensorProto.FLOAT, ["batch", S])])
    nodes += _hoist_invariants(body_graph)
    h_T = "seqeq/h_T"
    # an explicit true condition: evaluators that follow the spec to the letter (onnx.reference)
    # run a Loop whose cond input is empty zero times
    cond = b.const(nodes, "true", np.array(True))
    nodes.append(helper.make_node("Loop", [trips, cond, h0], [h_T], name="seqeq/time_loop",
                                  body=body_graph))

    # ---- head
    nodes += b.import_graph(head.graph, "head/", {"h": h_T, "logits": F.OUTPUT_LOGITS})
    nodes.append(helper.make_node("Softmax", [F.OUTPUT_LOGITS], [F.OUTPUT_PROBABILITIES],
                                  name="seqeq/softmax", axis=-1))

    # ---- weights-only int8: DequantizeLinear in front of everything
    nodes = _int8_weights(b, plan) + _fold_constants(nodes, opset)
    C = model.head.out_features
    graph = helper.make_graph(
        nodes, "seqeq",
        [helper.make_tensor_value_info(F.INPUT_X, TensorProto.FLOAT, ["batch", "time", d]),
         helper.make_tensor_value_info(F.INPUT_LENGTHS, TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info(F.OUTPUT_LOGITS, TensorProto.FLOAT, ["batch", C]),
         helper.make_tensor_value_info(F.OUTPUT_PROBABILITIES, TensorProto.FLOAT, ["batch", C])],
        initializer=list(b.inits.values()))
    return _finish(graph, opset)


def _int8_weights(b: _Builder, plan: dict[str, QuantizedTensor | None]) -> list[onnx.NodeProto]:
    """Replace every weight of ``plan`` among ``b``'s initializers by its int8 values and
    float32 scales; returns the ``DequantizeLinear`` nodes that give the float weight back under
    its own name (to go in front of everything that reads it)."""
    deq: list[onnx.NodeProto] = []
    for name in list(b.inits):
        qt = plan.get(name)
        if qt is None:
            continue
        del b.inits[name]
        qn, sn = f"{name}.int8", f"{name}.scale"
        b.add_init(qn, numpy_helper.from_array(qt.q, qn))
        b.add_init(sn, numpy_helper.from_array(qt.scale, sn))
        attrs = {} if qt.axis is None else {"axis": qt.axis}
        deq.append(helper.make_node("DequantizeLinear", [qn, sn], [name],
                                    name=f"dequantize/{name}", **attrs))
    return deq


def _finish(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    """The graph simplified (identities, repeated expressions, dead nodes, duplicate weights),
    integer tables narrowed, names shortened, as a model of ``opset``."""
    _elide_identities(graph)
    _cse(graph)
    _prune(graph)
    _dedupe_initializers(graph)
    _cse(graph)
    casts = _shrink_integer_tables(graph)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    _compact_names(graph)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", int(opset))],
                             producer_name="seqeq", producer_version=__version__,
                             ir_version=_IR_FOR_OPSET[int(opset)])


def _weight_bytes(model: nn.Module, quantize: str | None) -> tuple[int, int]:
    """(stored weight bytes incl. buffers, learnable parameter count)."""
    from .quantize import int8_size_bytes

    params = {id(p): p for p in model.parameters()}.values()
    n_params = int(sum(p.numel() for p in params))
    buffers = 0
    for bf in model.buffers():  # integer tables are stored as narrow as they fit
        a = bf.detach().cpu().numpy()
        buffers += a.size * (int_storage_dtype(a).itemsize if a.dtype.kind in "iu"
                             else a.dtype.itemsize)
    pbytes = int8_size_bytes(model) if quantize == "int8" else 4 * n_params
    return pbytes + buffers, n_params


def _verify(model_proto_bytes: bytes, model: nn.Module, quantize: str | None) -> float | None:
    """Max |logit| difference between onnxruntime and torch on a random batch of unequal lengths."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - onnxruntime is a dependency
        return None
    ref = quantize_model_weights(model) if quantize == "int8" else model
    ref = copy.deepcopy(ref).float().cpu().eval()
    gen = torch.Generator().manual_seed(1)
    T = _trace_length_for(ref, 6)
    lengths = torch.tensor([T, 1, max(1, T - 2)], dtype=torch.int64)
    x = ref.mean + ref.std * torch.randn(3, T, ref.input_size, generator=gen)
    with torch.no_grad():
        want = ref(x, lengths).numpy()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_proto_bytes, so, providers=["CPUExecutionProvider"])
    got = sess.run([F.OUTPUT_LOGITS], {F.INPUT_X: x.numpy(), F.INPUT_LENGTHS: lengths.numpy()})[0]
    return float(np.abs(got - want).max())


def export_onnx(model: nn.Module, spec, path: str | Path, *, class_names, channel_names,
                quantize: str | None = None, metadata: dict[str, Any] | None = None,
                opset: int = DEFAULT_OPSET, verify: bool = True,
                backend: str = "auto", _trace_length: int = _TRACE_LENGTH) -> dict[str, Any]:
    """Write ``model`` (a ``SequenceClassifier`` built from ``spec``) as one ONNX file.

    Inputs ``x`` float32 (batch, time, channels) of raw data and ``lengths`` int64 (batch,);
    outputs ``logits`` and ``probabilities`` (batch, classes). Batch and time are dynamic.
    Class names, channel names, the spec, the seqeq version, the quantisation and ``metadata``
    (any JSON-serialisable dict) are stored as ``metadata_props``; normalisation is in the graph.

    ``quantize="int8"``: per-row symmetric int8 weights (see :mod:`seqeq.export.quantize`).
    ``verify``: run the file in onnxruntime on a random batch and report the largest logit
    difference to PyTorch (to the fake-quantised model for int8) as ``max_abs_error``.

    Returns ``{"path", "file_bytes", "weight_bytes", "param_count", "opset", "quantize",
    "num_nodes", "max_abs_error"}``; ``weight_bytes`` counts parameters at their stored precision
    (int8: :func:`~seqeq.export.quantize.int8_size_bytes`) plus buffers (normalisation, indices).
    """
    class_names, channel_names = _check_inputs(model, spec, class_names, channel_names,
                                               quantize, opset)
    meta_json = metadata_json(metadata)
    m = build_onnx_model(model, opset=opset, quantize=quantize, backend=backend,
                         _trace_length=_trace_length)
    data, info = write_model_file(
        m, path, model, spec, fmt=F.FORMAT, class_names=class_names,
        channel_names=channel_names, quantize=quantize, meta_json=meta_json, opset=opset,
        doc=(f"seqeq {__version__} {spec.cell} classifier: x float32 (batch, time, "
             f"{len(channel_names)}) raw data + lengths int64 (batch,) -> logits, "
             f"probabilities (batch, {len(class_names)})"))
    return {**info, "max_abs_error": _verify(data, model, quantize) if verify else None}


def metadata_json(metadata: dict[str, Any] | None) -> str:
    """The caller's export metadata as JSON, or a one-line error naming why it is not."""
    try:
        return json.dumps(metadata or {}, sort_keys=True)
    except TypeError as e:
        raise SeqeqError(f"export metadata is not JSON-serialisable ({e})") from None


def write_model_file(m: onnx.ModelProto, path, model: nn.Module, spec, *, fmt: str,
                     class_names, channel_names, quantize: str | None, meta_json: str,
                     opset: int, doc: str, extra_props: dict[str, str] | None = None
                     ) -> tuple[bytes, dict[str, Any]]:
    """Give ``m`` seqeq's metadata (format ``fmt``, ``extra_props`` beside it) and ``doc``,
    check it, write it to ``path`` atomically; returns (its bytes, the export's info: path,
    sizes, parameter count, opset, quantisation, node count)."""
    helper.set_model_props(m, {
        F.KEY_FORMAT: fmt,
        F.KEY_VERSION: __version__,
        F.KEY_SPEC: json.dumps(spec.to_dict(), sort_keys=True),
        F.KEY_CLASS_NAMES: json.dumps(class_names),
        F.KEY_CHANNEL_NAMES: json.dumps(channel_names),
        F.KEY_QUANTIZE: quantize or "none",
        F.KEY_METADATA: meta_json,
        **(extra_props or {}),
    })
    m.doc_string = doc
    onnx.checker.check_model(m, full_check=True)
    data = m.SerializeToString()
    atomic_write_bytes(path, data)
    weight_bytes, n_params = _weight_bytes(model, quantize)
    return data, {
        "path": str(path),
        "file_bytes": len(data),
        "weight_bytes": weight_bytes,
        "param_count": n_params,
        "opset": int(opset),
        "quantize": quantize or "none",
        "num_nodes": count_nodes(m.graph),
    }
