"""Fused time loops: the same numbers as the :meth:`Cell.step` loop, a hand-written backward.

The reference :meth:`Cell.forward_sequence` calls ``step`` T times and lets autograd record every
small op (T x K x a dozen nodes), then replays them one by one. At the sizes seqeq trains (B ~ 128,
D ~ 80) each op costs a few microseconds of dispatch and bookkeeping, so the Python time loop, not
the arithmetic, sets the speed. A *fast loop* runs the same equations with autograd off, keeps what
the backward needs in preallocated ``(T, K, B, D)`` buffers, and differentiates by hand:

* per-step scalars (``eta``, ``alpha``, ...) are read once as Python floats and folded into
  ``torch.add(.., alpha=)`` / ``torch.addmm(.., beta=, alpha=)``, so the step has fewer ops;
* the sequential backward does only what must be sequential (the adjoint state); gradients of the
  recurrent weights, the step scalars and the inputs are reduced once per time step over its
  K (x L) blocks while they are in cache (one batched product per weight instead of K small ones);
* activation derivatives come from the stored activation outputs (autograd's own kernels);
* the large buffers are recycled between training steps (:class:`Workspace`): a fresh buffer of
  tens of MB costs more in page faults on first touch than the loop spends computing in it.

The result equals the reference up to float rounding (the sums are ordered differently);
``tests/test_fast_paths.py`` checks forward and every gradient in float64 against the step loop
for every registered cell. A cell opts in by returning a :class:`FastLoop` from
:meth:`Cell.fast_loop`; ``step`` stays the one definition that the ONNX exporter and the
diagnostics use. :func:`use_fast_loops` switches the fast loops off (the reference, for tests and
benchmarks).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch
from torch.autograd.function import once_differentiable

from ._params import DenseMap, LowRankMap, PermDiagMap

__all__ = ["FastLoop", "run_fast_loop", "fast_loops_enabled", "use_fast_loops", "WORKSPACE",
           "Saved", "Consts", "MapOps", "GradAcc", "StackedMaps", "act_backward", "act_inplace",
           "step_sizes", "step_size_grad", "masked", "pad_features", "sum_blocks"]

_ENABLED = True


def fast_loops_enabled() -> bool:
    return _ENABLED


@contextlib.contextmanager
def use_fast_loops(enabled: bool = True) -> Iterator[None]:
    """Context manager: ``use_fast_loops(False)`` runs every cell through its ``step`` loop."""
    global _ENABLED
    old, _ENABLED = _ENABLED, bool(enabled)
    try:
        yield
    finally:
        _ENABLED = old


def _aten(name: str, overload: str):
    op = getattr(getattr(torch.ops.aten, name), overload)
    return getattr(op, "_op", op)  # the bound C++ op: skips a Python frame per call


_THRESHOLD_BWD = (_aten("threshold_backward", "default"),
                  _aten("threshold_backward", "grad_input"))
_TANH_BWD = (_aten("tanh_backward", "default"), _aten("tanh_backward", "grad_input"))
_SIGMOID_BWD = (_aten("sigmoid_backward", "default"), _aten("sigmoid_backward", "grad_input"))


def _relu_backward(g, p, out=None):
    if out is None:
        return _THRESHOLD_BWD[0](g, p, 0)
    return _THRESHOLD_BWD[1](g, p, 0, grad_input=out)


def _tanh_backward(g, p, out=None):
    if out is None:
        return _TANH_BWD[0](g, p)
    return _TANH_BWD[1](g, p, grad_input=out)


def _sigmoid_backward(g, p, out=None):
    if out is None:
        return _SIGMOID_BWD[0](g, p)
    return _SIGMOID_BWD[1](g, p, grad_input=out)


_ACT_BACKWARD = {"relu": _relu_backward, "tanh": _tanh_backward, "sigmoid": _sigmoid_backward}


def act_backward(name: str):
    """``f(grad, p, out=None) = grad * phi'(a)`` from the output p = phi(a), with autograd's own
    kernels (for ReLU, p > 0 exactly where a > 0)."""
    return _ACT_BACKWARD[name]


def act_inplace(name: str):
    """The in-place activation for ``name`` (the loop owns the tensor it applies it to)."""
    return {"relu": torch.relu_, "tanh": torch.tanh_, "sigmoid": torch.sigmoid_}[name]


class Consts:
    """0-dim tensors for a loop's Python-float constants. ``torch.mul(x, 0.3)`` wraps and converts
    the float on every call (about 1 us, more than a multiply of a (128, 80) block costs);
    ``torch.mul(x, consts(0.3))`` does not. Same value, same rounding."""

    def __init__(self, like: torch.Tensor):
        self.dtype, self.device = like.dtype, like.device
        self._c: dict[float, torch.Tensor] = {}

    def __call__(self, v: float) -> torch.Tensor:
        t = self._c.get(v)
        if t is None:
            t = self._c[v] = torch.tensor(v, dtype=self.dtype, device=self.device)
        return t


def step_sizes(eta: torch.Tensor, T: int) -> list[list[float]]:
    """``eta`` ((K,) or (K, T0)) as a ``T x K`` table of Python floats: the step size of Euler
    step k at timestep t (see :mod:`._steps`; sequences longer than T0 are rejected there)."""
    e = eta.detach()
    if e.dim() == 1:
        row = e.tolist()
        return [row] * T
    return e[:, :T].T.tolist()


def step_size_grad(eta: torch.Tensor, per_tk: torch.Tensor) -> torch.Tensor:
    """Gradient of ``eta`` from the gradient of each (t, k) step size, ``per_tk`` (T, K)."""
    if eta.dim() == 1:
        return per_tk.sum(0)
    g = torch.zeros_like(eta)
    g[:, : per_tk.shape[0]] = per_tk.T
    return g


class Workspace:
    """Recycled flat buffers for the saved tensors of fast loops.

    ``take`` hands out a buffer of at least ``numel`` elements (a free one when there is one,
    else a new one); ``give`` returns buffers once the backward that read them is done. A buffer
    whose graph is dropped without a backward is simply garbage-collected. At most ``max_bytes``
    of free buffers are kept (the oldest are dropped first).
    """

    def __init__(self, max_bytes: int = 768 << 20):
        self.max_bytes = max_bytes
        self._free: list[torch.Tensor] = []
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(view of ``shape``, the flat buffer to give back)."""
        n = 1
        for s in shape:
            n *= int(s)
        with self._lock:
            best = None
            for i, b in enumerate(self._free):
                if (b.dtype == like.dtype and b.device == like.device and n <= b.numel() <= 2 * n
                        and (best is None or b.numel() < self._free[best].numel())):
                    best = i
            flat = self._free.pop(best) if best is not None else None
        if flat is None:
            flat = torch.empty(n, dtype=like.dtype, device=like.device)
        return flat[:n].view(shape), flat

    def give(self, *flats: torch.Tensor) -> None:
        with self._lock:
            self._free.extend(flats)
            total = sum(b.numel() * b.element_size() for b in self._free)
            while self._free and total > self.max_bytes:
                old = self._free.pop(0)
                total -= old.numel() * old.element_size()


