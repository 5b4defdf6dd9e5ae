"""Mixup (and schedule length) on small shape problems, one configuration, several seeds.

The controlled check behind "Mixup" in RESULTS.md, on the configuration of
``augment_small.py`` (GRU D=24 reading the series through the 16-filter convolution front end,
the pooling the defaults give long series, the default schedule from ``train.schedule_epochs``
and ``train.batch_for``, no validation), trained on the official training split and tested once,
for each variant: ``TrainConfig`` settings plus a factor on the schedule's length.

    SEQEQ_DATA_DIR=../shared/data python benchmarks/mixup_small.py ArrowHead OSULeaf
    ... --variants="none, 3x steps;augment 0.1, 3x steps"   (names separated by ";")
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: name -> (TrainConfig settings, schedule factor)
VARIANTS = {
    "none": ({}, 1),
    "mixup 0.5 + augment 0.1": ({"mixup": 0.5, "augment": 0.1}, 1),
    "none, 3x steps": ({}, 3),
    "augment 0.1, 3x steps": ({"augment": 0.1}, 3),
    "mixup 0.5 + augment 0.1, 3x steps": ({"mixup": 0.5, "augment": 0.1}, 3),
}


def run(name: str, settings: dict, factor: int, seed: int) -> tuple[float, float]:
    import suite

    from seqeq.models import ModelSpec, build_model
    from seqeq.search import pool_for
    from seqeq.train import TrainConfig, batch_for, predict_logits, schedule_epochs, train_model

    tr, te = suite.load(name)
    # (the filters read the pooled series, as when the recorded figures were measured; the
    # defaults now convolve first: conv_first.py)
    spec = ModelSpec("gru", tr.n_channels, 24, tr.n_classes, pool=pool_for(tr.max_len), conv=16,
                     conv_first=False)
    model = build_model(spec, seed=seed)
    model.set_normalisation(*tr.channel_stats())
    bs = batch_for(tr.n_series, 64)
    cfg = TrainConfig(lr=1e-2, batch_size=bs, epochs=factor * schedule_epochs(tr.n_series, bs),
                      patience=0, seed=seed, **settings)
    t0 = time.perf_counter()
    train_model(model, tr, cfg)
    return float((predict_logits(model, te).argmax(1) == te.y).mean()), time.perf_counter() - t0


def main() -> None:
    args = sys.argv[1:]
    only = [a.split("=", 1)[1] for a in args if a.startswith("--variants=")]
    names = [a for a in args if not a.startswith("--")] or ["ArrowHead", "OSULeaf"]
    variants = only[0].split(";") if only else list(VARIANTS)
    print(f"`SEQEQ_DATA_DIR=../shared/data python benchmarks/mixup_small.py {' '.join(args)}`")
    print("\n| problem | variant | test % (mean ± std, 3 seeds) | seconds per model |")
    print("|---|---|---|---|")
    for name in names:
        for v in variants:
            settings, factor = VARIANTS[v]
            r = [run(name, settings, factor, s) for s in range(3)]
            accs = [a for a, _ in r]
            print(f"| {name} | {v} | {100 * np.mean(accs):.1f} ± {100 * np.std(accs):.1f} | "
                  f"{np.mean([t for _, t in r]):.0f} |", flush=True)


if __name__ == "__main__":
    main()
