"""Where the convolution front end reads the series, and how many steps the recurrence runs over.

The controlled check behind "Convolution first" in RESULTS.md, on the configuration of
``augment_small.py`` (GRU D=24 reading the series through the 16-filter convolution front end,
the default schedule from ``train.schedule_epochs`` and ``train.batch_for``, lr 1e-2, no
validation), trained on the official training split and tested once, three seeds, per variant:

* ``series`` -- the filters read the series as the defaults read it before ``conv_first``: the
  block means of ``search.pool_for(T)`` steps (none up to 256 steps), ``conv_first=False``;
* ``first N`` -- the filters read every step and each block keeps each filter's largest
  response, in blocks that bring the recurrence to at most N steps (the default:
  ``search.CONV_RECURRENT_STEPS``);
* either, followed by ``conv=F`` (F filters instead of 16), ``dilations=1,2,4,8`` (a prototype
  measured and not kept: the filters in as many equal groups, each group's taps that many steps
  apart, so the front end reads 5 to 33 steps at once with the same weights) or ``TrainConfig``
  settings (``mixup=0.5 augment=0.1``), or ``distill=1`` (with mixup: the mixed copies trained
  towards a MiniRocket teacher's probabilities on them, drawn from ``seqeq.distill``'s pool).

    SEQEQ_DATA_DIR=../shared/data python benchmarks/conv_first.py ArrowHead OSULeaf
    ... --variants="series;first 64;first 32;first 16"   (names separated by ";")
    ... --seeds=5   (seeds per variant, default 3)
"""

from __future__ import annotations

import functools
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_VARIANTS = ("series", "first 64", "first 32", "first 16")


def dilated_convolve(model, dilations: list[int], x):
    """``SequenceClassifier.convolve`` with the filters in ``len(dilations)`` groups, group i's
    taps ``dilations[i]`` steps apart (causal, ReLU, as the model's own)."""
    import torch
    from torch import nn

    from seqeq.models import CONV_KERNEL

    z, w, b = x.transpose(1, 2), model.front.weight, model.front.bias
    edges = np.linspace(0, w.shape[0], len(dilations) + 1).astype(int)
    outs = [nn.functional.conv1d(nn.functional.pad(z, ((CONV_KERNEL - 1) * d, 0)),
                                 w[lo:hi], b[lo:hi], dilation=d)
            for d, lo, hi in zip(dilations, edges[:-1], edges[1:], strict=True)]
    return torch.relu(torch.cat(outs, 1)).transpose(1, 2)


def run(name: str, variant: str, seed: int) -> tuple[float, float]:
    """Test accuracy and seconds of one model: ``variant`` is ``series`` or ``first N``, then
    optionally ``conv=F`` (filters, default 16) and ``TrainConfig`` settings (``mixup=0.5``)."""
    import suite
    import torch

    from seqeq.distill import soft_mixes
    from seqeq.models import ModelSpec, build_model
    from seqeq.search import pool_for
    from seqeq.train import TrainConfig, batch_for, predict_logits, schedule_epochs, train_model

    torch.set_num_threads(1)
    tr, te = suite.load(name)
    words = variant.split()
    settings = dict(w.split("=", 1) for w in words if "=" in w)
    conv = int(settings.pop("conv", 16))
    dilations = [int(d) for d in settings.pop("dilations", "1").split(",")]
    distill = bool(int(settings.pop("distill", 0)))
    if words[0] == "series":
        pool, first = pool_for(tr.max_len), False
    else:
        pool, first = max(1, math.ceil(tr.max_len / int(words[1]))), True
    spec = ModelSpec("gru", tr.n_channels, 24, tr.n_classes, pool=pool, conv=conv,
                     conv_first=first)
    model = build_model(spec, seed=seed)
    if dilations != [1]:
        model.convolve = functools.partial(dilated_convolve, model, dilations)
    model.set_normalisation(*tr.channel_stats())
    bs = batch_for(tr.n_series, 64)
    cfg = TrainConfig(lr=1e-2, batch_size=bs, epochs=schedule_epochs(tr.n_series, bs),
                      patience=0, seed=seed, **{k: float(v) for k, v in settings.items()})
    t0 = time.perf_counter()  # the teacher's fit and its pool of blends count
    soft = soft_mixes(tr, cfg.mixup, seed=seed) if distill else None
    train_model(model, tr, cfg, soft=soft)
    return float((predict_logits(model, te).argmax(1) == te.y).mean()), time.perf_counter() - t0


def main() -> None:
    args = sys.argv[1:]
    only = [a.split("=", 1)[1] for a in args if a.startswith("--variants=")]
    names = [a for a in args if not a.startswith("--")] or ["ArrowHead", "OSULeaf"]
    variants = only[0].split(";") if only else list(DEFAULT_VARIANTS)
    seeds = int(next((a.split("=", 1)[1] for a in args if a.startswith("--seeds=")), 3))
    print(f"`SEQEQ_DATA_DIR=../shared/data python benchmarks/conv_first.py {' '.join(args)}`")
    print(f"\n| problem | variant | test % (mean ± std, {seeds} seeds) | seeds "
          "| seconds per model |")
    print("|---|---|---|---|---|")
    for name in names:
        for v in variants:
            r = [run(name, v, s) for s in range(seeds)]
            accs = [a for a, _ in r]
            print(f"| {name} | {v} | {100 * np.mean(accs):.1f} ± {100 * np.std(accs):.1f} | "
                  f"{', '.join(f'{100 * a:.1f}' for a in accs)} | "
                  f"{np.mean([t for _, t in r]):.0f} |", flush=True)


if __name__ == "__main__":
    main()
