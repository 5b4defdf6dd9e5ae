"""Which training augmentation helps a small RNN generalise to new people? HAR-2, fixed models.

For each augmentation, cell and seed: train on the search split (subject-grouped validation; the
seed picks the 4 validation subjects) and, after every epoch, evaluate the test subjects too --
for this analysis only, never to select anything. Prints the test score at the epoch the
validation score peaked and at the end of the cosine schedule (what seqeq's final retrain runs),
and the validation score at the end (what the search sees).

``rot<DEG>`` is seqeq's own rotation augmentation (``TrainConfig.rotate_deg``: the 3 sensor
triplets of the phone turned by one random rotation per series, up to DEG degrees). The others
are the usual alternatives, applied here by the script to the training batches only:
``scale<S>`` per-channel gain N(1, S), ``gscale<S>`` one gain per series, ``jit<S>`` Gaussian
noise of S channel standard deviations, ``shift<K>`` a circular time shift of up to K steps;
``a+b`` applies both.

    python benchmarks/augment_har2.py --augs none,rot10,rot30,rot45,rot90,rot180 --cells gru
    python benchmarks/augment_har2.py --augs none,rot30 --cells irnn,tarnn
    python benchmarks/augment_har2.py --augs rot30,rot45 --cells tarnn:30,gru:34 --epochs 40
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from cells_har2 import prepared_run, run_jobs  # a sibling script: python benchmarks/...

import seqeq.train as T
from seqeq.train import TrainConfig, predict_logits, score, train_model

CELLS = {"gru": ("gru", 32, {}), "irnn": ("irnn", 42, {"K": 5, "h_sign": -1}),
         "tarnn": ("tarnn", 26, {})}


def _batch_transform(kind: str, gen: torch.Generator):
    """The script's own (non-rotation) augmentations, as a function of a raw batch x (B, T, C)."""
    if "+" in kind:
        fs = [_batch_transform(k, gen) for k in kind.split("+")]

        def both(x):
            for f in fs:
                x = f(x)
            return x
        return both
    if kind.startswith(("none", "rot")):
        return lambda x: x
    if kind.startswith("gscale"):
        s = float(kind[6:])
        return lambda x: x * (1 + s * torch.randn(x.shape[0], 1, 1, generator=gen))
    if kind.startswith("scale"):
        s = float(kind[5:])
        return lambda x: x * (1 + s * torch.randn(x.shape[0], 1, x.shape[2], generator=gen))
    if kind.startswith("jit"):
        s = float(kind[3:])
        return lambda x: x + s * x.std(dim=(0, 1), keepdim=True) * torch.randn(x.shape,
                                                                                generator=gen)
    if kind.startswith("shift"):
        k = int(kind[5:])

        def shift(x):
            sh = torch.randint(-k, k + 1, (x.shape[0],), generator=gen)
            return torch.stack([torch.roll(x[b], int(sh[b]), 0) for b in range(x.shape[0])])
        return shift
    raise SystemExit(f"unknown augmentation {kind!r}")


def _rotation(kind: str) -> float:
    return sum(float(k[3:]) for k in kind.split("+") if k.startswith("rot"))


def run_one(job):
    kind, cell, seed, epochs, save, lr, wd = job
    torch.set_num_threads(1)
    name, D, hp = CELLS[cell.split(":")[0]]
    D = int(cell.split(":")[1]) if ":" in cell else D  # "tarnn:30": another hidden size
    _, model, train, val, test, _ = prepared_run("har2", name, D, hp, seed)
    extra = _batch_transform(kind, torch.Generator().manual_seed(1000 + seed))
    real = T._Tensors.batch

    def batch(self, idx):  # the training batches only (the training set is the largest)
        x, L, y = real(self, idx)
        return (extra(x) if self.n == train.n_series else x), L, y

    T._Tensors.batch = batch
    vals, tests, logits = [], [], [None]
    t0 = time.perf_counter()
    try:
        cfg = TrainConfig(lr=lr, batch_size=128, epochs=epochs, patience=0, weight_decay=wd,
                          seed=seed, rotate_deg=_rotation(kind))

        def on_epoch(e, r):
            vals.append(r["val_score"])
            logits[0] = predict_logits(model, test)
            tests.append(score(test.y, logits[0].argmax(1)))
        res = train_model(model, train, cfg, val=val, on_epoch=on_epoch)
    finally:
        T._Tensors.batch = real
    if save:  # the last epoch's test logits, to measure ensembles of the seeds afterwards
        np.save(f"{save}/{kind}-{cell.replace(':', '')}-s{seed}.npy", logits[0])
    b = res.best_epoch - 1
    row = (kind, cell, seed, tests[b], tests[-1], vals[-1])
    print(f"{kind:16s} {cell:6s} seed {seed}: val-best epoch {b + 1} test {tests[b]:.4f}; last "
          f"epoch test {tests[-1]:.4f}, val {vals[-1]:.4f}  ({time.perf_counter() - t0:.0f} s)",
          flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--augs", default="none,rot30")
    ap.add_argument("--cells", default="gru")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--save-logits", metavar="DIR", default="",
                    help="write each run's last-epoch test logits to DIR (for ensemble analysis)")
    args = ap.parse_args()
    augs, cells = args.augs.split(","), args.cells.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.save_logits:
        Path(args.save_logits).mkdir(parents=True, exist_ok=True)
    jobs = [(a, c, s, args.epochs, args.save_logits, args.lr, args.weight_decay)
            for a in augs for c in cells for s in seeds]
    rows = run_jobs(run_one, jobs, args.jobs)
    print(f"\nHAR-2, {args.epochs} epochs, cosine schedule, Adam lr {args.lr:g}, weight decay "
          f"{args.weight_decay:g}, batch 128, seeds "
          f"{args.seeds} (mean ± std)\n")
    print("| augmentation | cell | test at val-best epoch | test at last epoch | "
          "val at last epoch |")
    print("|---|---|---|---|---|")
    for c in cells:
        for a in augs:
            r = np.array([x[3:] for x in rows if x[0] == a and x[1] == c]) * 100
            m, s = r.mean(0), r.std(0)
            print(f"| {a} | {c} | " + " | ".join(f"{m[i]:.2f} ± {s[i]:.2f}" for i in range(3))
                  + " |")


if __name__ == "__main__":
    main()
