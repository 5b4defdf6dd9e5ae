"""The one cell interface every recurrent cell implements.

A cell maps ``(x_t, h_{t-1}) -> h_t``. To keep the time loop cheap and the export generic, a cell
splits its work in two:

* :meth:`Cell.prepare` does everything that is parallel over time in one call, e.g. the input
  projection ``W x_t + b`` for all steps as one matmul: ``(B, T, d) -> (B, T, F)``;
* :meth:`Cell.step` does the sequential part: ``(u_t (B, F), h (B, S)) -> h (B, S)``.

The state is always one tensor of shape ``(B, S)`` (an LSTM keeps ``[h, c]``, a deep cell keeps
its layers side by side), so the sequence model, the masking of padded steps, the ONNX ``Loop`` and
the gradient diagnostic never ask which cell they hold. :meth:`Cell.readout` picks what the
classifier head reads from the final state.

Sizes come from hyperparameters alone (:meth:`Cell.count_params`), so the search can reject a
candidate over budget before anything is built. Capabilities are class attributes.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import nn

from ._fast import fast_loops_enabled, run_fast_loop

__all__ = ["Cell", "ACTIVATIONS", "resolve_activation", "length_mask"]

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


def resolve_activation(name: str):
    """Return the activation function for ``name`` (resolved once, at construction)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {list(ACTIVATIONS)}") from None


def _tracing() -> bool:
    """Traced or compiled: the step loop is what a tracer can follow."""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return torch.jit.is_tracing() or bool(compiling is not None and compiling())


def length_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool mask, True on real steps."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


