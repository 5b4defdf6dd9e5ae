"""How much does averaging several small models gain on HAR-2? Reads test logits saved by
``augment_har2.py --save-logits DIR`` (one file per seed) and prints the test accuracy of every
single model and of every ensemble of 2..N of them, averaging logits (what ``--ensemble`` exports:
one linear head over the members' features) and, for comparison, averaging probabilities.

    python benchmarks/augment_har2.py --augs rot45 --cells gru:34 --epochs 40 --save-logits L
    python benchmarks/ensemble_har2.py L [L2 ...]

For analysis only: the members here were trained on different search splits (the seed picks the
validation subjects); ``seqeq fit --ensemble N`` trains all members on training + validation data.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from seqeq.datasets import load_benchmark


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", help="directories of saved test logits (*.npy)")
    ap.add_argument("--benchmark", default="har2")
    args = ap.parse_args()
    y = load_benchmark(args.benchmark)[1].y
    print("| logits | single models | ensembles of 2 (mean) | all N, logits "
          "| all N, probabilities |")
    print("|---|---|---|---|---|")
    for d in args.dirs:
        files = sorted(Path(d).glob("*.npy"))
        L = [np.load(f) for f in files]
        if len(L) < 2:
            raise SystemExit(f"{d}: need at least 2 saved models, found {len(L)}")

        def acc(z):
            return 100 * float((z.argmax(1) == y).mean())
        single = [acc(z) for z in L]
        pairs = [acc(L[i] + L[j]) for i, j in itertools.combinations(range(len(L)), 2)]
        print(f"| {d} | {' / '.join(f'{a:.2f}' for a in single)} (mean {np.mean(single):.2f}) "
              f"| {np.mean(pairs):.2f} | {acc(sum(L)):.2f} (N={len(L)}) "
              f"| {acc(sum(_softmax(z) for z in L)):.2f} |")


if __name__ == "__main__":
    main()
