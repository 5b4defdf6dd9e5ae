"""Fused GPU kernels (Triton) for the seed cells: iRNN, DIRNN, TinyRNN, ERNN, TARNN (paper
variant) and SRNN.

Run on a GPU once (an H200, session 14; ``benchmarks/gpu_check.sh``, figures in
``benchmarks/RESULTS.md``, "Speed"): the iRNN, ERNN and SRNN kernels matched the step loop there
(``tests/test_fast_paths.py -m gpu``) and the iRNN kernel trained 5-13x faster than the fast
loop. The DIRNN / TinyRNN and TARNN kernels did not launch there: Triton's pipelining of their
(D, D) maps asked for more shared memory than the chip has at D = 128. And the DIRNN kernels'
compiled code (sm_90, read here) showed a race the launch failure had hidden: their state went
through global memory inside the time loop, and the pipeliner loaded the next steps' state
before this step had written it. Both are fixed -- the state stays in registers, those kernels
launch with one pipeline stage (``LAUNCH_OPTIONS``) -- and checked without a GPU (compiled for
sm_90 within its shared memory; Triton's interpreter against the step loop), not yet on one.
So the kernels stay opt-in (:func:`use_gpu_kernels` or
``SEQEQ_GPU_KERNELS=1``); by default a GPU trains through the same fast loops as the CPU.

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

DIRNN / TinyRNN (``seqeq.cells.dirnn``), the same scheme over layers: per step, the L layers run in
turn inside the kernel (``lower`` stays in registers from one layer to the next), each with its K
Euler steps; the state ``[S_1..S_L, z_L]`` is read once, kept in registers across the steps (the
L layers' S as one (L, B, D) tensor, a layer picked by a one-hot select) and written once.
``U_l`` is materialised dense, as for iRNN.

ERNN, TARNN (paper variant) and SRNN follow the iRNN scheme: every map of the state is a
materialised dense D x D matrix (SRNN's shift as a 0/1 matrix, exact), held on-chip across the
steps, except TARNN's four, which each step reads (from cache) where it uses them: four held
together do not fit an H200's shared memory at D = 128. The saved per-step tensors go to global
memory, the weight gradients are one matmul each afterwards.
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
#: Launch options per kernel (tests/test_fast_paths.py compiles each kernel with its own): with
#: Triton's default software pipelining, the prefetch buffers of the DIRNN / TinyRNN and TARNN
#: kernels' (D, D) maps need 392-650 KiB of shared memory at D = 128; an H200 has 227 KiB.
ONE_STAGE = {"num_stages": 1}
LAUNCH_OPTIONS = {"_deep_fwd": ONE_STAGE, "_deep_bwd": ONE_STAGE, "_tarnn_fwd": ONE_STAGE,
                  "_tarnn_bwd": ONE_STAGE}


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


def __getattr__(name: str):
    if name == "KERNELS":  # the cells whose class has a kernel (``Cell.gpu_kernel``)
        from ._base import Cell
        from ._registry import get_cell_class, list_cells

        return tuple(n for n in list_cells()
                     if get_cell_class(n).gpu_kernel is not Cell.gpu_kernel)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def supports(cell, x: torch.Tensor | None = None) -> bool:
    """Whether the cell's configuration has a kernel (its ``gpu_kernel()`` hook) that runs this
    input: Triton and CUDA present, D <= MAX_D, a known activation, a CUDA float32 input."""
    if not available() or cell.gpu_kernel() is None or cell.hidden_size > MAX_D:
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

    @triton.jit
    def _deep_fwd(u_ptr, st_ptr, mt_ptr, eta_ptr, alpha_ptr, gamma_ptr, rho_ptr, len_ptr,
                  z_ptr, p_ptr, g_ptr, sp_ptr, B, T, D, stride_ub, stride_ut,
                  L: tl.constexpr, K: tl.constexpr, ACT: tl.constexpr, SAVE: tl.constexpr,
                  BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
        # st: the state [S_1..S_L, z_L] (B, (L + 1) D), read once and written once: across the
        # steps it stays in registers (S as one (BLOCK_L, BLOCK_B, BLOCK_D) tensor, a layer read
        # and written through a one-hot select). Never round-trip it through global memory
        # inside the loop: Triton's pipeliner issues the next steps' loads before this step's
        # stores (a read-after-write race, seen in the compiled sm_90 code).
        rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.arange(0, BLOCK_D)
        rmask, cmask = rows < B, cols < D
        m2 = rmask[:, None] & cmask[None, :]
        mm2 = cmask[:, None] & cmask[None, :]
        SW = (L + 1) * D
        lidx = tl.arange(0, BLOCK_L)[:, None, None]
        off3 = rows[None, :, None] * SW + lidx * D + cols[None, None, :]
        m3 = (lidx < L) & m2[None, :, :]
        S3 = tl.load(st_ptr + off3, mask=m3, other=0.0)
        z_off = rows[:, None] * SW + L * D + cols[None, :]
        zl = tl.load(st_ptr + z_off, mask=m2, other=0.0)
        lens = tl.load(len_ptr + rows, mask=rmask, other=0)
        for t in range(T):
            live = (t < lens)[:, None]
            lower = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
            for l in tl.static_range(L):
                mt = tl.load(mt_ptr + l * D * D + cols[:, None] * D + cols[None, :],
                             mask=mm2, other=0.0)  # U_l^T
                eta = tl.load(eta_ptr + l)
                alpha = tl.load(alpha_ptr + l)
                sel = lidx == l
                s_prev = tl.sum(tl.where(sel, S3, 0.0), axis=0)
                w = tl.load(u_ptr + rows[:, None] * stride_ub + t * stride_ut + l * D
                            + cols[None, :], mask=m2, other=0.0)
                base = lower + tl.load(rho_ptr + l) * s_prev
                g = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
                for k in tl.static_range(K):
                    z = g + base
                    p = _act(tl.dot(z, mt, input_precision="ieee") + w, ACT)
                    g = g + eta * (p - alpha * z)
                    if SAVE:
                        off = (((t * L + l) * K + k) * B + rows[:, None]) * D + cols[None, :]
                        tl.store(z_ptr + off, z, mask=m2)
                        tl.store(p_ptr + off, p, mask=m2)
                if SAVE:
                    off = ((t * L + l) * B + rows[:, None]) * D + cols[None, :]
                    tl.store(g_ptr + off, g, mask=m2)
                    tl.store(sp_ptr + off, s_prev, mask=m2)
                S3 = tl.where(sel, tl.where(live, s_prev + g, s_prev)[None, :, :], S3)
                if l == L - 1:  # z_L = g + base; padded steps keep the old one
                    zl = tl.where(live, g + base, zl)
                else:
                    lower = lower + tl.load(gamma_ptr + l) * g
        tl.store(st_ptr + off3, S3, mask=m3)
        tl.store(st_ptr + z_off, zl, mask=m2)

    @triton.jit
    def _deep_bwd(dst_ptr, m_ptr, eta_ptr, alpha_ptr, gamma_ptr, rho_ptr, len_ptr,
                  z_ptr, p_ptr, da_ptr, dg_ptr, dlow_ptr, dbase_ptr, B, T, D,
                  L: tl.constexpr, K: tl.constexpr, ACT: tl.constexpr,
                  BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr):
        # dst: dL/d state (B, (L + 1) D), carried backwards through time in registers (as the
        # forward kernel's state) and written back once
        rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.arange(0, BLOCK_D)
        rmask, cmask = rows < B, cols < D
        m2 = rmask[:, None] & cmask[None, :]
        mm2 = cmask[:, None] & cmask[None, :]
        SW = (L + 1) * D
        lidx = tl.arange(0, BLOCK_L)[:, None, None]
        off3 = rows[None, :, None] * SW + lidx * D + cols[None, None, :]
        m3 = (lidx < L) & m2[None, :, :]
        D3 = tl.load(dst_ptr + off3, mask=m3, other=0.0)
        z_off = rows[:, None] * SW + L * D + cols[None, :]
        dz = tl.load(dst_ptr + z_off, mask=m2, other=0.0)
        lens = tl.load(len_ptr + rows, mask=rmask, other=0)
        for tt in range(T):
            t = T - 1 - tt
            live = (t < lens)[:, None]
            dzl = tl.where(live, dz, 0.0)
            dlower = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
            for ll in tl.static_range(L):
                l = L - 1 - ll
                mm = tl.load(m_ptr + l * D * D + cols[:, None] * D + cols[None, :],
                             mask=mm2, other=0.0)  # U_l: ds = da U_l
                eta = tl.load(eta_ptr + l)
                alpha = tl.load(alpha_ptr + l)
                sel = lidx == l
                d_old = tl.sum(tl.where(sel, D3, 0.0), axis=0)
                ds_new = tl.where(live, d_old, 0.0)  # into S_l + g
                if l == L - 1:
                    dg = ds_new + dzl
                else:
                    lo = ((t * L + l) * B + rows[:, None]) * D + cols[None, :]
                    tl.store(dlow_ptr + lo, dlower, mask=m2)  # for gamma_l: <dlower, g_l>
                    dg = ds_new + tl.load(gamma_ptr + l) * dlower
                dbase = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
                for kk in tl.static_range(K):
                    k = K - 1 - kk
                    off = (((t * L + l) * K + k) * B + rows[:, None]) * D + cols[None, :]
                    p = tl.load(p_ptr + off, mask=m2, other=0.0)
                    tl.store(dg_ptr + off, dg, mask=m2)
                    da = dg * _act_grad(p, ACT)
                    tl.store(da_ptr + off, eta * da, mask=m2)
                    # z_k = g_{k-1} + base:  ds = eta (da U - alpha dg)
                    ds = eta * (tl.dot(da, mm, input_precision="ieee") - alpha * dg)
                    dbase += ds
                    dg = dg + ds
                if l == L - 1:
                    dbase += dzl  # z_L = g + base
                bo = ((t * L + l) * B + rows[:, None]) * D + cols[None, :]
                tl.store(dbase_ptr + bo, dbase, mask=m2)  # for rho_l: <dbase, S_prev>
                new = ds_new + tl.load(rho_ptr + l) * dbase  # S_new = S + g; base = .. + rho S
                D3 = tl.where(sel, tl.where(live, new, d_old)[None, :, :], D3)
                dlower = dlower + dbase
            dz = tl.where(live, 0.0, dz)  # z_L is not carried to the step before
        tl.store(dst_ptr + off3, D3, mask=m3)
        tl.store(dst_ptr + z_off, dz, mask=m2)

    @triton.jit
    def _ernn_fwd(w_ptr, h0_ptr, vt_ptr, ut_ptr, eta_ptr, len_ptr, hT_ptr, hk_ptr, a_ptr, p_ptr,
                  B, T, D, stride_wb, stride_wt,
                  K: tl.constexpr, ACT: tl.constexpr, SAVE: tl.constexpr,
                  BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.arange(0, BLOCK_D)
        rmask, cmask = rows < B, cols < D
        m2 = rmask[:, None] & cmask[None, :]
        mm2 = cmask[:, None] & cmask[None, :]
        vt = tl.load(vt_ptr + cols[:, None] * D + cols[None, :], mask=mm2, other=0.0)  # V^T
        ut = tl.load(ut_ptr + cols[:, None] * D + cols[None, :], mask=mm2, other=0.0)  # U^T
        lens = tl.load(len_ptr + rows, mask=rmask, other=0)
        h = tl.load(h0_ptr + rows[:, None] * D + cols[None, :], mask=m2, other=0.0)
        for t in range(T):
            w = tl.load(w_ptr + rows[:, None] * stride_wb + t * stride_wt + cols[None, :],
                        mask=m2, other=0.0)
            hk = h
            for k in tl.static_range(K):
                a = tl.dot(hk, vt, input_precision="ieee") + w  # V h + W x + b
                p = _act(a + tl.dot(a, ut, input_precision="ieee"), ACT)  # phi((I + U) a)
                if SAVE:
                    off = ((t * K + k) * B + rows[:, None]) * D + cols[None, :]
                    tl.store(hk_ptr + off, hk, mask=m2)
                    tl.store(a_ptr + off, a, mask=m2)
                    tl.store(p_ptr + off, p, mask=m2)
                eta = tl.load(eta_ptr + t * K + k)
                hk = (1.0 - eta) * hk + eta * p
            h = tl.where((t < lens)[:, None], hk, h)
        tl.store(hT_ptr + rows[:, None] * D + cols[None, :], h, mask=m2)

    @triton.jit
    def _ernn_bwd(dh_ptr, v_ptr, u_ptr, eta_ptr, len_ptr, hk_ptr, p_ptr, dc_ptr, da_ptr,
                  dn_ptr, dh0_ptr, B, T, D,
                  K: tl.constexpr, ACT: tl.constexpr,
                  BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.arange(0, BLOCK_D)
        rmask, cmask = rows < B, cols < D
        m2 = rmask[:, None] & cmask[None, :]
        mm2 = cmask[:, None] & cmask[None, :]
        vm = tl.load(v_ptr + cols[:, None] * D + cols[None, :], mask=mm2, other=0.0)
        um = tl.load(u_ptr + cols[:, None] * D + cols[None, :], mask=mm2, other=0.0)
        lens = tl.load(len_ptr + rows, mask=rmask, other=0)
        dh = tl.load(dh_ptr + rows[:, None] * D + cols[None, :], mask=m2, other=0.0)
        for tt in range(T):
            t = T - 1 - tt
            live = (t < lens)[:, None]
            dk = tl.where(live, dh, 0.0)
            for kk in tl.static_range(K):
                k = K - 1 - kk
                off = ((t * K + k) * B + rows[:, None]) * D + cols[None, :]
                p = tl.load(p_ptr + off, mask=m2, other=0.0)
                eta = tl.load(eta_ptr + t * K + k)
                tl.store(dn_ptr + off, dk, mask=m2)  # dL/dh^(k), for eta_k
                dc = eta * dk * _act_grad(p, ACT)
                da = dc + tl.dot(dc, um, input_precision="ieee")  # c = a + U a
                tl.store(dc_ptr + off, dc, mask=m2)
                tl.store(da_ptr + off, da, mask=m2)
                dk = (1.0 - eta) * dk + tl.dot(da, vm, input_precision="ieee")  # a = V h + ..
            dh = tl.where(live, dk, dh)
        tl.store(dh0_ptr + rows[:, None] * D + cols[None, :], dh, mask=m2)

    @triton.jit
    def _tarnn_fwd(u_ptr, h0_ptr, pt_ptr, ut_ptr, eta_ptr, len_ptr, hT_ptr, z_ptr, p_ptr, q_ptr,
                   beta_ptr, B, T, D, stride_ub, stride_ut,
                   K: tl.constexpr, ACT: tl.constexpr, SAVE: tl.constexpr,
                   BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
        # paper variant; pt: [Us; B2; W2]^T as three (D, D) blocks
        rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.arange(0, BLOCK_D)
        rmask, cmask = rows < B, cols < D
        m2 = rmask[:, None] & cmask[None, :]
        mm2 = cmask[:, None] & cmask[None, :]
        sq = cols[:, None] * D + cols[None, :]
        lens = tl.load(len_ptr + rows, mask=rmask, other=0)
        h = tl.load(h0_ptr + rows[:, None] * D + cols[None, :], mask=m2, other=0.0)
        for t in range(T):
            # the four (D, D) maps are read where they are used, one at a time: held across
            # the loop they need 4 x 64 KiB of shared memory at D = 128 (more than an H200 has)
            ub = u_ptr + rows[:, None] * stride_ub + t * stride_ut + cols[None, :]
            ust = tl.load(pt_ptr + sq, mask=mm2, other=0.0)
            beta = tl.sigmoid(tl.dot(h, ust, input_precision="ieee")
                              + tl.load(ub, mask=m2, other=0.0))
            b2t = tl.load(pt_ptr + D * D + sq, mask=mm2, other=0.0)
            c = tl.dot(h, b2t, input_precision="ieee") + tl.load(ub + D, mask=m2, other=0.0)
            w2t = tl.load(pt_ptr + 2 * D * D + sq, mask=mm2, other=0.0)
            wu = tl.dot(h, w2t, input_precision="ieee") + tl.load(ub + 2 * D, mask=m2, other=0.0)
            if SAVE:
                tl.store(beta_ptr + (t * B + rows[:, None]) * D + cols[None, :], beta, mask=m2)
            ut = tl.load(ut_ptr + sq, mask=mm2, other=0.0)
            z = h
            for k in tl.static_range(K):
                p = _act(tl.dot(z, ut, input_precision="ieee") + wu, ACT)
                q = p - z + c
                if SAVE:
                    off = ((t * K + k) * B + rows[:, None]) * D + cols[None, :]
                    tl.store(z_ptr + off, z, mask=m2)
                    tl.store(p_ptr + off, p, mask=m2)
                    tl.store(q_ptr + off, q, mask=m2)
                z = z + tl.load(eta_ptr + t * K + k) * beta * q
            h = tl.where((t < lens)[:, None], z, h)
        tl.store(hT_ptr + rows[:, None] * D + cols[None, :], h, mask=m2)

    @triton.jit
    def _tarnn_bwd(dh_ptr, pm_ptr, um_ptr, eta_ptr, len_ptr, p_ptr, q_ptr, beta_ptr, da_ptr,
                   tq_ptr, dpre_ptr, dh0_ptr, B, T, D,
                   K: tl.constexpr, ACT: tl.constexpr,
                   BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.arange(0, BLOCK_D)
        rmask, cmask = rows < B, cols < D
        m2 = rmask[:, None] & cmask[None, :]
        mm2 = cmask[:, None] & cmask[None, :]
        sq = cols[:, None] * D + cols[None, :]
        lens = tl.load(len_ptr + rows, mask=rmask, other=0)
        dh = tl.load(dh_ptr + rows[:, None] * D + cols[None, :], mask=m2, other=0.0)
        for tt in range(T):
            t = T - 1 - tt
            live = (t < lens)[:, None]
            beta = tl.load(beta_ptr + (t * B + rows[:, None]) * D + cols[None, :], mask=m2,
                           other=0.0)
            dz = tl.where(live, dh, 0.0)
            gbeta = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
            dc = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
            dwu = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
            um = tl.load(um_ptr + sq, mask=mm2, other=0.0)  # read where used, as forward
            for kk in tl.static_range(K):
                k = K - 1 - kk
                off = ((t * K + k) * B + rows[:, None]) * D + cols[None, :]
                p = tl.load(p_ptr + off, mask=m2, other=0.0)
                q = tl.load(q_ptr + off, mask=m2, other=0.0)
                eta = tl.load(eta_ptr + t * K + k)
                tq = dz * beta  # z_{k+1} = z_k + eta beta q_k
                tl.store(tq_ptr + off, tq, mask=m2)  # for eta_k: <tq, q>
                gbeta += eta * dz * q
                da = eta * tq * _act_grad(p, ACT)
                tl.store(da_ptr + off, da, mask=m2)
                dc += eta * tq
                dwu += da
                dz = dz - eta * tq + tl.dot(da, um, input_precision="ieee")
            dbeta = gbeta * beta * (1.0 - beta)
            po = dpre_ptr + (rows[:, None] * T + t) * 3 * D + cols[None, :]  # (B, T, 3D)
            tl.store(po, dbeta, mask=m2)
            tl.store(po + D, dc, mask=m2)
            tl.store(po + 2 * D, dwu, mask=m2)
            usm = tl.load(pm_ptr + sq, mask=mm2, other=0.0)  # Us, B2, W2 themselves
            dprev = dz + tl.dot(dbeta, usm, input_precision="ieee")
            b2m = tl.load(pm_ptr + D * D + sq, mask=mm2, other=0.0)
            dprev += tl.dot(dc, b2m, input_precision="ieee")
            w2m = tl.load(pm_ptr + 2 * D * D + sq, mask=mm2, other=0.0)
            dprev += tl.dot(dwu, w2m, input_precision="ieee")
            dh = tl.where(live, dprev, dh)
        tl.store(dh0_ptr + rows[:, None] * D + cols[None, :], dh, mask=m2)

    @triton.jit
    def _srnn_fwd(u_ptr, h0_ptr, st_ptr, len_ptr, hT_ptr, hs_ptr, B, T, D, stride_ub, stride_ut,
                  ACT: tl.constexpr, SAVE: tl.constexpr,
                  BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
        # st: the cyclic shift as a 0/1 matrix, h W_p^T = roll(h, 1) (exact in IEEE)
        rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.arange(0, BLOCK_D)
        rmask, cmask = rows < B, cols < D
        m2 = rmask[:, None] & cmask[None, :]
        sh = tl.load(st_ptr + cols[:, None] * D + cols[None, :],
                     mask=cmask[:, None] & cmask[None, :], other=0.0)
        lens = tl.load(len_ptr + rows, mask=rmask, other=0)
        h = tl.load(h0_ptr + rows[:, None] * D + cols[None, :], mask=m2, other=0.0)
        for t in range(T):
            b = tl.load(u_ptr + rows[:, None] * stride_ub + t * stride_ut + cols[None, :],
                        mask=m2, other=0.0)
            hn = _act(tl.dot(h, sh, input_precision="ieee") + b, ACT)
            if SAVE:
                tl.store(hs_ptr + (t * B + rows[:, None]) * D + cols[None, :], hn, mask=m2)
            h = tl.where((t < lens)[:, None], hn, h)
        tl.store(hT_ptr + rows[:, None] * D + cols[None, :], h, mask=m2)

    @triton.jit
    def _srnn_bwd(dh_ptr, s_ptr, len_ptr, hs_ptr, du_ptr, dh0_ptr, B, T, D,
                  ACT: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
        cols = tl.arange(0, BLOCK_D)
        rmask, cmask = rows < B, cols < D
        m2 = rmask[:, None] & cmask[None, :]
        sm = tl.load(s_ptr + cols[:, None] * D + cols[None, :],
                     mask=cmask[:, None] & cmask[None, :], other=0.0)  # W_p: dh = da W_p
        lens = tl.load(len_ptr + rows, mask=rmask, other=0)
        dh = tl.load(dh_ptr + rows[:, None] * D + cols[None, :], mask=m2, other=0.0)
        for tt in range(T):
            t = T - 1 - tt
            live = (t < lens)[:, None]
            hn = tl.load(hs_ptr + (t * B + rows[:, None]) * D + cols[None, :], mask=m2, other=0.0)
            da = tl.where(live, dh, 0.0) * _act_grad(hn, ACT)
            tl.store(du_ptr + (rows[:, None] * T + t) * D + cols[None, :], da, mask=m2)
            dh = tl.where(live, tl.dot(da, sm, input_precision="ieee"), dh)
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


class _DeepKernel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, h0, lengths, M, eta, alpha, gamma, rho, L, K, act, need_grad):
        B, T, _ = u.shape
        D = M.shape[-1]
        bb, bd, grid = _launch_cfg(B, D)
        st = h0.contiguous().clone()
        Z = P = G = SP = st  # dummies when nothing is saved
        if need_grad:
            Z, P = u.new_empty(T, L, K, B, D), u.new_empty(T, L, K, B, D)
            G, SP = u.new_empty(T, L, B, D), u.new_empty(T, L, B, D)
        _deep_fwd[grid](u, st, M.transpose(1, 2).contiguous(), eta, alpha, gamma, rho, lengths,
                        Z, P, G, SP, B, T, D, u.stride(0), u.stride(1),
                        L=L, K=K, ACT=_ACT[act], SAVE=need_grad, BLOCK_B=bb, BLOCK_D=bd,
                        BLOCK_L=triton.next_power_of_2(L), **LAUNCH_OPTIONS["_deep_fwd"])
        if need_grad:
            ctx.save_for_backward(Z, P, G, SP, lengths, M, eta, alpha, gamma, rho)
            ctx.L, ctx.K, ctx.act = L, K, act
        return st

    @staticmethod
    def backward(ctx, dh):
        Z, P, G, SP, lengths, M, eta, alpha, gamma, rho = ctx.saved_tensors
        T, L, K, B, D = Z.shape
        bb, bd, grid = _launch_cfg(B, D)
        dst = dh.contiguous().clone()
        DA, DG = torch.empty_like(Z), torch.empty_like(Z)
        DLOW, DBASE = torch.zeros_like(G), torch.empty_like(G)
        _deep_bwd[grid](dst, M.contiguous(), eta, alpha, gamma, rho, lengths, Z, P, DA, DG,
                        DLOW, DBASE, B, T, D, L=L, K=K, ACT=_ACT[ctx.act], BLOCK_B=bb,
                        BLOCK_D=bd, BLOCK_L=triton.next_power_of_2(L),
                        **LAUNCH_OPTIONS["_deep_bwd"])
        # a = U_l z + w for every (t, k):  dU_l = sum DA z^T
        dM = torch.einsum("tlkbi,tlkbj->lij", DA, Z)
        gz = (DG * Z).sum((0, 2, 3, 4))  # (L,): <dg, z>
        gp = (DG * P).sum((0, 2, 3, 4))
        d_eta = gp - alpha * gz  # g <- g + eta (p - alpha z)
        d_alpha = -eta * gz
        d_gamma = (DLOW * G).sum((0, 2, 3))  # 0 for the top layer (never stored)
        d_rho = (DBASE * SP).sum((0, 2, 3))
        du = DA.sum(2).permute(2, 0, 1, 3).reshape(B, T, L * D)
        return du, dst, None, dM, d_eta, d_alpha, d_gamma, d_rho, None, None, None, None


def _deep(cell, u, h0, lengths):
    B, T, _ = u.shape
    lens = (torch.full((B,), T, device=u.device, dtype=torch.int32) if lengths is None
            else lengths.to(device=u.device, dtype=torch.int32).contiguous())
    M = torch.stack([m.matrix() for m in cell.U]).contiguous()  # (L, D, D)
    params = (M, cell.eta, cell.alpha, cell.gamma, cell.rho)
    need_grad = torch.is_grad_enabled() and (u.requires_grad or h0.requires_grad
                                             or any(t.requires_grad for t in params))
    return _DeepKernel.apply(u.contiguous(), h0, lens, *params, cell.L, cell.K,
                             cell.hparams.get("activation", "relu"), need_grad)


def _lens(lengths, B, T, device):
    if lengths is None:
        return torch.full((B,), T, device=device, dtype=torch.int32)
    return lengths.to(device=device, dtype=torch.int32).contiguous()


def _eta_table(eta, T, K):
    return (eta.view(1, K).expand(T, K) if eta.dim() == 1 else eta[:, :T].t()).contiguous()


class _ERNNKernel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, h0, lengths, eta_tk, V, U, K, act, need_grad):
        B, T, D = w.shape
        bb, bd, grid = _launch_cfg(B, D)
        hT = torch.empty_like(h0)
        HK = A = P = hT
        if need_grad:
            HK, A, P = (w.new_empty(T, K, B, D) for _ in range(3))
        _ernn_fwd[grid](w, h0, V.t().contiguous(), U.t().contiguous(), eta_tk, lengths, hT,
                        HK, A, P, B, T, D, w.stride(0), w.stride(1),
                        K=K, ACT=_ACT[act], SAVE=need_grad, BLOCK_B=bb, BLOCK_D=bd)
        if need_grad:
            ctx.save_for_backward(HK, A, P, lengths, eta_tk, V, U)
            ctx.K, ctx.act = K, act
        return hT

    @staticmethod
    def backward(ctx, dh):
        HK, A, P, lengths, eta_tk, V, U = ctx.saved_tensors
        T, K, B, D = HK.shape
        bb, bd, grid = _launch_cfg(B, D)
        DC, DA, DN = (torch.empty_like(HK) for _ in range(3))
        dh0 = torch.empty_like(dh)
        _ernn_bwd[grid](dh.contiguous(), V.contiguous(), U.contiguous(), eta_tk, lengths, HK,
                        P, DC, DA, DN, dh0, B, T, D, K=K, ACT=_ACT[ctx.act], BLOCK_B=bb,
                        BLOCK_D=bd)
        dU = DC.view(-1, D).t().mm(A.view(-1, D))  # c = a + U a
        dV = DA.view(-1, D).t().mm(HK.view(-1, D))  # a = V h + w
        d_eta = (DN * (P - HK)).sum((2, 3))  # h <- (1 - eta) h + eta p
        dw = DA.sum(1).transpose(0, 1)
        return dw, dh0, None, d_eta, dV, dU, None, None, None


def _ernn(cell, u, h0, lengths):
    B, T, _ = u.shape
    D, K = cell.hidden_size, cell.K
    w = u[..., :D].contiguous()
    eta_tk = _eta_table(cell.eta, T, K)
    V, U = cell.V.matrix().contiguous(), cell.U.matrix().contiguous()
    need_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (w, h0, eta_tk, V, U))
    return _ERNNKernel.apply(w, h0.contiguous(), _lens(lengths, B, T, u.device), eta_tk, V, U,
                             K, cell.hparams.get("activation", "relu"), need_grad)


class _TARNNKernel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, h0, lengths, eta_tk, Pm, U, K, act, need_grad):
        B, T, _ = u.shape
        D = U.shape[0]
        bb, bd, grid = _launch_cfg(B, D)
        hT = torch.empty_like(h0)
        Z = P = Q = BETA = hT
        if need_grad:
            Z, P, Q = (u.new_empty(T, K, B, D) for _ in range(3))
            BETA = u.new_empty(T, B, D)
        Pt = Pm.view(3, D, D).transpose(1, 2).contiguous()
        _tarnn_fwd[grid](u, h0, Pt, U.t().contiguous(), eta_tk, lengths, hT, Z, P, Q, BETA,
                         B, T, D, u.stride(0), u.stride(1),
                         K=K, ACT=_ACT[act], SAVE=need_grad, BLOCK_B=bb, BLOCK_D=bd,
                         **LAUNCH_OPTIONS["_tarnn_fwd"])
        if need_grad:
            ctx.save_for_backward(Z, P, Q, BETA, lengths, eta_tk, Pm, U)
            ctx.K, ctx.act = K, act
        return hT

    @staticmethod
    def backward(ctx, dh):
        Z, P, Q, BETA, lengths, eta_tk, Pm, U = ctx.saved_tensors
        T, K, B, D = Z.shape
        bb, bd, grid = _launch_cfg(B, D)
        DA, TQ = torch.empty_like(Z), torch.empty_like(Z)
        DPRE = Z.new_empty(B, T, 3 * D)  # dL/du: [beta, c, wu] pre-activations
        dh0 = torch.empty_like(dh)
        _tarnn_bwd[grid](dh.contiguous(), Pm.contiguous(), U.contiguous(), eta_tk, lengths, P, Q,
                         BETA, DA, TQ, DPRE, dh0, B, T, D, K=K, ACT=_ACT[ctx.act], BLOCK_B=bb,
                         BLOCK_D=bd, **LAUNCH_OPTIONS["_tarnn_bwd"])
        dU = DA.view(-1, D).t().mm(Z.view(-1, D))  # p = phi(U z + wu)
        H = Z[:, 0].transpose(0, 1).reshape(B * T, D)  # h_{t-1}, rows in (b, t) order
        dPm = DPRE.view(B * T, 3 * D).t().mm(H)  # [beta, c, wu] = [Us; B2; W2] h + u
        d_eta = (TQ * Q).sum((2, 3))
        return DPRE, dh0, None, d_eta, dPm, dU, None, None, None


def _tarnn(cell, u, h0, lengths):
    B, T, _ = u.shape
    D, K = cell.hidden_size, cell.K
    eta_tk = _eta_table(cell.eta, T, K)
    Pm = torch.cat([cell.Us.matrix(), cell.B2.matrix(), cell.W2.matrix()]).contiguous()
    U = cell.U.matrix().contiguous()
    uu = u[..., :3 * D].contiguous()
    need_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (uu, h0, eta_tk, Pm, U))
    return _TARNNKernel.apply(uu, h0.contiguous(), _lens(lengths, B, T, u.device), eta_tk, Pm,
                              U, K, cell.hparams.get("activation", "relu"), need_grad)


class _SRNNKernel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, h0, lengths, act, need_grad):
        B, T, D = u.shape
        bb, bd, grid = _launch_cfg(B, D)
        Wp = torch.roll(torch.eye(D, dtype=u.dtype, device=u.device), 1, 0)  # (W_p h)_i = h_{i-1}
        hT = torch.empty_like(h0)
        HS = u.new_empty(T, B, D) if need_grad else hT
        _srnn_fwd[grid](u, h0, Wp.t().contiguous(), lengths, hT, HS, B, T, D, u.stride(0),
                        u.stride(1), ACT=_ACT[act], SAVE=need_grad, BLOCK_B=bb, BLOCK_D=bd)
        if need_grad:
            ctx.save_for_backward(HS, lengths, Wp)
            ctx.act = act
        return hT

    @staticmethod
    def backward(ctx, dh):
        HS, lengths, Wp = ctx.saved_tensors
        T, B, D = HS.shape
        bb, bd, grid = _launch_cfg(B, D)
        du, dh0 = HS.new_empty(B, T, D), torch.empty_like(dh)
        _srnn_bwd[grid](dh.contiguous(), Wp.contiguous(), lengths, HS, du, dh0, B, T, D,
                        ACT=_ACT[ctx.act], BLOCK_B=bb, BLOCK_D=bd)
        return du, dh0, None, None, None


def _srnn(cell, u, h0, lengths):
    B, T, _ = u.shape
    need_grad = torch.is_grad_enabled() and (u.requires_grad or h0.requires_grad)
    return _SRNNKernel.apply(u.contiguous(), h0.contiguous(), _lens(lengths, B, T, u.device),
                             cell.hparams.get("activation", "relu"), need_grad)


def sequence(cell, u: torch.Tensor, h0: torch.Tensor, lengths: torch.Tensor | None
             ) -> torch.Tensor:
    """Final state of ``cell`` over prepared inputs ``u`` (B, T, F) from ``h0``; differentiable.
    Only for cells and inputs :func:`supports` accepts: the cell's ``gpu_kernel()`` runs it."""
    kernel = cell.gpu_kernel()
    if kernel is None:
        raise ValueError(f"cell {cell.name!r} with {cell.hparams} has no GPU kernel")
    return kernel(cell, u, h0, lengths)