class Cell(nn.Module, abc.ABC):
    """Base class of every recurrent cell.

    Subclasses call ``super().__init__(input_size, hidden_size, **hparams)`` with every
    hyperparameter needed to rebuild them (JSON-serialisable), implement :meth:`count_params`,
    :meth:`step`, and usually :meth:`prepare`.
    """

    #: registry name, set by ``@register_cell``
    name: ClassVar[str] = ""
    #: exports to ONNX through the generic Loop exporter
    onnx_exportable: ClassVar[bool] = True
    #: handles batches of unequal lengths (masking in the time loop)
    variable_length: ClassVar[bool] = True
    #: has a depth axis L (searched 1..6)
    deep: ClassVar[bool] = False
    #: supported weight parametrisations for the search ("dense", "lowrank", "permdiag")
    weight_kinds: ClassVar[tuple[str, ...]] = ("dense",)
    #: has an Euler-step axis K
    has_steps: ClassVar[bool] = False

    def __init__(self, input_size: int, hidden_size: int, **hparams: Any):
        super().__init__()
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.hparams = dict(hparams)

    # ---- sizes from hyperparameters alone -------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def count_params(cls, input_size: int, hidden_size: int, **hparams: Any) -> int:
        """Exact number of learnable scalars of the cell (no head) for these hyperparameters."""

    @classmethod
    def readout_size_for(cls, hidden_size: int, **hparams: Any) -> int:
        """Width of the feature vector the classifier head reads."""
        return hidden_size

    @classmethod
    def state_size_for(cls, hidden_size: int, **hparams: Any) -> int:
        """Width S of the state tensor (B, S)."""
        return hidden_size

    @classmethod
    def example_hparams(cls) -> list[dict[str, Any]]:
        """Small hyperparameter settings covering the cell's options, for the shared test suite.

        Every registered cell is checked with each of these (as aeon's ``_get_test_params``):
        together they should cover every weight kind, several K (``has_steps``) and L (``deep``).
        """
        return [{}]

    @property
    def readout_size(self) -> int:
        return self.readout_size_for(self.hidden_size, **self.hparams)

    @property
    def state_size(self) -> int:
        return self.state_size_for(self.hidden_size, **self.hparams)

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this cell with ``create_cell``."""
        return {
            "cell": self.name,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            **self.hparams,
        }

    # ---- computation ------------------------------------------------------------------------
    def init_state(self, batch: int, device=None, dtype=None) -> torch.Tensor:
        """Initial state h_0 = 0, shape (batch, S)."""
        p = next(self.parameters(), None)
        device = device if device is not None else (p.device if p is not None else None)
        dtype = dtype if dtype is not None else (p.dtype if p is not None else torch.float32)
        return torch.zeros(batch, self.state_size, device=device, dtype=dtype)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Time-parallel part: (B, T, d) -> (B, T, F). Must be causal. Default: identity."""
        return x

    @abc.abstractmethod
    def step(self, u_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Sequential part: (u_t (B, F), h (B, S)) -> new h (B, S)."""

    def regularization(self) -> torch.Tensor:
        """Extra loss term the cell asks for (e.g. TARNN's identity-gradient penalty). Default 0."""
        p = next(self.parameters(), None)
        return torch.zeros((), dtype=p.dtype if p is not None else None,
                           device=p.device if p is not None else None)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Features for the head from a state: (B, S) -> (B, R). Default: the first D units."""
        return h[:, : self.hidden_size]

    def forward(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One time step on raw input: (x_t (B, d), h (B, S)) -> h (B, S)."""
        return self.step(self.prepare(x_t[:, None, :])[:, 0], h)

    def fast_loop(self):
        """A :class:`~seqeq.cells._fast.FastLoop`: the same time loop with a hand-written backward
        (fewer ops per step, no autograd graph), or None to use the ``step`` loop. Default None."""
        return None

    def gpu_kernel(self):
        """The fused GPU kernel for this cell's configuration, a function ``(cell, u, h0,
        lengths) -> h_T`` from :mod:`seqeq.cells._triton`, or None (the default: on a GPU the
        fast loop runs). Used for CUDA float32 inputs when the kernels are switched on
        (:func:`~seqeq.cells._triton.supports` adds those checks)."""
        return None

    def forward_sequence(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, h0: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Run over a padded batch (B, T, d); return readout at each series' own last step.

        Padded steps leave the state unchanged, so padding never changes a prediction. Runs the
        cell's fast loop when it has one (same numbers up to float rounding), else the
        ``step`` loop (:meth:`reference_sequence`).
        """
        if fast_loops_enabled() and not _tracing() and x.shape[1] > 0:
            if x.is_cuda:  # Triton kernels (opt-in; never imported for CPU inputs)
                from . import _triton

                if _triton.gpu_kernels_enabled() and _triton.supports(self, x):
                    B, T, _ = x.shape
                    h = self.init_state(B, x.device, x.dtype) if h0 is None else h0
                    return self.readout(_triton.sequence(self, self.prepare(x), h, lengths))
            loop = self.fast_loop()
            if loop is not None:
                B, T, _ = x.shape
                u = self.prepare(x)
                h = self.init_state(B, x.device, x.dtype) if h0 is None else h0
                masks = None
                if lengths is not None and not bool((lengths == T).all()):
                    masks = length_mask(lengths.to(x.device), T).T[:, :, None].contiguous()
                return self.readout(run_fast_loop(loop, u, h, masks))
        return self.reference_sequence(x, lengths, h0)

    def reference_sequence(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, h0: torch.Tensor | None = None
    ) -> torch.Tensor:
        """:meth:`forward_sequence` as the plain loop of ``step`` calls (the ground truth)."""
        B, T, _ = x.shape
        # unbind, not u[:, t]: the backward of T slices would allocate T full-size zero tensors
        us = self.prepare(x).unbind(1)  # T x (B, F)
        h = self.init_state(B, x.device, x.dtype) if h0 is None else h0
        if lengths is None or bool((lengths == T).all()):
            for u_t in us:
                h = self.step(u_t, h)
        else:
            mask = length_mask(lengths.to(x.device), T)[:, :, None].unbind(1)  # T x (B, 1)
            for u_t, m_t in zip(us, mask, strict=True):
                h = torch.where(m_t, self.step(u_t, h), h)
        return self.readout(h)

    def states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every state h_1..h_T of an unpadded batch (for diagnostics): list of (B, S)."""
        h = self.init_state(x.shape[0], x.device, x.dtype)
        out = []
        for u_t in self.prepare(x).unbind(1):
            h = self.step(u_t, h)
            out.append(h)
        return out
