"""Amplitude augmentation on small shape problems, one configuration, several seeds.

The controlled check behind "Amplitude augmentation" in RESULTS.md: GRU D=24 reading the series
through the 16-filter convolution front end (and the pooling the defaults give long series),
the default schedule (``train.schedule_epochs``, ``train.batch_for``), no validation, trained on
the official training split and tested once, with and without ``TrainConfig(augment=0.1)``
(``seqeq.augment.warp_magnitudes``).

    SEQEQ_DATA_DIR=../shared/data python benchmarks/augment_small.py ArrowHead OSULeaf ACSF1
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def run(name: str, augment: float, seed: int) -> float:
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
    cfg = TrainConfig(lr=1e-2, batch_size=bs, epochs=schedule_epochs(tr.n_series, bs),
                      patience=0, seed=seed, augment=augment)
    train_model(model, tr, cfg)
    return float((predict_logits(model, te).argmax(1) == te.y).mean())


def main() -> None:
    names = sys.argv[1:] or ["ArrowHead", "OSULeaf", "ACSF1"]
    print(f"`SEQEQ_DATA_DIR=../shared/data python benchmarks/augment_small.py {' '.join(names)}`")
    print("\n| problem | without | augment=0.1 |\n|---|---|---|")
    for name in names:
        cells = []
        for aug in (0.0, 0.1):
            accs = [run(name, aug, s) for s in range(3)]
            cells.append(f"{100 * np.mean(accs):.1f} ± {100 * np.std(accs):.1f}")
        print(f"| {name} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
