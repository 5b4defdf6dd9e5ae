"""C source for microcontrollers: ``model.c`` + ``model.h`` from the streaming step graph.

``seqeq export model.c [--quantize int8]`` compiles the one-step ONNX graph of
:mod:`seqeq.export.streaming` (batch 1) into one C99 function, then adds a small driver: a
caller-owned state struct, reset, one step on one raw sample, logits / probabilities / class from a
state, and a whole-window call. No dynamic allocation, nothing beyond ``<stdint.h>`` and
``<math.h>``, every weight ``static const`` (in flash); int8 models keep their weights as int8 with
per-row float scales and dequantise each weight where a product reads it, so RAM holds only the
state and the step's intermediate vectors.

Why a compiler of our own rather than a kept ONNX-to-C library: emx-onnx-cgen 1.4 turns every
cell's step into C, but its code (a) does not compile as ISO C99 with ``-pedantic -Werror``
(it passes ``float (*)[n]`` to ``const float (*)[n]`` parameters, a constraint violation before
C23), and (b) dequantises every int8 weight and transposes every weight matrix into stack buffers
on every step, so an int8 model needs its whole float weights in RAM each step, the one thing a
microcontroller lacks. The graphs seqeq writes use two dozen operators on vectors of a few hundred
values; compiling them here is a few hundred lines, and a new cell needs none of its own: whatever
its ``step`` traces to is compiled.

How: the graph is run once in onnxruntime with every intermediate exposed, which gives each
tensor's static shape (batch 1) and, for everything computed from weights alone (shapes,
transposed weights, index tables), its value. Those are folded into constants; the rest becomes a
straight-line sequence of loop nests over static shapes, one per node, reading their inputs
through index expressions (broadcasting, transposes, reshapes and int8 dequantisation are
expressions, not copies).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import __version__
from .._io import atomic_write_bytes
from ..errors import SeqeqError
from . import _format as F

__all__ = ["export_c", "compile_step_graph", "c_identifier"]

_ELEMENTWISE = {
    "Add": "({0} + {1})", "Sub": "({0} - {1})", "Mul": "({0} * {1})", "Div": "({0} / {1})",
    "Sigmoid": "(1.0f / (1.0f + expf(-{0})))", "Tanh": "tanhf({0})",
    "Relu": "({0} > 0.0f ? {0} : 0.0f)", "Neg": "(-{0})", "Where": "({0} ? {1} : {2})",
    "GreaterOrEqual": "({0} >= {1})", "Greater": "({0} > {1})", "Less": "({0} < {1})",
    "Expand": "{0}", "Identity": "{0}", "Exp": "expf({0})", "Abs": "fabsf({0})",
    "Sqrt": "sqrtf({0})", "Max": "fmaxf({0}, {1})",
}
_ALIASES = ("Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity")


def c_identifier(name: str) -> str:
    """``name`` as a C identifier prefix: letters, digits and ``_``, not starting with a digit."""
    s = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_") or "model"
    return ("m_" + s if s[0].isdigit() else s).lower()


def _strides(shape) -> list[int]:
    out, acc = [], 1
    for d in reversed(list(shape)):
        out.append(acc)
        acc *= int(d)
    return out[::-1]


@dataclass
class _T:
    """A tensor of the step: how C reads element ``i`` (a flat index expression)."""

    shape: tuple[int, ...]
    kind: str  # "buf" (a local array), "const", "input", "dq" (int8 weights), "view"
    c: str = ""  # the array's C name
    key: str = ""  # buf: its name in the first pass (what its last read is recorded under)
    scale: str = ""  # dq: the scales' C name
    #: dq: element i's scale is scale[(i / inner) % rows] (rows None: one scale); a reshape
    #: keeps the flat layout, so it keeps these too
    inner: int = 1
    rows: int | None = None
    src: str | None = None  # view: the tensor it reads
    perm: tuple[int, ...] | None = None  # view: a transpose of src (None: same flat layout)
    dtype: str = "float"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


class _Compiler:
    def __init__(self, m: onnx.ModelProto, values: dict[str, np.ndarray],
                 last_use: dict[str, int] | None = None):
        self.m, self.values = m, values
        #: first pass (None): where each intermediate is last read is recorded; second pass:
        #: intermediates share two arenas (float, byte), each freed after its last read
        self.last_use = last_use
        self.reads: dict[str, int] = {}
        self.at = 0  # the node being compiled
        self.arenas = {"float": [0, []], "unsigned char": [0, []]}  # high water, free (off, n)
        self.t: dict[str, _T] = {}
        self.consts: dict[str, np.ndarray] = {}  # C name -> data, emitted when read
        self.used: dict[str, None] = {}
        self.body: list[str] = []
        self.buffers: list[tuple[str, str, int]] = []
        #: multiply-accumulates of one step: products in MatMul, Gemm and Conv, and element-wise
        #: products with a weight (diagonal maps)
        self.macs = 0
        self._n = 0

    # ---- naming and reading ------------------------------------------------------------------
    def fresh(self, stem: str) -> str:
        self._n += 1
        return f"{stem}{self._n}"

    def const(self, arr: np.ndarray, stem: str = "w") -> str:
        name = self.fresh(stem)
        self.consts[name] = arr
        return name

    def read(self, name: str, idx: str) -> str:
        """C expression for element ``idx`` (a flat index expression) of tensor ``name``."""
        t = self.t[name]
        if t.kind == "buf":
            self.reads[t.key] = self.at
        if t.kind in ("buf", "input"):
            return f"{t.c}[{idx}]"
        if t.kind == "const":
            self.used[t.c] = None
            return f"{t.c}[{idx}]"
        if t.kind == "dq":
            self.used[t.c] = self.used[t.scale] = None
            if t.rows is None:
                return f"((float){t.c}[{idx}] * {t.scale}[0])"
            row = f"({idx})" if t.inner == 1 else f"(({idx}) / {t.inner})"
            if t.rows * t.inner < t.size:
                row = f"({row} % {t.rows})"
            return f"((float){t.c}[{idx}] * {t.scale}[{row}])"
        # a view: the same flat layout, or a transpose of its source
        if t.perm is None:
            return self.read(t.src, idx)
        src = self.t[t.src]
        out_st, src_st = _strides(t.shape), _strides(src.shape)
        terms = []
        for k, p in enumerate(t.perm):  # output axis k is source axis p
            if t.shape[k] == 1:
                continue
            part = f"({idx})" if out_st[k] == 1 else f"(({idx}) / {out_st[k]})"
            if k > 0:
                part = f"({part} % {t.shape[k]})"
            terms.append(part if src_st[p] == 1 else f"{part} * {src_st[p]}")
        return self.read(t.src, " + ".join(terms) or "0")

    def buffer(self, name: str, shape, dtype: str = "float") -> str:
        key = self.fresh("t")
        size = max(1, int(np.prod(shape, dtype=np.int64)) if len(shape) else 1)
        self.reads[key] = self.at
        if self.last_use is None:
            c = key
            self.buffers.append((dtype, c, size))
        else:  # first fit in the arena of its type
            arena = "float" if dtype == "float" else "unsigned char"
            high, free = self.arenas[arena]
            spot = next((k for k, (o, n) in enumerate(free) if n >= size), None)
            if spot is None:
                off = high
                self.arenas[arena][0] = high + size
            else:
                off, n = free.pop(spot)
                if n > size:
                    free.insert(spot, (off + size, n - size))
            self.live[key] = (arena, off, size)
            c = f"({'scratch' if arena == 'float' else 'flags'} + {off})"
        self.t[name] = _T(tuple(int(d) for d in shape), "buf", c, key=key, dtype=dtype)
        return c

    def release(self) -> None:
        """Second pass: give back the storage of every intermediate last read at this node."""
        for key in [k for k in self.live if self.last_use.get(k, -1) <= self.at]:
            arena, off, size = self.live.pop(key)
            free = self.arenas[arena][1]
            free.append((off, size))
            free.sort()
            merged: list[tuple[int, int]] = []
            for o, n in free:
                if merged and merged[-1][0] + merged[-1][1] == o:
                    merged[-1] = (merged[-1][0], merged[-1][1] + n)
                else:
                    merged.append((o, n))
            self.arenas[arena][1] = merged

    def value(self, name: str) -> np.ndarray:
        """The value of a constant (weights, shapes, index tables) or the run's value of a
        computed tensor (only its shape is read)."""
        t = self.t.get(name)
        if t is not None and t.kind == "const":
            return self.consts[t.c]
        return self.values[name]

    # ---- the graph ---------------------------------------------------------------------------
    def is_const(self, name: str) -> bool:
        return name in self.t and self.t[name].kind == "const"

    def add_const_tensor(self, name: str, arr: np.ndarray) -> None:
        arr = np.asarray(arr)
        if arr.dtype == np.int8:
            c = self.const(arr, "q")
            self.t[name] = _T(arr.shape, "const", c, dtype="int8_t")
            return
        if arr.dtype == np.bool_:
            dtype = "unsigned char"
        elif arr.dtype.kind in "iu":
            dtype = "int32_t"
        else:
            dtype = "float"
        self.t[name] = _T(tuple(arr.shape), "const", self.const(arr, "w"), dtype=dtype)

    def run(self) -> None:
        g = self.m.graph
        for init in g.initializer:
            self.add_const_tensor(init.name, numpy_helper.to_array(init))
        for i, vi in enumerate(g.input):
            shape = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
            self.t[vi.name] = _T(shape, "input", ("x_t", "state_in")[i])
        self.live: dict[str, tuple[str, int, int]] = {}
        for k, node in enumerate(g.node):
            self.at = k
            self.node(node)
            if self.last_use is not None:
                self.release()
        self.at = len(g.node)  # the outputs are read after every node

    def node(self, node: onnx.NodeProto) -> None:
        op, ins, outs = node.op_type, list(node.input), list(node.output)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        data_ins = [i for i in ins if i]
        if op == "Constant" or op == "Shape" or op == "ConstantOfShape" or (
                op != "DequantizeLinear" and all(self.is_const(i) for i in data_ins)):
            for o in outs:  # computed from weights or shapes alone: a constant
                self.add_const_tensor(o, self.value(o))
            return
        if op == "DequantizeLinear":
            q, s = self.t[ins[0]], self.t[ins[1]]
            if not (q.kind == "const" and q.dtype == "int8_t" and s.kind == "const"):
                raise SeqeqError(f"C export: {op} of a computed tensor is not supported")
            if len(ins) > 2 and ins[2] and np.any(self.consts[self.t[ins[2]].c]):
                raise SeqeqError("C export: int8 weights with a zero point are not supported")
            axis = attrs.get("axis", 1) if s.size > 1 else None
            if axis is None:
                self.t[outs[0]] = _T(q.shape, "dq", q.c, scale=s.c)
                return
            axis %= len(q.shape)
            self.t[outs[0]] = _T(q.shape, "dq", q.c, scale=s.c, rows=q.shape[axis],
                                 inner=int(np.prod(q.shape[axis + 1:], dtype=np.int64)))
            return
        shape = tuple(int(d) for d in self.value(outs[0]).shape)
        if op == "Transpose":
            src = self.t[ins[0]]
            perm = tuple(attrs.get("perm") or reversed(range(len(src.shape))))
            if src.kind == "dq":  # int8 weights: transpose the stored array instead
                q = self.consts[src.c].reshape(src.shape).transpose(perm)
                c = self.const(np.ascontiguousarray(q), "q")
                if src.rows is None:
                    self.t[outs[0]] = _T(shape, "dq", c, scale=src.scale)
                    return
                st = _strides(src.shape)
                axes = [k for k in range(len(src.shape))
                        if st[k] == src.inner and src.shape[k] == src.rows]
                if not axes:
                    raise SeqeqError("C export: a transpose of reshaped int8 weights is not "
                                     "supported")
                new = perm.index(axes[0])
                self.t[outs[0]] = _T(shape, "dq", c, scale=src.scale, rows=shape[new],
                                     inner=int(np.prod(shape[new + 1:], dtype=np.int64)))
                return
            self.t[outs[0]] = _T(shape, "view", src=ins[0], perm=tuple(int(p) for p in perm))
            return
        if op in _ALIASES:
            src = self.t[ins[0]]
            if src.kind == "dq":  # the same flat layout: the same scales per element
                self.t[outs[0]] = _T(shape, "dq", src.c, scale=src.scale, rows=src.rows,
                                     inner=src.inner)
                return
            self.t[outs[0]] = _T(shape, "view", src=ins[0])
            return
        handler = getattr(self, f"op_{op}", None)
        if handler is None and op not in _ELEMENTWISE:
            raise SeqeqError(f"C export: the operator {op} is not supported",
                             "Export ONNX (best.onnx or --streaming) instead")
        if handler is None:
            self.elementwise(op, ins, outs[0], shape)
        else:
            handler(ins, outs, attrs, shape)

    # ---- emitters ----------------------------------------------------------------------------
    def loops(self, shape, indent: str = "    ") -> tuple[list[str], list[str], str]:
        """Nested loops over ``shape``: (opening lines, closing lines, the inner indent); loop
        variable of axis k is ``i{k}``."""
        opening, closing = [], []
        for k, d in enumerate(shape):
            opening.append(f"{indent}for (i{k} = 0; i{k} < {d}; ++i{k}) {{")
            closing.insert(0, f"{indent}}}")
            indent += "    "
        return opening, closing, indent

    def index(self, shape_in, shape_out, offset: int = 0) -> str:
        """Flat index into a tensor of ``shape_in`` broadcast to ``shape_out`` at loop
        variables ``i0..``."""
        shape_in = (1,) * (len(shape_out) - len(shape_in)) + tuple(shape_in)
        st = _strides(shape_in)
        terms = [f"i{k}" if st[k] == 1 else f"i{k} * {st[k]}"
                 for k in range(len(shape_out)) if shape_in[k] != 1]
        if offset:
            terms.append(str(offset))
        return " + ".join(terms) or "0"

    def block(self, lines: list[str], var_count: int) -> None:
        decl = (["    {", "        int " + ", ".join(f"i{k}" for k in range(var_count)) + ";"]
                if var_count else ["    {"])
        self.body += decl + ["    " + ln for ln in lines] + ["    }"]

    def elementwise(self, op: str, ins, out: str, shape) -> None:
        dtype = "unsigned char" if op in ("GreaterOrEqual", "Greater", "Less") else "float"
        if op == "Where":
            dtype = self.t[ins[1]].dtype
        operands = ins[:1] if op == "Expand" else ins
        if op == "Mul" and any(self.t[i].kind in ("const", "dq") for i in ins):
            self.macs += int(np.prod(shape, dtype=np.int64))
        c = self.buffer(out, shape, dtype)
        opening, closing, ind = self.loops(shape)
        args = [self.read(i, self.index(self.t[i].shape, shape)) for i in operands]
        expr = _ELEMENTWISE[op].format(*args)
        self.block(opening + [f"{ind}{c}[{self.index(shape, shape)}] = {expr};"] + closing,
                   len(shape))

    def op_MatMul(self, ins, outs, attrs, shape) -> None:
        a, b = self.t[ins[0]], self.t[ins[1]]
        K = a.shape[-1]
        c = self.buffer(outs[0], shape)
        self.macs += int(np.prod(shape, dtype=np.int64)) * K
        r = len(shape)
        a_shape = (1,) * (r - len(a.shape)) + a.shape
        b_shape = (1,) * (r - len(b.shape)) + b.shape
        a_st, b_st = _strides(a_shape), _strides(b_shape)

        def idx(sh, st, row_axis_var, col_var):
            terms = [f"i{k} * {st[k]}" for k in range(r - 2) if sh[k] != 1]
            terms += [f"{row_axis_var} * {st[r - 2]}", f"{col_var} * {st[r - 1]}"]
            return " + ".join(terms)

        opening, closing, ind = self.loops(shape)
        a_el = self.read(ins[0], idx(a_shape, a_st, f"i{r - 2}", "k"))
        b_el = self.read(ins[1], idx(b_shape, b_st, "k", f"i{r - 1}"))
        lines = opening + [f"{ind}float acc = 0.0f;", f"{ind}for (k = 0; k < {K}; ++k) {{",
                           f"{ind}    acc += {a_el} * {b_el};",
                           f"{ind}}}", f"{ind}{c}[{self.index(shape, shape)}] = acc;"] + closing
        self.body += ["    {", "        int k, " + ", ".join(f"i{k}" for k in range(r)) + ";"]
        self.body += ["    " + ln for ln in lines] + ["    }"]

    def op_Gemm(self, ins, outs, attrs, shape) -> None:
        a, b = self.t[ins[0]], self.t[ins[1]]
        ta, tb = attrs.get("transA", 0), attrs.get("transB", 0)
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        K = a.shape[0] if ta else a.shape[1]
        M, N = shape
        c = self.buffer(outs[0], shape)
        self.macs += M * N * K
        ai = f"k * {a.shape[1]} + i0" if ta else f"i0 * {a.shape[1]} + k"
        bi = f"i1 * {b.shape[1]} + k" if tb else f"k * {b.shape[1]} + i1"
        lines = [f"for (i0 = 0; i0 < {M}; ++i0) {{", f"    for (i1 = 0; i1 < {N}; ++i1) {{",
                 "        float acc = 0.0f;", f"        for (k = 0; k < {K}; ++k) {{",
                 f"            acc += {self.read(ins[0], ai)} * {self.read(ins[1], bi)};",
                 "        }"]
        val = "acc" if alpha == 1.0 else f"{alpha!r}f * acc"
        if len(ins) > 2 and ins[2]:
            bias = self.read(ins[2], self.index(self.t[ins[2]].shape, shape))
            val += f" + {bias}" if beta == 1.0 else f" + {beta!r}f * {bias}"
        lines += [f"        {c}[i0 * {N} + i1] = {val};", "    }", "}"]
        self.body += ["    {", "        int i0, i1, k;"] + ["        " + ln for ln in lines]
        self.body += ["    }"]

    def op_Conv(self, ins, outs, attrs, shape) -> None:
        x, w = self.t[ins[0]], self.t[ins[1]]
        if len(x.shape) != 3 or x.shape[0] != 1:
            raise SeqeqError("C export: only one-dimensional convolutions are supported")
        group = int(attrs.get("group", 1))
        stride = int((attrs.get("strides") or [1])[0])
        dil = int((attrs.get("dilations") or [1])[0])
        pad = int((attrs.get("pads") or [0, 0])[0])
        cin, L = x.shape[1], x.shape[2]
        cout, cpg, k = w.shape
        opg = cout // group
        c = self.buffer(outs[0], shape)
        lout = shape[2]
        self.macs += cout * lout * cpg * k
        bias = self.read(ins[2], "o") if len(ins) > 2 and ins[2] else "0.0f"
        lines = [f"for (o = 0; o < {cout}; ++o) {{", f"    for (p = 0; p < {lout}; ++p) {{",
                 f"        float acc = {bias};", f"        for (ci = 0; ci < {cpg}; ++ci) {{",
                 f"            for (j = 0; j < {k}; ++j) {{",
                 f"                int at = p * {stride} + j * {dil} - {pad};",
                 f"                if (at >= 0 && at < {L}) {{",
                 f"                    acc += {self.read(ins[1], f'(o * {cpg} + ci) * {k} + j')} * "
                 f"{self.read(ins[0], f'((o / {opg}) * {cpg} + ci) * {L} + at')};",
                 "                }", "            }", "        }",
                 f"        {c}[o * {lout} + p] = acc;", "    }", "}"]
        assert cin == cpg * group
        self.body += ["    {", "        int o, p, ci, j;"] + ["        " + ln for ln in lines]
        self.body += ["    }"]

    def op_Softmax(self, ins, outs, attrs, shape) -> None:
        axis = attrs.get("axis", -1)
        if axis not in (-1, len(shape) - 1):
            raise SeqeqError("C export: Softmax over an axis other than the last")
        n = shape[-1]
        rows = int(np.prod(shape[:-1], dtype=np.int64))
        c = self.buffer(outs[0], shape)
        x = ins[0]
        lines = [f"for (r = 0; r < {rows}; ++r) {{",
                 f"    float top = {self.read(x, f'r * {n}')}, sum = 0.0f;",
                 f"    for (j = 1; j < {n}; ++j) {{",
                 f"        float v = {self.read(x, f'r * {n} + j')};",
                 "        if (v > top) top = v;", "    }",
                 f"    for (j = 0; j < {n}; ++j) {{",
                 f"        {c}[r * {n} + j] = expf({self.read(x, f'r * {n} + j')} - top);",
                 f"        sum += {c}[r * {n} + j];", "    }",
                 f"    for (j = 0; j < {n}; ++j) {c}[r * {n} + j] /= sum;", "}"]
        self.body += ["    {", "        int r, j;"] + ["        " + ln for ln in lines] + ["    }"]

    def affine_copy(self, src: str, out: str, shape, starts, steps, axis_map=None,
                    dtype: str | None = None) -> None:
        """``out[i] = src[start + i * step]`` per axis (``axis_map[k]``: the source axis of
        output axis k, None for an axis the source lacks)."""
        s = self.t[src]
        c = self.buffer(out, shape, dtype or s.dtype)
        st = _strides(s.shape)
        axis_map = axis_map or list(range(len(shape)))
        terms = []
        for k, a in enumerate(axis_map):
            if a is None:
                continue
            term = f"i{k}" if steps[k] == 1 else f"i{k} * {steps[k]}"
            if starts[k]:
                term = f"({term} + {starts[k]})"
            terms.append(term if st[a] == 1 else f"{term} * {st[a]}")
        fixed = sum(starts[k] * st[a] for k, a in enumerate(axis_map) if a is None)
        idx = " + ".join(terms + ([str(fixed)] if fixed else [])) or "0"
        opening, closing, ind = self.loops(shape)
        self.block(opening + [f"{ind}{c}[{self.index(shape, shape)}] = {self.read(src, idx)};"]
                   + closing, len(shape))

    def op_Slice(self, ins, outs, attrs, shape) -> None:
        s = self.t[ins[0]]
        starts, ends = self.value(ins[1]).tolist(), self.value(ins[2]).tolist()
        axes = (self.value(ins[3]).tolist() if len(ins) > 3 and ins[3]
                else list(range(len(starts))))
        steps = (self.value(ins[4]).tolist() if len(ins) > 4 and ins[4] else [1] * len(starts))
        st0, sp0 = [0] * len(s.shape), [1] * len(s.shape)
        for a, b, e, p in zip(axes, starts, ends, steps, strict=True):
            a = a + len(s.shape) if a < 0 else a
            r = range(s.shape[a])[slice(int(b), int(e), int(p))]
            st0[a], sp0[a] = (r.start if len(r) else 0), r.step
        self.affine_copy(ins[0], outs[0], shape, st0, sp0)

    def op_Gather(self, ins, outs, attrs, shape) -> None:
        s = self.t[ins[0]]
        idx = np.asarray(self.value(ins[1])).astype(np.int64)
        axis = attrs.get("axis", 0)
        axis = axis + len(s.shape) if axis < 0 else axis
        idx = np.where(idx < 0, idx + s.shape[axis], idx)
        if idx.ndim == 0:  # one index: the axis disappears
            amap = [k for k in range(len(s.shape)) if k != axis]
            self._gather_fixed(ins[0], outs[0], shape, amap, axis, int(idx))
            return
        if idx.ndim == 1 and (len(idx) == 1 or np.all(np.diff(idx) == idx[1] - idx[0])):
            step = int(idx[1] - idx[0]) if len(idx) > 1 else 1
            starts = [0] * len(shape)
            steps = [1] * len(shape)
            starts[axis], steps[axis] = int(idx[0]), step
            self.affine_copy(ins[0], outs[0], shape, starts, steps)
            return
        # an index table (a permutation): stored as the narrowest unsigned type, read per element
        flat = idx.ravel()
        ctype = "uint8_t" if flat.max() < 256 else "uint16_t" if flat.max() < 65536 else "int32_t"
        table = self.fresh("g")
        self.consts[table] = flat.astype({"uint8_t": np.uint8, "uint16_t": np.uint16,
                                          "int32_t": np.int32}[ctype])
        self.used[table] = None
        c = self.buffer(outs[0], shape, s.dtype)
        st, ist = _strides(s.shape), _strides(idx.shape)
        r = idx.ndim
        pick = " + ".join(f"i{axis + j}" if ist[j] == 1 else f"i{axis + j} * {ist[j]}"
                          for j in range(r) if idx.shape[j] != 1) or "0"
        terms = [f"i{k}" if st[k] == 1 else f"i{k} * {st[k]}" for k in range(axis)
                 if s.shape[k] != 1]
        terms.append(f"{table}[{pick}]" if st[axis] == 1 else f"{table}[{pick}] * {st[axis]}")
        terms += [f"i{k + r - 1}" if st[k] == 1 else f"i{k + r - 1} * {st[k]}"
                  for k in range(axis + 1, len(s.shape)) if s.shape[k] != 1]
        opening, closing, ind = self.loops(shape)
        self.block(opening + [f"{ind}{c}[{self.index(shape, shape)}] = "
                              f"{self.read(ins[0], ' + '.join(terms))};"] + closing, len(shape))

    def _gather_fixed(self, src, out, shape, amap, axis, at) -> None:
        s = self.t[src]
        c = self.buffer(out, shape, s.dtype)
        st = _strides(s.shape)
        terms = [f"i{k}" if st[a] == 1 else f"i{k} * {st[a]}" for k, a in enumerate(amap)
                 if s.shape[a] != 1]
        if at:
            terms.append(str(at * st[axis]))
        opening, closing, ind = self.loops(shape)
        self.block(opening + [f"{ind}{c}[{self.index(shape, shape)}] = "
                              f"{self.read(src, ' + '.join(terms) or '0')};"] + closing,
                   len(shape))

    def op_Concat(self, ins, outs, attrs, shape) -> None:
        axis = attrs["axis"] % len(shape)
        c = self.buffer(outs[0], shape)
        st = _strides(shape)
        off = 0
        for i in ins:
            t = self.t[i]
            opening, closing, ind = self.loops(t.shape)
            dst = " + ".join([f"i{k}" if st[k] == 1 else f"i{k} * {st[k]}"
                              for k in range(len(shape)) if t.shape[k] != 1]
                             + ([str(off * st[axis])] if off else [])) or "0"
            el = self.read(i, self.index(t.shape, t.shape))
            self.block(opening + [f"{ind}{c}[{dst}] = {el};"] + closing, len(t.shape))
            off += t.shape[axis]

    def op_Split(self, ins, outs, attrs, shape) -> None:
        axis = attrs.get("axis", 0)
        s = self.t[ins[0]]
        axis = axis % len(s.shape)
        off = 0
        for o in outs:
            oshape = tuple(int(d) for d in self.value(o).shape)
            starts = [0] * len(oshape)
            starts[axis] = off
            self.affine_copy(ins[0], o, oshape, starts, [1] * len(oshape))
            off += oshape[axis]


def _exposed(m: onnx.ModelProto) -> onnx.ModelProto:
    """``m`` with batch 1 and every intermediate tensor as an output (for shapes and values)."""
    m = copy.deepcopy(m)
    for vi in list(m.graph.input) + list(m.graph.output):
        d = vi.type.tensor_type.shape.dim[0]
        d.ClearField("dim_param")
        d.dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(m)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in inferred.graph.value_info}
    have = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for o in node.output:
            if o and o not in have and o in types:
                m.graph.output.append(helper.make_tensor_value_info(o, types[o], None))
                have.add(o)
    return m


def compile_step_graph(step: onnx.ModelProto, fn: str) -> tuple[str, str, dict[str, int]]:
    """C for the one-step graph ``step``: (definitions of its constants, the function
    ``static void {fn}(const float *x_t, const float *state_in, float *state_out,
    float *logits, float *probabilities)``, ``{"weights", "scratch"}`` in bytes and ``macs``,
    the multiply-accumulates of one step)."""
    import onnxruntime as ort

    exposed = _exposed(step)
    S = exposed.graph.input[1].type.tensor_type.shape.dim[1].dim_value
    C = exposed.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(exposed.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    feeds = {F.INPUT_X_T: np.zeros((1, C), np.float32), F.INPUT_STATE: np.zeros((1, S), np.float32)}
    values = dict(zip(names, sess.run(names, feeds), strict=True))
    outputs = {F.OUTPUT_STATE: "state_out", F.OUTPUT_LOGITS: "logits",
               F.OUTPUT_PROBABILITIES: "probabilities"}
    last_use = None
    for _ in range(2):  # the first pass finds each intermediate's last read
        comp = _Compiler(exposed, values, last_use)
        comp.run()
        tail = []
        for name, c in outputs.items():
            t = comp.t[name]
            tail += [f"    for (n = 0; n < {t.size}; ++n) {c}[n] = {comp.read(name, 'n')};"]
        last_use = comp.reads
    consts, weight_bytes = [], 0
    for cname in comp.used:
        arr = np.asarray(comp.consts[cname])
        ints = {np.dtype(np.int8): "int8_t", np.dtype(np.uint8): "uint8_t",
                np.dtype(np.uint16): "uint16_t", np.dtype(np.bool_): "unsigned char"}
        if arr.dtype in ints or arr.dtype.kind in "iu":
            ctype = ints.get(arr.dtype, "int32_t")
            vals = [str(int(v)) for v in arr.ravel()]
        else:
            ctype, vals = "float", [_float(v) for v in arr.astype(np.float32).ravel()]
        weight_bytes += arr.size * {"int8_t": 1, "uint8_t": 1, "unsigned char": 1,
                                    "uint16_t": 2}.get(ctype, 4)
        lines = [", ".join(vals[i:i + 8]) for i in range(0, len(vals), 8)] or ["0"]
        consts.append(f"static const {ctype} {cname}[{max(arr.size, 1)}] = {{\n    "
                      + ",\n    ".join(lines) + "\n};")
    n_float, n_flag = comp.arenas["float"][0], comp.arenas["unsigned char"][0]
    scratch = 4 * n_float + n_flag
    decls = ([f"    float scratch[{n_float}];"] if n_float else []) + (
        [f"    unsigned char flags[{n_flag}];"] if n_flag else [])
    func = ([f"static void {fn}(const float *x_t, const float *state_in, float *state_out,",
             f"{' ' * (13 + len(fn))}float *logits, float *probabilities)", "{"]
            + decls + ["    int n;"] + comp.body + tail + ["}"])
    return "\n".join(consts), "\n".join(func), {"weights": weight_bytes, "scratch": scratch,
                                                  "macs": comp.macs}


def state_struct_bytes(state_size: int, n_classes: int) -> int:
    """Bytes of the generated ``NAME_state`` struct: the state, the logits, the probabilities."""
    return 4 * (state_size + 2 * n_classes)


def _float(v: float) -> str:
    v = float(v)
    if v != v or v in (float("inf"), float("-inf")):
        raise SeqeqError("C export: a weight is not finite")
    s = repr(v)
    if "e" not in s and "." not in s:
        s += ".0"
    return s + "f"


def _c_string(s: str) -> str:
    """``s`` as a C string literal: printable ASCII as it is, every other byte of its UTF-8 as
    an octal escape (three digits, so no following character can extend it)."""
    return '"' + "".join(chr(b) if 32 <= b < 127 and chr(b) not in '"\\?' else f"\\{b:03o}"
                         for b in s.encode("utf-8")) + '"'


def export_c(model, spec, path: str | Path, *, class_names, channel_names,
             quantize: str | None = None) -> dict[str, Any]:
    """Write ``path`` (``NAME.c``) and ``NAME.h`` beside it; see the module docstring."""
    from .exporter import _check_inputs
    from .streaming import build_streaming_model, initial_state, state_layout

    class_names, channel_names = _check_inputs(model, spec, class_names, channel_names,
                                               quantize, 17)
    path = Path(path)
    if path.suffix != ".c":
        raise SeqeqError(f"{path} does not end in .c", "Name the output file *.c")
    prefix = c_identifier(path.stem)
    ref = copy.deepcopy(model).float().cpu().eval()
    step = build_streaming_model(model, quantize=quantize)
    consts, func, sizes = compile_step_graph(step, f"{prefix}_step_graph")
    layout = state_layout(ref)
    S = max(b for _, b in layout.values())
    C, K = len(channel_names), len(class_names)
    P = prefix.upper()
    s0 = initial_state(ref, layout)
    guard = f"{P}_H"
    state_bytes = state_struct_bytes(S, K)
    size = f"{spec.hidden_size} units" + (f" x {spec.members}" if spec.members > 1 else "")
    header = f"""/* {path.stem}.h -- a seqeq {__version__} {spec.cell} classifier ({size}) for
 * microcontrollers.
 *
 * Generated by `seqeq export`; C99, no dynamic allocation, needs only <stdint.h> and <math.h>.
 * Feed raw samples (normalisation is inside) one at a time:
 *
 *     {prefix}_state st;
 *     {prefix}_reset(&st);
 *     for (t = 0; t < n; ++t) {prefix}_step(&st, &x[t * {P}_CHANNELS]);
 *     k = {prefix}_predict(&st);     (or {prefix}_classify(x, n, logits) for a whole window)
 *
 * Channels, in order: {", ".join(channel_names)}
 * Classes, in order: {", ".join(class_names)}
 * Weights: {"int8 with per-row scales" if quantize == "int8" else "float32"}.
 */
