"""Where a saved HAR-2 model errs: its test errors per original HAR-6 activity.

HAR-2 merges the six activities into two classes (SITTING, LAYING, WALKING_UPSTAIRS vs STANDING,
WALKING, WALKING_DOWNSTAIRS); this splits a model's test errors by the activity the window had.

    python benchmarks/har2_errors.py runs/bench/har2-20kb-s0/model
"""

from __future__ import annotations

import argparse

from seqeq.datasets import load_benchmark
from seqeq.models import load_model
from seqeq.train import predict_logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model directories (RUN/model)")
    args = ap.parse_args()
    _, te2 = load_benchmark("har2")
    _, te6 = load_benchmark("har6")
    for path in args.models:
        model, spec, _ = load_model(path)
        wrong = predict_logits(model, te2).argmax(1) != te2.y
        print(f"{path}: {spec.cell} D={spec.hidden_size}, {int(wrong.sum())} errors of "
              f"{len(wrong)}")
        for k, name in enumerate(te6.class_names):
            m = te6.y == k
            print(f"  {name:20s} {int(wrong[m].sum()):4d} of {int(m.sum())}")


if __name__ == "__main__":
    main()
