"""Prototype: distillation from MiniRocket, and mixup, on small shape problems (issue 20).

A training loop of its own (Adam 1e-2, cosine to 5 %, clipping at 1, the default schedule from
``train.schedule_epochs`` / ``train.batch_for``; a suffix ``3`` on a mode triples the epochs) for
GRU D=24 with the 16-filter convolution front end, trained on the official training split and
tested once. Modes, each step's loss:

* ``base``: cross-entropy on the batch;
* ``mixup``: plus the cross-entropy of a mixed copy of the batch (``lam ~ Beta(0.5, 0.5)``, one
  per batch, then ``warp_magnitudes`` at 0.1), its two labels weighed by ``lam``;
* ``distill``: plus the cross-entropy against a teacher's probabilities on such a mixed copy per
  series (``lam`` per series). The teacher: aeon's MiniRocket features of the training split,
  standardised, and a logistic regression (C = 0.1) on them; it never sees the test split.

    SEQEQ_DATA_DIR=../shared/data python benchmarks/distill_small.py ArrowHead base,mixup3 3

The figures in RESULTS.md ("Mixup and distillation") came from this computation (the script
that ran them, reformatted).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))


def teacher(tr):
    """MiniRocket features + a logistic regression, fitted on the training split only."""
    from aeon.transformations.collection.convolution_based import MiniRocket
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X = np.ascontiguousarray(tr.X.transpose(0, 2, 1)).astype(np.float32)
    mr = MiniRocket(random_state=0)
    F = mr.fit_transform(X)
    sc = StandardScaler().fit(F)
    lr = LogisticRegression(C=0.1, max_iter=2000).fit(sc.transform(F), tr.y)

    def probs(x):  # x (B, T, C) numpy
        f = mr.transform(np.ascontiguousarray(x.transpose(0, 2, 1)).astype(np.float32))
        return lr.predict_proba(sc.transform(f))

    return probs


def synth(X, L, gen, model):
    """The teacher's inputs: each series mixed with another of the batch (lam per series)."""
    from seqeq.augment import warp_magnitudes

    B = X.shape[0]
    j = torch.randperm(B, generator=gen)
    lam = torch.distributions.Beta(0.5, 0.5).sample((B, 1, 1))
    x = lam * X + (1 - lam) * X[j]
    return warp_magnitudes(x, L, model.mean, model.std, 0.1, gen)


def run(name, mode, seed, tr, te, probs):
    from seqeq.augment import warp_magnitudes
    from seqeq.models import ModelSpec, build_model
    from seqeq.search import pool_for
    from seqeq.train import batch_for, predict_logits, schedule_epochs

    # (the filters read the pooled series, as when the recorded figures were measured; the
    # defaults now convolve first: conv_first.py)
    spec = ModelSpec("gru", tr.n_channels, 24, tr.n_classes, pool=pool_for(tr.max_len), conv=16,
                     conv_first=False)
    model = build_model(spec, seed=seed)
    model.set_normalisation(*tr.channel_stats())
    bs = batch_for(tr.n_series, 64)
    epochs = schedule_epochs(tr.n_series, bs) * (3 if mode.endswith("3") else 1)
    X = torch.as_tensor(tr.X, dtype=torch.float32)
    L, Y = torch.as_tensor(tr.lengths), torch.as_tensor(tr.y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    total = epochs * math.ceil(tr.n_series / bs)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    t0 = time.time()
    ce = nn.functional.cross_entropy
    for _ in range(epochs):
        perm = torch.randperm(tr.n_series, generator=gen)
        for i in range(0, tr.n_series, bs):
            idx = perm[i:i + bs]
            x, l, y = X[idx], L[idx], Y[idx]
            model.train()
            loss = ce(model(x, l), y)
            if mode.startswith("mixup"):
                j = torch.randperm(len(y), generator=gen)
                lam = float(torch.distributions.Beta(0.5, 0.5).sample())
                xs = warp_magnitudes(lam * x + (1 - lam) * x[j], l, model.mean, model.std, 0.1,
                                     gen)
                lo = model(xs, l)
                loss = loss + lam * ce(lo, y) + (1 - lam) * ce(lo, y[j])
            if mode.startswith("distill"):
                xs = synth(x, l, gen, model)
                p = torch.as_tensor(probs(xs.numpy()), dtype=torch.float32)
                loss = loss + (-(p * torch.log_softmax(model(xs, l), 1)).sum(1).mean())
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
    model.eval()
    acc = float((predict_logits(model, te).argmax(1) == te.y).mean())
    return acc, time.time() - t0


def main() -> None:
    import suite

    torch.set_num_threads(1)
    name, modes, seeds = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
    tr, te = suite.load(name)
    t = time.time()
    probs = teacher(tr)
    acc = float((probs(te.X).argmax(1) == te.y).mean())
    print(name, "teacher test acc", acc, "fit s", round(time.time() - t, 1), flush=True)
    for mode in modes:
        r = [run(name, mode, s, tr, te, probs) for s in range(seeds)]
        a = [x[0] for x in r]
        print(name, mode, f"{100 * np.mean(a):.1f} ± {100 * np.std(a):.1f}",
              [round(100 * x, 1) for x in a], f"{np.mean([x[1] for x in r]):.0f}s", flush=True)


if __name__ == "__main__":
    main()