#ifndef {guard}
#define {guard}

#define {P}_CHANNELS {C}
#define {P}_CLASSES {K}
#define {P}_STATE_SIZE {S}
/* flash taken by weights (bytes; code comes on top), RAM of one state, and the stack scratch of
 * one step (bytes) */
#define {P}_WEIGHT_BYTES {sizes["weights"]}
#define {P}_STATE_BYTES {state_bytes}
#define {P}_SCRATCH_BYTES {sizes["scratch"]}
/* multiply-accumulates per sample */
#define {P}_MACS_PER_STEP {sizes["macs"]}

/* one stream's state: the recurrence and front ends, and the latest outputs */
typedef struct {{
    float s[{P}_STATE_SIZE];
    float logits[{P}_CLASSES];
    float probabilities[{P}_CLASSES];
}} {prefix}_state;

extern const char *const {prefix}_class_names[{P}_CLASSES];
extern const char *const {prefix}_channel_names[{P}_CHANNELS];

/* before a stream's first sample */
void {prefix}_reset({prefix}_state *st);
/* one raw sample x[{P}_CHANNELS]: updates the state and its logits and probabilities */
void {prefix}_step({prefix}_state *st, const float *x);
/* from a state (after at least one step) */
void {prefix}_logits(const {prefix}_state *st, float *out);
void {prefix}_probabilities(const {prefix}_state *st, float *out);
int {prefix}_predict(const {prefix}_state *st);
/* a whole window of `length` samples, row-major x[length * {P}_CHANNELS]: the predicted class
 * (-1 for length < 1); `logits` (may be NULL) receives the logits */
