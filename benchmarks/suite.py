"""The development suite: seqeq's default run against aeon's MiniRocket, problem by problem, in
the same run on the same splits.

Problems: the staged UCR/UEA sets (ArrowHead, BasicMotions, GunPoint, ItalyPowerDemand,
JapaneseVowels), the classification problems that ship inside aeon and load offline (ACSF1,
OSULeaf, PickupGestureWiimoteZ), HAR-6 and DSA-19 (subject split), each on its official split.
seqeq runs with its **default settings** except ``--budget-kb`` (one column per budget); nothing
is chosen on the test split, which each final model sees once. MiniRocket (aeon, default
settings) is fitted on the whole training split and tested once; it takes equal-length series
only, so unequal-length problems are zero-padded at the end for it (seqeq reads them as they are).
Its size is the pickled fitted estimator.

Each (problem, budget) runs in its own process, ``--jobs`` at a time (each seqeq run trains on one
torch thread, so ``--jobs 2`` on 2 cores gives each run one core: the wall times are one-core
times). Results are cached per problem in ``--out`` (JSON), so a rerun only runs what is missing
(``--redo`` runs it again); the table is printed from the cache.

    SEQEQ_DATA_DIR=../shared/data python benchmarks/suite.py --budgets 20 4 --jobs 2
    SEQEQ_DATA_DIR=../shared/data python benchmarks/suite.py --problems GunPoint har6 --budgets 20
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

SMALL = ("ArrowHead", "BasicMotions", "GunPoint", "ItalyPowerDemand", "JapaneseVowels",
         "ACSF1", "OSULeaf", "PickupGestureWiimoteZ")
LARGE = ("har6", "dsa19")
PROBLEMS = SMALL + LARGE
AEON = ("ACSF1", "OSULeaf", "PickupGestureWiimoteZ")


def load(name: str):
    """(train, test) SeqData of one suite problem, on its official split."""
    from seqeq.datasets import SeqData, load_benchmark

    if name in LARGE:
        return load_benchmark(name)
    if name not in AEON:
        return load_benchmark(f"ucr:{name}")
    from aeon.datasets import load_classification

    out, classes = [], None
    for split in ("train", "test"):
        X, y = load_classification(name, split=split)
        series = [np.asarray(x, dtype=np.float32).T for x in X]  # aeon: (C, T) -> (T, C)
        lengths = np.array([len(s) for s in series])
        T, C = int(lengths.max()), series[0].shape[1]
        arr = np.zeros((len(series), T, C), dtype=np.float32)
        for i, s in enumerate(series):
            arr[i, : len(s)] = s
        y = np.asarray(y).astype(str)
        if classes is None:
            classes = sorted(set(y), key=lambda c: (len(c), c))
        idx = {c: k for k, c in enumerate(classes)}
        out.append(SeqData(X=arr, lengths=lengths, y=np.array([idx[c] for c in y]),
                           class_names=classes,
                           channel_names=["value"] if C == 1 else [f"dim{k}" for k in range(C)],
                           ids=np.arange(len(y)), name=f"{name}-{split}",
                           meta={"source": f"aeon.datasets.load_classification({name!r})"}))
    return out[0], out[1]


def _padded(data, T: int) -> np.ndarray:
    """(n, C, T) for aeon: zeros after each series' end, to ``T`` steps (MiniRocket needs one
    length for training and test series alike)."""
    X = np.zeros((data.n_series, T, data.n_channels), dtype=np.float32)
    for i, L in enumerate(data.lengths):
        X[i, : int(L)] = np.asarray(data.X[i, : int(L)], dtype=np.float32)
    return np.ascontiguousarray(X.transpose(0, 2, 1))


def run_minirocket(name: str, seed: int = 0) -> dict:
    from aeon.classification.convolution_based import MiniRocketClassifier

    train, test = load(name)
    T = max(train.max_len, test.max_len)
    # numba compiles MiniRocket's kernels on first use: a one-time cost, not the fit's
    MiniRocketClassifier(random_state=seed, n_jobs=1).fit(
        np.random.default_rng(0).normal(size=(8, train.n_channels, 64)).astype(np.float32),
        np.arange(8) % 2)
    clf = MiniRocketClassifier(random_state=seed, n_jobs=1)
    t0 = time.perf_counter()
    clf.fit(_padded(train, T), train.y)
    fit_s = time.perf_counter() - t0
    acc = float(np.mean(clf.predict(_padded(test, T)) == test.y))
    return {"acc": acc, "fit_s": fit_s, "kib": len(pickle.dumps(clf)) / 1024}


def run_seqeq(name: str, budget: float, out: Path, settings: dict) -> dict:
    from seqeq.config import RunConfig
    from seqeq.run import run_on

    train, test = load(name)
    cfg = RunConfig.of(budget_kb=budget, **settings)
    t0 = time.perf_counter()
    res = run_on(train, test, cfg, out, data_info={"kind": "suite", "name": name}, html=False)
    wall = time.perf_counter() - t0
    return {"test_mean": res.test_mean, "test_std": res.test_std,
            "test_scores": res.test_scores, "exported": res.test_score,
            "kib": res.size_kib, "wall_s": wall, "ensemble": res.ensemble,
            "val_score": res.val_score, "model": _describe(res.best_spec),
            "trials": res.n_trials, "pruned": res.n_pruned, "settings": cfg.flat()}


def _describe(spec: dict) -> str:
    from seqeq.models import front_end_names

    kw = ", ".join(f"{k}={v}" for k, v in sorted(spec.get("cell_kwargs", {}).items())
                   if v is not None)
    m = spec.get("members", 1)
    front = ", ".join(front_end_names(spec))
    return (f"{spec['cell']} D={spec['hidden_size']}" + (f" ({kw})" if kw else "")
            + (f" [{front}]" if front else "") + (f" x{m}" if m > 1 else ""))


def _job(kind: str, name: str, budget: float | None, cache: str, runs: str,
         settings: dict) -> tuple[str, dict]:
    os.environ.setdefault("SEQEQ_CPU_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    key = f"{name}/minirocket" if kind == "minirocket" else f"{name}/seqeq-{budget:g}"
    try:
        if kind == "minirocket":
            r = run_minirocket(name)
        else:
            out = Path(runs) / f"{name}-{budget:g}"
            import shutil

            shutil.rmtree(out, ignore_errors=True)
            r = run_seqeq(name, budget, out, settings)
    except Exception as e:  # recorded, so the table says which run failed and why
        r = {"error": f"{type(e).__name__}: {e}"}
    r["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return key, r


def _load_cache(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def table(cache: dict, problems, budgets) -> str:
    rows = ["| problem | train / test, T, C, classes | MiniRocket acc % (KiB, fit s) | "
            + " | ".join(f"seqeq {b:g} KiB: seeds mean ± std % / exported % (model, KiB, wall s)"
                         f" | ratio {b:g}" for b in budgets) + " |",
            "|---|---|---|" + "---|---|" * len(budgets)]
    ratios = {b: [] for b in budgets}
    for p in problems:
        mr = cache.get(f"{p}/minirocket", {})
        shape = cache.get(f"{p}/shape", "")
        cells = [p, shape, (f"{100 * mr['acc']:.1f} ({mr['kib']:.0f}, {mr['fit_s']:.1f})"
                            if "acc" in mr else mr.get("error", "–"))]
        for b in budgets:
            r = cache.get(f"{p}/seqeq-{b:g}", {})
            if r.get("test_mean") is None:
                cells += [r.get("error", "–")[:80], "–"]
                continue
            cells.append(f"{100 * r['test_mean']:.1f} ± {100 * r['test_std']:.1f} / "
                         f"{100 * r['exported']:.1f} ({r['model']}, {r['kib']:.1f}, "
                         f"{r['wall_s']:.0f})")
            if "acc" in mr and mr["acc"] > 0:
                ratio = r["exported"] / mr["acc"]
                ratios[b].append(ratio)
                cells.append(f"{ratio:.3f} (time {r['wall_s'] / max(mr['fit_s'], 1e-9):.0f}x)")
            else:
                cells.append("–")
        rows.append("| " + " | ".join(cells) + " |")
    foot = []
    for b in budgets:
        if ratios[b]:
            v = np.array(ratios[b])
            foot.append(f"{b:g} KiB: median accuracy ratio (exported / MiniRocket) "
                        f"**{np.median(v):.3f}**, worst {v.min():.3f}, over {len(v)} problems")
    return "\n".join(rows) + "\n\n" + "\n\n".join(foot)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=list(SMALL),
                    help=f"suite problems (default: the small ones; all: {' '.join(PROBLEMS)})")
    ap.add_argument("--budgets", nargs="+", type=float, default=[20.0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/suite-results.json")
    ap.add_argument("--runs", default="/tmp/seqeq-suite-runs")
    ap.add_argument("--redo", action="store_true", help="run again what the cache holds")
    ap.add_argument("--no-minirocket", action="store_true")
    ap.add_argument("--table", action="store_true",
                    help="print the table from the cache and run nothing")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="a non-default seqeq setting (for measuring a lever; the suite's "
                         "table is the defaults')")
    args = ap.parse_args()
    problems = PROBLEMS if args.problems == ["all"] else args.problems
    settings = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        settings[k] = json.loads(v) if v[:1] in "0123456789-[{tfn" else v
    cache_path = Path(args.out)
    cache = _load_cache(cache_path)
    for p in problems if not args.table else ():
        if f"{p}/shape" not in cache:
            tr, te = load(p)
            cache[f"{p}/shape"] = (f"{tr.n_series} / {te.n_series}, {tr.max_len}, "
                                   f"{tr.n_channels}, {tr.n_classes}")
    jobs = []
    for p in problems if not args.table else ():
        if not args.no_minirocket and (args.redo or "acc" not in cache.get(f"{p}/minirocket", {})):
            jobs.append(("minirocket", p, None))
        for b in args.budgets:
            if args.redo or cache.get(f"{p}/seqeq-{b:g}", {}).get("test_mean") is None:
                jobs.append(("seqeq", p, b))
    # the slowest first, so the pool does not end on one long job
    jobs.sort(key=lambda j: (j[1] in LARGE, j[0] == "seqeq"), reverse=True)
    if jobs:
        print(f"{len(jobs)} job(s) on {args.jobs} process(es)", flush=True)
    with ProcessPoolExecutor(max_workers=max(1, min(args.jobs, len(jobs)))) as pool:
        futs = [pool.submit(_job, kind, p, b, str(cache_path), args.runs, settings)
                for kind, p, b in jobs]
        for f in as_completed(futs):
            key, r = f.result()
            cache[key] = r
            cache_path.write_text(json.dumps(cache, indent=1, sort_keys=True))
            brief = (f"acc {r['acc']:.4f} fit {r['fit_s']:.1f}s" if "acc" in r else
                     f"test {r['test_mean']:.4f}±{r['test_std']:.4f} exported {r['exported']:.4f}"
                     f" {r['model']} {r['kib']:.1f}KiB {r['wall_s']:.0f}s"
                     if r.get("test_mean") is not None else r.get("error"))
            print(f"{key}: {brief}", flush=True)
    cache_path.write_text(json.dumps(cache, indent=1, sort_keys=True))
    print()
    print(f"`SEQEQ_DATA_DIR=../shared/data python benchmarks/suite.py {' '.join(sys.argv[1:])}`")
    print()
    print(table(cache, problems, args.budgets))


if __name__ == "__main__":
    main()
