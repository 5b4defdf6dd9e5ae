"""A strong non-RNN peer on the same splits: aeon's MiniRocket.

Runs in an environment with the optional ``bench`` extra (``pip install seqeq[bench]``, i.e. aeon).
Uses seqeq's own benchmark loaders, so the train/test split is exactly the one ``seqeq bench``
uses; MiniRocket is fitted on the whole training split (it has no validation-driven choices) and
tested once. Size is the pickled fitted estimator (kernels, biases and the ridge classifier), the
bytes one would ship.

    python benchmarks/peers.py har2 har6 --markdown
"""

from __future__ import annotations

import argparse
import pickle
import time

import numpy as np

from seqeq.datasets import load_benchmark


def run(name: str, seed: int, n_jobs: int) -> dict:
    from aeon.classification.convolution_based import MiniRocketClassifier

    train, test = load_benchmark(name)
    if not (train.equal_length and test.equal_length):
        raise SystemExit(f"{name}: MiniRocket here needs equal-length series")
    Xtr = np.ascontiguousarray(np.asarray(train.X).transpose(0, 2, 1), dtype=np.float32)
    Xte = np.ascontiguousarray(np.asarray(test.X).transpose(0, 2, 1), dtype=np.float32)
    clf = MiniRocketClassifier(random_state=seed, n_jobs=n_jobs)
    t0 = time.perf_counter()
    clf.fit(Xtr, train.y)
    fit_s = time.perf_counter() - t0
    acc = float(np.mean(clf.predict(Xte) == test.y))
    return {"name": name, "acc": acc, "fit_s": fit_s,
            "kib": len(pickle.dumps(clf)) / 1024, "n_train": train.n_series,
            "n_test": test.n_series}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="+", help="seqeq benchmark names, e.g. har2 har6 dsa19")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rows = []
    for name in args.names:
        r = run(name, args.seed, args.n_jobs)
        rows.append(r)
        print(f"{name:10s} MiniRocket test acc {100 * r['acc']:.2f} %  fit {r['fit_s']:.0f} s  "
              f"{r['kib']:.0f} KiB (pickled)  train/test {r['n_train']}/{r['n_test']}", flush=True)
    if args.markdown:
        print("\n| benchmark | MiniRocket test acc | fit s | size KiB (pickled) |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['name']} | {100 * r['acc']:.2f} % | {r['fit_s']:.0f} | {r['kib']:.0f} |")


if __name__ == "__main__":
    main()
