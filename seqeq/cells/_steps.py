"""Learned step sizes ``eta`` of the Euler / inexact-Newton cells (iRNN, ERNN, TARNN).

Two layouts, chosen by the ``n_timesteps`` hyperparameter:

* ``n_timesteps=None`` -- one ``eta`` per step, shape ``(K,)``: works for any sequence length;
* ``n_timesteps=T0``   -- one ``eta`` per (step, timestep), shape ``(K, T0)``, as in the authors'
  code (iRNN, TARNN) and the ERNN paper. Only meaningful for fixed-length data; sequences longer
  than ``T0`` are rejected.

The per-timestep values are appended to the time-parallel features in ``prepare`` (the column
``eta[:, t]`` rides along with ``u_t``), so ``step`` needs no time counter in the state and stays
the same traced function at every step: ``u_t = [features_t, eta_{1..K, t}]``. Padding is at the end
of a series, so a real step ``t`` always reads ``eta[:, t]``. A single streaming call
``cell(x_t, h)`` sees ``x_t`` as position 0 and so uses ``eta[:, 0]``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["make_eta", "eta_count", "append_eta", "split_eta"]


def make_eta(K: int, n_timesteps: int | None, init: float) -> nn.Parameter:
    """The learnable step sizes, ``(K,)`` or ``(K, n_timesteps)``, all equal to ``init``."""
    shape = (int(K),) if n_timesteps is None else (int(K), int(n_timesteps))
    return nn.Parameter(torch.full(shape, float(init)))


def eta_count(K: int, n_timesteps: int | None) -> int:
    return int(K) * (1 if n_timesteps is None else int(n_timesteps))


def append_eta(u: torch.Tensor, eta: torch.Tensor, n_timesteps: int | None) -> torch.Tensor:
    """(B, T, F) -> (B, T, F + K) with the per-timestep step sizes; unchanged for ``(K,)``."""
    if n_timesteps is None:
        return u
    B, T, _ = u.shape
    if T > n_timesteps:
        raise ValueError(f"this cell learns one step size per timestep for {n_timesteps} steps; "
                         f"got a sequence of {T}")
    e = eta[:, :T].T.to(u.dtype)  # (T, K)
    return torch.cat([u, e.expand(B, T, e.shape[1])], dim=-1)


def split_eta(u_t: torch.Tensor, eta: torch.Tensor, n_timesteps: int | None
              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(B, F[+K]) -> (features (B, F), [eta_1..eta_K]) each a scalar or a (B, 1) column."""
    K = eta.shape[0]
    if n_timesteps is None:
        return u_t, [eta[k] for k in range(K)]
    F = u_t.shape[1] - K
    return u_t[:, :F], [u_t[:, F + k:F + k + 1] for k in range(K)]
