"""The full seqeq search on a benchmark (HAR-2 by default) at one or more budgets.

Each budget runs ``seqeq bench`` end to end (search on a subject-grouped validation split, retrain
on train+validation with 3 seeds, test once) and prints one row for benchmarks/RESULTS.md: best
cell, size, test accuracy mean ± std over the final seeds, wall time, trials run/pruned, device.

    python benchmarks/search_har2.py --budget-kb 20 --trials 8
    python benchmarks/search_har2.py --budget-kb 2 --quantize int8 --trials 8
    python benchmarks/search_har2.py --budget-kb 20 --trials 16 --workers 2
    python benchmarks/search_har2.py --budget-kb 16.9 --quantize int8 --ensemble 3 --trials 16

With ``--ensemble N`` the exported model averages N final models; its own test score is printed
beside the single models' mean ± std, and its int8 score beside that.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import seqeq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", default="har2")
    ap.add_argument("--budget-kb", type=float, nargs="+", default=[20.0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument("--quantize", default=None, choices=[None, "int8"])
    ap.add_argument("--cells", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="local worker processes")
    ap.add_argument("--epochs", type=int, default=40, help="maximum epochs per trial")
    ap.add_argument("--ensemble", type=int, default=1, help="final models averaged")
    ap.add_argument("--rerank", type=int, default=0,
                    help="re-score this many best trials on cross-validation folds")
    ap.add_argument("--no-opening", action="store_true",
                    help="no opening trials: the sampler alone from the first trial")
    ap.add_argument("--resume", action="store_true",
                    help="continue (or, once finished, re-finish) the run in --out: with "
                         "--rerank, re-ranks the trials a finished search already has")
    ap.add_argument("--out", default="runs/bench")
    args = ap.parse_args()
    rows = []
    for b in args.budget_kb:
        tag = (f"{args.benchmark}-{b:g}kb{'-int8' if args.quantize else ''}-e{args.epochs}"
               f"{f'-ens{args.ensemble}' if args.ensemble > 1 else ''}"
               f"{'-noopen' if args.no_opening else ''}-s{args.seed}")
        res = seqeq.bench(args.benchmark, budget_kb=b, trials=args.trials, timeout=args.timeout,
                          seed=args.seed, out=Path(args.out) / tag, quantize=args.quantize,
                          cells=args.cells, quiet=False, overwrite=not args.resume,
                          resume=args.resume, rerank=args.rerank, opening=not args.no_opening,
                          workers=args.workers, epochs=args.epochs, ensemble=args.ensemble)
        rep = json.loads(Path(res.report_json).read_text())
        spec = res.best_spec
        fin = rep["final"]
        ens = (f"; ensemble of {res.ensemble}: {100 * res.test_score:.2f}, int8 weights "
               f"{100 * fin['chosen_test_score_int8']:.2f}" if res.ensemble > 1 else "")
        row = (f"| {args.benchmark} | {b:g}{' (int8)' if args.quantize else ''} | "
               f"{spec['cell']} D={spec['hidden_size']} {spec['cell_kwargs']}"
               f"{f' x {res.ensemble}' if res.ensemble > 1 else ''} | "
               f"{res.size_kib:.2f} | {100 * res.test_mean:.2f} ± {100 * res.test_std:.2f}{ens} | "
               f"{res.seconds / 60:.1f} min | {res.n_trials} / {res.n_pruned} | "
               f"{rep['device']} ({platform.processor() or platform.machine()}) |")
        rr = rep.get("rerank")
        if rr:
            print("re-ranked: " + "; ".join(
                f"trial {r['trial']} {r['cell']} {100 * r['score']:.2f} "
                f"(val {100 * r['val_score']:.2f})" for r in rr["rows"])
                + f" -> trial {rr['chosen_trial']}", flush=True)
        rows.append(row)
        print(row, flush=True)
    print("\n| benchmark | budget KiB | best model | size KiB | test acc % (mean ± std, 3 seeds) "
          "| wall time | trials run / pruned | device |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
