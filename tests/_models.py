"""Test helpers shared by the export tests."""

from __future__ import annotations

import torch

from seqeq.models import build_model


def perturbed_model(spec, mean, std, seed: int = 0):
    """An untrained model of ``spec`` whose weights are moved off their initial values (every
    parameter scaled by 1 + 0.2 N(0, 1) and shifted by 0.005 N(0, 1)), so that no term of a cell
    is zero or symmetric by construction, with normalisation ``mean``/``std``; in eval mode."""
    model = build_model(spec, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + 0.2 * torch.randn(p.shape, generator=g))
            p.add_(0.005 * torch.randn(p.shape, generator=g))
    model.set_normalisation(mean, std)
    return model.eval()
