"""How long should the final retrain run? The epoch chosen on validation vs the end of the schedule.

For each benchmark, cell and seed: train on the search split (subject-grouped validation), and
after every epoch evaluate the test subjects too -- for this analysis only, never to select
anything. Prints, per run, the test score at the epoch the validation score peaked (what
``--final-epochs best`` repeats) and at the end of the cosine schedule (``--final-epochs all``).

    python benchmarks/final_epochs.py --seeds 0,1,2 --jobs 2 --markdown
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from cells_har2 import prepared_run, run_jobs  # a sibling script: python benchmarks/...

from seqeq.train import TrainConfig, predict_logits, score, train_model

CELLS = [("gru", 32, {}), ("irnn", 80, {"K": 3, "u_kind": "lowrank", "u_rank": 8, "h_sign": -1})]


def run_one(job):
    bench, (cell, D, hp), seed, epochs = job
    torch.set_num_threads(1)
    _, model, train, val, test, _ = prepared_run(bench, cell, D, hp, seed)
    tests = []
    res = train_model(
        model, train, TrainConfig(lr=1e-2, batch_size=128, epochs=epochs, patience=0, seed=seed),
        val=val, on_epoch=lambda e, r: tests.append(score(test.y, predict_logits(model, test)
                                                          .argmax(1))))
    row = (bench, cell, seed, res.best_epoch, tests[res.best_epoch - 1], tests[-1])
    print(bench, cell, json.dumps(hp), seed, f"val-best epoch {row[3]}: test {row[4]:.4f}; "
          f"last epoch: test {row[5]:.4f}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmarks", default="har2,har6,dsa19")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    jobs = [(b, c, int(s), args.epochs) for b in args.benchmarks.split(",") for c in CELLS
            for s in args.seeds.split(",")]
    rows = run_jobs(run_one, jobs, args.jobs)
    if args.markdown:
        print(f"\n{args.epochs} epochs, cosine schedule, Adam lr 1e-2, batch 128, seeds "
              f"{args.seeds}\n")
        print("| benchmark | cell | test at val-best epoch | test at last epoch | last ≥ best |")
        print("|---|---|---|---|---|")
        for b in args.benchmarks.split(","):
            for cell, _, _ in CELLS:
                r = [x for x in rows if x[0] == b and x[1] == cell]
                best = 100 * np.array([x[4] for x in r])
                last = 100 * np.array([x[5] for x in r])
                wins = f"{int((last >= best).sum())}/{len(r)}"
                print(f"| {b} | {cell} | {best.mean():.2f} ± {best.std():.2f} | "
                      f"{last.mean():.2f} ± {last.std():.2f} | {wins} |")
        wins = sum(x[5] >= x[4] for x in rows)
        print(f"\nlast epoch ≥ validation-chosen epoch in {wins} of {len(rows)} runs; mean gain "
              f"{100 * np.mean([x[5] - x[4] for x in rows]):+.2f} points")


if __name__ == "__main__":
    main()