int {prefix}_classify(const float *x, int length, float *logits);

#endif
"""
    init_vals = ", ".join(_float(v) for v in s0)
    names = ", ".join(_c_string(c) for c in class_names)
    channels = ", ".join(_c_string(c) for c in channel_names)
    source = f"""/* {path.stem}.c -- generated by seqeq {__version__} (`seqeq export`);
 * see {path.stem}.h */
#include <stdint.h>
#include <math.h>
#include "{path.stem}.h"

const char *const {prefix}_class_names[{P}_CLASSES] = {{{names}}};
const char *const {prefix}_channel_names[{P}_CHANNELS] = {{{channels}}};

static const float {prefix}_initial_state[{P}_STATE_SIZE] = {{{init_vals}}};

{consts}

{func}

void {prefix}_reset({prefix}_state *st)
{{
    int n;
    for (n = 0; n < {P}_STATE_SIZE; ++n) st->s[n] = {prefix}_initial_state[n];
    for (n = 0; n < {P}_CLASSES; ++n) st->logits[n] = st->probabilities[n] = 0.0f;
}}

void {prefix}_step({prefix}_state *st, const float *x)
{{
    float next[{P}_STATE_SIZE];
    int n;
    {prefix}_step_graph(x, st->s, next, st->logits, st->probabilities);
    for (n = 0; n < {P}_STATE_SIZE; ++n) st->s[n] = next[n];
}}