#: the process-wide workspace of every fast loop (CPU or GPU buffers alike)
WORKSPACE = Workspace()


class Saved:
    """What a fast loop's forward keeps for its backward: named buffers from :data:`WORKSPACE`
    (a None shape: no buffer), plus ``info`` (anything else). ``release`` hands the buffers back.
    """

    def __init__(self, like: torch.Tensor, **shapes: tuple[int, ...] | None):
        self._views: dict[str, torch.Tensor | None] = {}
        self._flats: list[torch.Tensor] = []
        self.info: object = None
        for name, shape in shapes.items():
            if shape is None:
                self._views[name] = None
                continue
            view, flat = WORKSPACE.take(shape, like)
            self._views[name] = view
            self._flats.append(flat)

    def get(self, *names: str) -> list[torch.Tensor | None]:
        return [self._views[n] for n in names]

    def flat(self, name: str) -> tuple:
        """The buffer as a tuple of its leading-dims-flattened blocks (one per (t, ...) step),
        or a tuple of Nones: indexing a tuple is cheaper than indexing a tensor in the loop."""
        v = self._views[name]
        if v is None:
            return _NONES
        return v.view(-1, *v.shape[-2:]).unbind(0)

    def release(self) -> None:
        WORKSPACE.give(*self._flats)
        self._flats, self._views = [], {}


