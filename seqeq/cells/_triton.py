"""Fused GPU kernels (Triton) for the equilibrium family: iRNN today.

UNTESTED ON A GPU: written without access to one. ``tests/test_fast_paths.py`` checks them
against the ``step`` loop (forward and every gradient) wherever CUDA and Triton exist; until those
tests have passed on a GPU the kernels are opt-in (:func:`use_gpu_kernels` or
``SEQEQ_GPU_KERNELS=1``), so by default a GPU trains through the same fast loops as the CPU.

This module is imported only for CUDA inputs (see :meth:`Cell.forward_sequence`); CPU-only
installs never import Triton.

iRNN (``seqeq.cells.irnn``), one program per block of ``BLOCK_B`` series:

* forward: the state of the block stays in registers across all T x K Euler steps; per step
  ``s = g + h``, ``a = s M^T + w_t`` (``tl.dot`` in IEEE fp32, no TF32: parity with the reference),
  ``p = phi(a)``, ``g += eta (p - alpha s)``; padded steps (``t >= length``) keep the state. The
  input projections ``w = W x + b`` for all steps come from :meth:`IRNN.prepare` (one large matmul
  beforehand). ``M = U.matrix()`` is materialised (dense D x D, D <= 128) whatever U's kind, so
  autograd carries ``dM`` back to U's own parameters.
* backward: a matching kernel runs the adjoint state backwards through the saved ``s``, ``p``
  (T, K, B, D) and writes ``dL/da`` and ``dL/dg`` for every step; the weight, step-size and input
  gradients are then reductions over those buffers (one ``dM = DA^T S`` matmul, sums).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

try:  # Triton ships with CUDA builds of torch; absent on CPU-only installs
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised on CPU-only installs
    triton = None
    tl = None

__all__ = ["available", "supports", "use_gpu_kernels", "gpu_kernels_enabled", "sequence"]

_ENABLED = os.environ.get("SEQEQ_GPU_KERNELS", "0") == "1"
_ACT = {"relu": 0, "tanh": 1, "sigmoid": 2}
MAX_D = 128


def available() -> bool:
    return triton is not None and torch.cuda.is_available()


def gpu_kernels_enabled() -> bool:
    return _ENABLED


@contextlib.contextmanager
def use_gpu_kernels(enabled: bool = True) -> Iterator[None]:
    """Context manager switching the Triton kernels on (or off) for CUDA inputs."""
    global _ENABLED
    old, _ENABLED = _ENABLED, bool(enabled)
    try:
        yield
    finally:
        _ENABLED = old


def supports(cell, x: torch.Tensor | None = None) -> bool:
    """Whether a kernel exists for this cell (and input: CUDA, float32)."""
    if not available() or cell.name != "irnn" or cell.hidden_size > MAX_D:
        return False
    if cell.hparams.get("activation", "relu") not in _ACT:
        return False
    if x is not None and (not x.is_cuda or x.dtype != torch.float32):
        return False
    return True


if triton is not None:

    @triton.jit
    def _act(a, ACT: tl.constexpr):
        if ACT == 0:
            return tl.maximum(a, 0.0)
        if ACT == 1:  # tanh(a) = 1 - 2 / (exp(2a) + 1)
            return 1.0 - 2.0 / (tl.exp(2.0 * a) + 1.0)
        return tl.sigmoid(a)

    @triton.jit
    def _act_grad(p, ACT: tl.constexpr):  # phi'(a) from p = phi(a)
        if ACT == 0:
            return (p > 0.0).to(tl.float32)
        if ACT == 1:
            return 1.0 - p * p
        return p * (1.0 - p)

    @triton.jit
    def _irnn_fwd(w_ptr, h0_ptr, mt_ptr, eta_ptr, alpha_ptr, len_ptr, hT_ptr, s_ptr, p_ptr,
                  B, T, D, stride_wb, stride_wt,
                  K: tl.constexpr, ACT: tl.constexpr, SAVE: tl.constexpr,
                  BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.arange(0, BLOCK_D)
        rmask, cmask = rows < B, cols < D
        m2 = rmask[:, None] & cmask[None, :]
        # M^T, zero-padded to BLOCK_D: padded columns of s never reach the real ones
        mt = tl.load(mt_ptr + cols[:, None] * D + cols[None, :],
                     mask=cmask[:, None] & cmask[None, :], other=0.0)
        alpha = tl.load(alpha_ptr)
        lens = tl.load(len_ptr + rows, mask=rmask, other=0)
        h = tl.load(h0_ptr + rows[:, None] * D + cols[None, :], mask=m2, other=0.0)
        for t in range(T):
            w = tl.load(w_ptr + rows[:, None] * stride_wb + t * stride_wt + cols[None, :],
                        mask=m2, other=0.0)
            g = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
            for k in tl.static_range(K):
                s = g + h
                a = tl.dot(s, mt, input_precision="ieee") + w
                p = _act(a, ACT)
                eta = tl.load(eta_ptr + t * K + k)
                g = g + eta * (p - alpha * s)
                if SAVE:
                    off = ((t * K + k) * B + rows[:, None]) * D + cols[None, :]
                    tl.store(s_ptr + off, s, mask=m2)
                    tl.store(p_ptr + off, p, mask=m2)
            h = tl.where((t < lens)[:, None], g, h)  # padded steps keep the state
        tl.store(hT_ptr + rows[:, None] * D + cols[None, :], h, mask=m2)

    @triton.jit
    def _irnn_bwd(dh_ptr, m_ptr, eta_ptr, alpha_ptr, len_ptr, s_ptr, p_ptr, da_ptr, dg_ptr,
                  dh0_ptr, B, T, D,
                  K: tl.constexpr, ACT: tl.constexpr,
                  BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.arange(0, BLOCK_D)
        rmask, cmask = rows < B, cols < D
        m2 = rmask[:, None] & cmask[None, :]
        mm = tl.load(m_ptr + cols[:, None] * D + cols[None, :],
                     mask=cmask[:, None] & cmask[None, :], other=0.0)  # M itself: ds = da M
        alpha = tl.load(alpha_ptr)
        lens = tl.load(len_ptr + rows, mask=rmask, other=0)
        dh = tl.load(dh_ptr + rows[:, None] * D + cols[None, :], mask=m2, other=0.0)
        for tt in range(T):
            t = T - 1 - tt
            live = (t < lens)[:, None]
            dg = tl.where(live, dh, 0.0)  # a padded step passes dh through untouched
            acc = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
            for kk in tl.static_range(K):
                k = K - 1 - kk
                off = ((t * K + k) * B + rows[:, None]) * D + cols[None, :]
                p = tl.load(p_ptr + off, mask=m2, other=0.0)
                eta = tl.load(eta_ptr + t * K + k)
                tl.store(dg_ptr + off, dg, mask=m2)
                da = dg * _act_grad(p, ACT)
                tl.store(da_ptr + off, eta * da, mask=m2)
                # s_k = g_{k-1} + h:  ds = eta (da M - alpha dg)
                ds = eta * (tl.dot(da, mm, input_precision="ieee") - alpha * dg)
                acc += ds
                dg = dg + ds
            dh = tl.where(live, acc, dh)
        tl.store(dh0_ptr + rows[:, None] * D + cols[None, :], dh, mask=m2)


def _launch_cfg(B: int, D: int) -> tuple[int, int, tuple[int]]:
    block_b = 16  # tl.dot needs >= 16 rows
    block_d = max(16, triton.next_power_of_2(D))
    return block_b, block_d, (triton.cdiv(B, block_b),)


class _IRNNKernel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, h0, lengths, eta_tk, M, alpha, K, act, need_grad):
        B, T, D = w.shape
        bb, bd, grid = _launch_cfg(B, D)
        hT = torch.empty_like(h0)
        S = P = hT  # dummies when nothing is saved
        if need_grad:
            S, P = w.new_empty(T, K, B, D), w.new_empty(T, K, B, D)
        _irnn_fwd[grid](w, h0, M.t().contiguous(), eta_tk, alpha, lengths, hT, S, P,
                        B, T, D, w.stride(0), w.stride(1),
                        K=K, ACT=_ACT[act], SAVE=need_grad, BLOCK_B=bb, BLOCK_D=bd)
        if need_grad:
            ctx.save_for_backward(S, P, lengths, eta_tk, M, alpha)
            ctx.K, ctx.act = K, act
        return hT

    @staticmethod
    def backward(ctx, dh):
        S, P, lengths, eta_tk, M, alpha = ctx.saved_tensors
        T, K, B, D = S.shape
        bb, bd, grid = _launch_cfg(B, D)
        DA, DG, dh0 = torch.empty_like(S), torch.empty_like(S), torch.empty_like(dh)
        _irnn_bwd[grid](dh.contiguous(), M.contiguous(), eta_tk, alpha, lengths, S, P, DA, DG,
                        dh0, B, T, D, K=K, ACT=_ACT[ctx.act], BLOCK_B=bb, BLOCK_D=bd)
        dM = DA.view(-1, D).t().mm(S.view(-1, D))  # a = M s + w
        gs = (DG * S).sum((2, 3))  # (T, K): <dg_k, s_k>
        gp = (DG * P).sum((2, 3))
        d_eta = gp - alpha * gs  # g_k = g_{k-1} + eta (p - alpha s)
        d_alpha = -(eta_tk * gs).sum()
        dw = DA.sum(1).transpose(0, 1)  # (B, T, D)
        return dw, dh0, None, d_eta, dM, d_alpha.reshape(alpha.shape), None, None, None


def _irnn(cell, u: torch.Tensor, h0: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    B, T, _ = u.shape
    D, K = cell.hidden_size, cell.K
    w = u[..., :D].contiguous()
    eta = cell.eta
    eta_tk = (eta.view(1, K).expand(T, K) if eta.dim() == 1 else eta[:, :T].t()).contiguous()
    lens = (torch.full((B,), T, device=u.device, dtype=torch.int32) if lengths is None
            else lengths.to(device=u.device, dtype=torch.int32).contiguous())
    M = cell.U.matrix().contiguous()  # autograd carries dM to U's own parameters
    need_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (w, h0, eta_tk, M, cell.alpha))
    return _IRNNKernel.apply(w, h0.contiguous(), lens, eta_tk, M, cell.alpha, K,
                             cell.hparams.get("activation", "relu"), need_grad)


def sequence(cell, u: torch.Tensor, h0: torch.Tensor, lengths: torch.Tensor | None
             ) -> torch.Tensor:
    """Final state of ``cell`` over prepared inputs ``u`` (B, T, F) from ``h0``; differentiable.
    Only for cells and inputs :func:`supports` accepts."""
    return _irnn(cell, u, h0, lengths)
