"""The final models' training, compared on the same chosen configuration (a paired check).

A suite run's search picks a configuration; its final models are then retrained here under other
final-stage settings, on the run's own train/validation split, with the run's seeds, tested once
each. Every variant retrains the same trial, so the search's own noise (which trial wins in a
time-budgeted search) drops out of the comparison. Run after ``suite.py`` has written its run
folders (``--runs``):

    SEQEQ_DATA_DIR=../shared/data python benchmarks/final_paired.py --runs /tmp/seqeq-suite-runs \
        --budget 20 --variants "none" "timeout=0"

A variant is a list of ``KEY=VALUE`` settings over the run's own (``none``: the run's own);
``timeout=0`` lifts the time limit the final models' schedule is fitted into, so they run the
trial's planned schedule whatever it costs. (Session 12 measured with it the settings
``final_mixup`` / ``final_augment`` of commit 1e870ab, since reverted: benchmarks/RESULTS.md.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _settings(text: str) -> dict:
    out = {}
    for kv in text.split():
        if kv == "none":
            continue
        k, v = kv.split("=", 1)
        out[k] = json.loads(v)
    return out


def retrain(run_dir: str, name: str, variant: str) -> dict:
    os.environ.setdefault("SEQEQ_CPU_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    import suite

    from seqeq.run.final import final_models
    from seqeq.run.pick import _chosen_trial, _same_split, pick_trial

    run = Path(run_dir)
    number = _chosen_trial(run)
    study, trial, cfg = pick_trial(run, trial=number)
    cfg = cfg.with_settings(**_settings(variant))
    train_all, test = suite.load(name)
    train, val = _same_split(run, train_all)
    t0 = time.perf_counter()
    _, _, _, _, finals, chosen, _ = final_models(study, train, val, test, cfg, "cpu", run,
                                                      quiet=True, trial=trial)
    scores = [f["test_score"] for f in finals]
    epochs = round(float(np.mean([len(f["history"]) for f in finals])))  # as trained
    return {"problem": name, "variant": variant, "trial": number, "epochs": epochs,
            "mean": float(np.mean(scores)), "std": float(np.std(scores)), "scores": scores,
            "exported": float(chosen["test_score"]), "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="/tmp/seqeq-suite-runs")
    ap.add_argument("--budget", type=float, default=20.0)
    ap.add_argument("--problems", nargs="+", default=None)
    ap.add_argument("--variants", nargs="+", default=["none"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    import suite

    problems = args.problems or list(suite.SMALL)
    jobs = [(str(Path(args.runs) / f"{p}-{args.budget:g}"), p, v)
            for p in problems for v in args.variants
            if (Path(args.runs) / f"{p}-{args.budget:g}" / "report.json").is_file()]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(retrain, *zip(*jobs, strict=True)))
    print(f"`SEQEQ_DATA_DIR=../shared/data python benchmarks/final_paired.py "
          f"{' '.join(sys.argv[1:])}`\n")
    print("| problem | trial | " + " | ".join(args.variants) + " |")
    print("|---|---|" + "---|" * len(args.variants))
    for p in problems:
        rs = {r["variant"]: r for r in results if r["problem"] == p}
        if not rs:
            continue
        cells = [f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f} / {100 * r['exported']:.1f} "
                 f"({r['epochs']} ep, {r['seconds']:.0f} s)" if r else "–"
                 for r in (rs.get(v) for v in args.variants)]
        print(f"| {p} | {next(iter(rs.values()))['trial']} | " + " | ".join(cells) + " |")
    print("\n(seeds' test mean ± std % / the exported model's test %, final epochs, seconds for "
          "all final models on one core)")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