class _Nones:
    def __getitem__(self, i):
        return None


_NONES = _Nones()


class MapOps:
    """A square weight map (``_params``) applied without autograd: ``M v`` and ``M^T v`` for a
    batch of row vectors, each optionally writing its intermediate to ``aux_out`` (the product
    with the first factor: ``v W2^T`` (B, r) for a low-rank map, the gathered ``v[:, index]``
    for a permutation-diagonal one, nothing for a dense one), which :class:`GradAcc` reuses for
    the parameter gradients. Weights are read once, when this object is built.
    """

    def __init__(self, m):
        self.params = list(m.parameters())
        self.D = m.in_f if isinstance(m, PermDiagMap) else (
            m.weight.shape[1] if isinstance(m, DenseMap) else m.W2.shape[1])
        if isinstance(m, DenseMap):
            self.kind = "dense"
            self.W = m.weight.detach()
            self.Wt = self.W.t()
            self.rank = None
        elif isinstance(m, LowRankMap):
            self.kind = "lowrank"
            self.ident = m.identity_plus
            # (r, D) row-major: BLAS is several times faster on these skinny products in the
            # orientation used below than on the parameters' own layout
            self.W2 = m.W2.detach()  # (r, D)
            self.W1r = m.W1.detach().t().contiguous()  # W1^T, (r, D)
            self.rank = self.W2.shape[0]
        elif isinstance(m, PermDiagMap):
            self.kind = "permdiag"
            self.idx = m.index
            self.diag = m.diag.detach()
            D = self.diag.shape[0]
            if m.in_f != D or not torch.equal(torch.sort(self.idx).values,
                                              torch.arange(D, device=self.idx.device)):
                raise ValueError("MapOps needs a square permutation-diagonal map")
            self.inv = torch.argsort(self.idx)
            self.diag_inv = self.diag[self.inv]
            self.rank = D
        else:  # pragma: no cover - every map kind is listed above
            raise TypeError(f"no fast ops for {type(m).__name__}")
        self.c = Consts(self.params[0])

    def aux_width(self, transpose: bool = False) -> int | None:
        """Width of the intermediate ``mv`` (or ``mtv``) writes to ``aux_out``; None: none."""
        if self.kind == "dense" or (transpose and self.kind == "permdiag"):
            return None
        return self.rank

    def mv(self, v: torch.Tensor, add: torch.Tensor | None = None,
           out: torch.Tensor | None = None, aux_out: torch.Tensor | None = None) -> torch.Tensor:
        """``M v + add`` for a batch of row vectors ``v`` (B, D)."""
        if self.kind == "dense":
            if add is None:
                return torch.mm(v, self.Wt, out=out)
            return torch.addmm(add, v, self.Wt, out=out)
        if self.kind == "lowrank":
            y = torch.mm(v, self.W2.t(), out=aux_out)
            if self.ident:
                base = v if add is None else v + add
            elif add is None:
                return torch.mm(y, self.W1r, out=out)
            else:
                base = add
            return torch.addmm(base, y, self.W1r, out=out)
        g = torch.index_select(v, 1, self.idx, out=aux_out)
        if add is None:
            return torch.mul(g, self.diag, out=out)
        return torch.addcmul(add, g, self.diag, out=out)

    def mtv(self, v: torch.Tensor, add: torch.Tensor | None = None, beta: float = 1.0,
            alpha: float = 1.0, out: torch.Tensor | None = None,
            aux_out: torch.Tensor | None = None) -> torch.Tensor:
        """``beta * add + alpha * M^T v`` (``add`` None: ``alpha * M^T v``); ``aux_out`` gets
        ``v W1`` for a low-rank map."""
        if self.kind == "dense":
            if add is None:
                r = torch.mm(v, self.W, out=out)
                return r if alpha == 1.0 else r.mul_(self.c(alpha))
            return torch.addmm(add, v, self.W, beta=beta, alpha=alpha, out=out)
        if self.kind == "lowrank":
            y = torch.mm(v, self.W1r.t(), out=aux_out)
            if self.ident:  # alpha (v + (beta / alpha) add) + alpha (v W1) W2
                if add is None:
                    base = v
                elif alpha == 0.0:
                    return torch.mul(add, self.c(beta), out=out)
                else:
                    base = torch.add(v, add, alpha=beta / alpha)
                return torch.addmm(base, y, self.W2, beta=alpha, alpha=alpha, out=out)
            if add is None:
                r = torch.mm(y, self.W2, out=out)
                return r if alpha == 1.0 else r.mul_(self.c(alpha))
            return torch.addmm(add, y, self.W2, beta=beta, alpha=alpha, out=out)
        g = v.index_select(1, self.inv)  # M^T v = (diag * v)[inv] for a permutation
        if add is None:
            r = torch.mul(g, self.diag_inv, out=out)
            return r if alpha == 1.0 else r.mul_(self.c(alpha))
        if beta != 1.0:
            add = torch.mul(add, self.c(beta))
        return torch.addcmul(add, g, self.diag_inv, value=alpha, out=out)