void {prefix}_logits(const {prefix}_state *st, float *out)
{{
    int n;
    for (n = 0; n < {P}_CLASSES; ++n) out[n] = st->logits[n];
}}

void {prefix}_probabilities(const {prefix}_state *st, float *out)
{{
    int n;
    for (n = 0; n < {P}_CLASSES; ++n) out[n] = st->probabilities[n];
}}

int {prefix}_predict(const {prefix}_state *st)
{{
    int n, best = 0;
    for (n = 1; n < {P}_CLASSES; ++n)
        if (st->logits[n] > st->logits[best]) best = n;
    return best;
}}

int {prefix}_classify(const float *x, int length, float *logits)
{{
    {prefix}_state st;
    int t;
    if (length < 1) return -1;
    {prefix}_reset(&st);
    for (t = 0; t < length; ++t) {prefix}_step(&st, x + (long)t * {P}_CHANNELS);
    if (logits) {prefix}_logits(&st, logits);
    return {prefix}_predict(&st);
}}
"""
    header_path = path.with_suffix(".h")
    atomic_write_bytes(header_path, header.encode())
    atomic_write_bytes(path, source.encode())
    return {"path": str(path), "header": str(header_path), "file_bytes": len(source),
            "weight_bytes": sizes["weights"], "scratch_bytes": sizes["scratch"],
            "state_bytes": state_bytes, "state_size": S, "quantize": quantize or "none",
            "macs_per_step": sizes["macs"],
            "prefix": prefix}