class GradAcc:
    """Parameter gradients of n same-kind maps (stacked on a leading dim), accumulated one block
    of rows at a time while the block is still in cache.

    ``add(G, S, aux, taux)`` adds the gradients of ``sum(G * (M S))`` for ``G``, ``S`` (n, R, D):
    ``aux`` is what ``mv`` wrote for those rows (n, R, r | D), ``taux`` what ``mtv`` wrote for
    ``G`` (n, R, r); ``result(scale)`` gives each map's gradients (in its ``params`` order),
    map i's multiplied by ``scale[i]``.
    """

    def __init__(self, maps: list[MapOps], rows: int, like: torch.Tensor):
        self.maps, self.kind = maps, maps[0].kind
        n, D = len(maps), like.shape[-1]
        z = like.new_zeros
        if self.kind == "dense":
            self.acc = [z(n, D, D)]
        elif self.kind == "lowrank":
            r = maps[0].rank
            self.acc = [z(n, D, r), z(n, r, D)]
        else:
            self.acc = [z(n, rows, D)]

    def add(self, G, S, aux=None, taux=None) -> None:
        if self.kind == "dense":  # dU += G^T S
            self.acc[0].baddbmm_(G.transpose(1, 2), S)
        elif self.kind == "lowrank":  # dW1 += G^T (S W2^T), dW2 += (G W1)^T S
            self.acc[0].baddbmm_(G.transpose(1, 2), aux)
            self.acc[1].baddbmm_(taux.transpose(1, 2), S)
        else:  # d diag += sum_rows G * S[:, index]
            self.acc[0].addcmul_(G, aux)

    def result(self, scale: list[float] | None = None) -> list[list[torch.Tensor]]:
        acc = self.acc if self.kind != "permdiag" else [self.acc[0].sum(1)]
        out = []
        for i in range(len(self.maps)):
            c = 1.0 if scale is None else scale[i]
            out.append([a[i] * c for a in acc])
        return out


class StackedMaps:
    """Square maps all read from the same vector (TARNN's maps of ``h_{t-1}``): ``mv`` gives
    ``[M_1 h, M_2 h, ...] + add`` side by side (B, n D) -- one matmul when every map is dense --
    ``mtv`` the sum of the transposed products, ``acc`` accumulates the gradients."""

    def __init__(self, maps):
        self.ops = [MapOps(m) for m in maps]
        self.params = [p for op in self.ops for p in op.params]
        self.fused = all(op.kind == "dense" for op in self.ops)
        self.n, self.D = len(maps), self.ops[0].D
        if self.fused:
            self.Wcat = torch.cat([op.W for op in self.ops])  # (n D, D)
        self._acc = None

    def mv(self, h: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return torch.addmm(add, h, self.Wcat.t())
        D = self.D
        out = torch.empty_like(add)
        for i, op in enumerate(self.ops):
            out[:, i * D:(i + 1) * D] = op.mv(h, add=add[:, i * D:(i + 1) * D])
        return out

    def mtv(self, g: torch.Tensor, add: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``add + sum_i M_i^T g_i`` for ``g`` (B, n D); accumulates the maps' gradients for the
        input ``h`` on the way."""
        D = self.D
        if self._acc is None:
            self._acc = ([h.new_zeros(self.n * D, D)] if self.fused else
                         [GradAcc([op], h.shape[0], h) for op in self.ops])
        if self.fused:
            self._acc[0].addmm_(g.t(), h)
            return torch.addmm(add, g, self.Wcat)
        r = add
        for i, op in enumerate(self.ops):
            gi = g[:, i * D:(i + 1) * D]
            w = op.aux_width(transpose=True)
            y = None if w is None else h.new_empty(h.shape[0], w)
            r = op.mtv(gi, add=r, aux_out=y)
            aux = None
            if op.kind == "lowrank":
                aux = h.mm(op.W2.t())
            elif op.kind == "permdiag":
                aux = h.index_select(1, op.idx)
            self._acc[i].add(gi[None], h[None], None if aux is None else aux[None],
                             None if y is None else y[None])
        return r

    def result(self, like: torch.Tensor) -> list[torch.Tensor]:
        """The maps' parameter gradients (zeros if ``mtv`` never ran)."""
        if self._acc is None:
            return [torch.zeros_like(p) for p in self.params]
        if self.fused:
            return list(self._acc[0].split(self.D))
        return [g for a in self._acc for g in a.result()[0]]


class FastLoop:
    """A cell's time loop with a hand-written backward.

    ``params`` lists the tensors the loop reads (the cell's recurrent parameters); ``forward``
    returns the final state and whatever ``backward`` needs; ``backward`` returns the gradients of
    the prepared inputs ``u`` (B, T, F), of ``h0`` and of each of ``params`` (None where unused).
    ``masks``: None (every series runs all T steps) or a (T, B, 1) bool tensor, True on real steps;
    a padded step leaves the state unchanged, exactly as the reference ``torch.where``.
    """

    params: list[torch.Tensor]

    def forward(self, u: torch.Tensor, h0: torch.Tensor, masks: torch.Tensor | None,
                need_grad: bool) -> tuple[torch.Tensor, object]:
        raise NotImplementedError

    def backward(self, saved: object, dh: torch.Tensor, masks: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor | None]]:
        raise NotImplementedError


class _LoopFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, loop, u, h0, masks, *params):
        hT, saved = loop.forward(u, h0, masks, True)
        ctx.loop, ctx.saved, ctx.masks = loop, saved, masks
        return hT

    @staticmethod
    @once_differentiable
    def backward(ctx, dh):
        du, dh0, dparams = ctx.loop.backward(ctx.saved, dh.contiguous(), ctx.masks)
        ctx.saved = None
        return (None, du, dh0, None, *dparams)


def run_fast_loop(loop: FastLoop, u: torch.Tensor, h0: torch.Tensor,
                  masks: torch.Tensor | None) -> torch.Tensor:
    """Final state of ``loop`` over prepared inputs ``u`` from ``h0``; differentiable."""
    u = u.contiguous()
    h0 = h0.contiguous()
    if torch.is_grad_enabled() and (u.requires_grad or h0.requires_grad
                                    or any(p.requires_grad for p in loop.params)):
        return _LoopFunction.apply(loop, u, h0, masks, *loop.params)
    with torch.no_grad():
        return loop.forward(u, h0, masks, False)[0]


def masked(dh: torch.Tensor, m: torch.Tensor | None, out: torch.Tensor | None = None
           ) -> torch.Tensor:
    """The part of the state gradient that flows into a step: zero on padded rows (``m`` False,
    as the backward of the reference ``torch.where``); ``dh`` itself when ``m`` is None."""
    if m is None:
        return dh if out is None else out.copy_(dh)
    return torch.where(m, dh, dh.new_zeros(()), out=out)


def pad_features(du: torch.Tensor, F: int) -> torch.Tensor:
    """``du`` (B, T, F') as the gradient of prepared inputs of width F >= F': the extra columns
    (per-timestep step sizes, whose gradient the loop returns for ``eta`` itself) get zeros."""
    if du.shape[-1] == F:
        return du
    out = du.new_zeros(*du.shape[:-1], F)
    out[..., : du.shape[-1]] = du
    return out


def sum_blocks(x: torch.Tensor, dim: int, out: torch.Tensor) -> torch.Tensor:
    """``x.sum(dim)`` written to ``out`` (any strides) as a chain of adds: faster than a
    reduction over a short middle dimension, and exact in the same order."""
    parts = x.unbind(dim)
    if len(parts) == 1:
        return out.copy_(parts[0])
    torch.add(parts[0], parts[1], out=out)
    for q in parts[2:]:
        out.add_(q)
    return out
