"""Train every registered cell with its paper defaults on HAR-2 and record test accuracy.

Protocol (../shared/CELLS.md): per-channel z-scoring from training data; a subject-grouped 20 %
validation split of the training subjects; the epoch is chosen on validation (the weights of the
best validation epoch are kept); the official test subjects are evaluated once. CPU, a fixed
modest number of epochs, one seed (this is a per-cell sanity check, not the search).

    python benchmarks/cells_har2.py --epochs 12 --markdown
    python benchmarks/cells_har2.py --configs irnn-sign --epochs 20 --seeds 0,1,2 --jobs 2 \
        --markdown
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from seqeq.api import split_validation
from seqeq.datasets import load_benchmark
from seqeq.models import ModelSpec, build_model, spec_size_bytes
from seqeq.train import TrainConfig, predict_logits, score, train_model

# (cell, D, hyperparameters, lr): the papers' defaults where CELLS.md gives them
PAPER_DEFAULTS = [
    ("irnn", 80, {"K": 5, "u_kind": "lowrank", "u_rank": 8}, 1e-2),   # iRNN HAR-2: K=5, D=80
    ("irnn", 80, {"K": 5, "u_kind": "lowrank", "u_rank": 8, "h_sign": -1}, 1e-2),  # Eq. 3's -
    ("irnn", 80, {"K": 1, "u_kind": "lowrank", "u_rank": 8}, 1e-2),   # SiRNN
    ("dirnn", 128, {"L": 3, "K": 3}, 1e-3),                            # DIRNN: D=128, L=3, K=3
    ("tinyrnn", 128, {"L": 3, "K": 3}, 1e-2),
    ("tarnn", 32, {"K": 3}, 1e-2),
    ("ernn", 80, {"K": 2}, 1e-2),                                       # ERNN HAR-2: K=2
    ("srnn", 128, {"hyper_size": 64}, 1e-3),
    ("fastrnn", 80, {}, 1e-2),
    ("fastgrnn", 80, {"u_kind": "lowrank", "u_rank": 8, "w_kind": "lowrank", "w_rank": 4}, 1e-2),
    ("gru", 64, {}, 1e-2),
    ("lstm", 64, {}, 1e-2),
    ("rnn", 64, {}, 1e-3),
]

# iRNN probes (RESULTS.md, issue 3): step-size initialisation, per-timestep eta, dense U, tanh
_LR = {"K": 1, "u_kind": "lowrank", "u_rank": 8}
IRNN_PROBES = [
    ("irnn", 80, {**_LR, "eta_init": 0.1}, 1e-2),
    ("irnn", 80, {**_LR, "eta_init": 1.0}, 1e-2),
    ("irnn", 80, {**_LR, "K": 3, "eta_init": 0.3}, 1e-2),
    ("irnn", 80, {**_LR, "K": 5, "eta_init": 0.2}, 1e-2),
    ("irnn", 80, {**_LR, "n_timesteps": 128}, 1e-2),
    ("irnn", 80, {**_LR, "K": 5, "n_timesteps": 128}, 1e-2),
    ("irnn", 80, {**_LR, "u_kind": "dense", "u_rank": None}, 1e-2),
    ("irnn", 80, {**_LR, "activation": "tanh", "eta_init": 1.0}, 1e-2),
]
# the two signs of Eq. 3 (issue 3): h_sign=-1 accumulates, +1 (Eq. 5) alternates
_K5 = {"K": 5, "u_kind": "lowrank", "u_rank": 8}
IRNN_SIGN = [
    ("irnn", 80, _K5, 1e-2),
    ("irnn", 80, {**_K5, "h_sign": -1}, 1e-2),
    ("irnn", 80, {**_K5, "K": 1, "h_sign": -1}, 1e-2),
    ("irnn", 80, {**_K5, "u_rank": 16, "h_sign": -1}, 1e-2),
]
CONFIGS = {"paper": PAPER_DEFAULTS, "irnn-probes": IRNN_PROBES, "irnn-sign": IRNN_SIGN}


def prepared_run(bench: str, cell: str, D: int, hp: dict, seed: int):
    """A benchmark's search split (the seed picks the validation subjects) and a model built from
    ``seed``, normalised with the training statistics: ``(spec, model, train, val, test, how)``."""
    train_all, test = load_benchmark(bench)
    train, val, how = split_validation(train_all, 0.2, seed)
    mean, std = train.channel_stats()
    spec = ModelSpec(cell, train.n_channels, D, train.n_classes, hp)
    model = build_model(spec, seed=seed)
    model.set_normalisation(mean, std)
    return spec, model, train, val, test, how


def run_jobs(fn, jobs: list, n_jobs: int) -> list:
    """``[fn(j) for j in jobs]``, in ``n_jobs`` spawned processes when ``n_jobs > 1``."""
    if n_jobs <= 1:
        return [fn(j) for j in jobs]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(n_jobs) as pool:
        return pool.map(fn, jobs, chunksize=1)


def run_one(job):
    """Train one (config, seed) on HAR-2 and test it once: one row of the table."""
    (cell, D, hp, lr), seed, epochs, threads = job
    torch.set_num_threads(threads)
    spec, model, train, val, test, how = prepared_run("har2", cell, D, hp, seed)
    t0 = time.perf_counter()
    res = train_model(model, train, TrainConfig(lr=lr, batch_size=128, epochs=epochs,
                                                patience=0, seed=seed), val=val)
    secs = time.perf_counter() - t0
    acc = score(test.y, predict_logits(model, test).argmax(1))
    row = (cell, D, hp, spec_size_bytes(spec) / 1024, res.best_val, res.best_epoch, acc, secs)
    print(f"{cell:9s} D={D:3d} {str(hp):60s} seed {seed} {row[3]:7.2f} KiB  val "
          f"{res.best_val:.4f} (epoch {res.best_epoch})  test {acc:.4f}  {secs:6.0f} s", flush=True)
    return row, how


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--cells", default=None, help="comma-separated subset")
    ap.add_argument("--configs", default="paper", choices=sorted(CONFIGS),
                    help="paper: every cell with its paper defaults; irnn-probes: iRNN variants")
    ap.add_argument("--seeds", default="0",
                    help="comma-separated seeds (each: validation subjects, init, shuffling); "
                         "the table gives test accuracy mean +- std over them")
    ap.add_argument("--jobs", type=int, default=1, help="processes in parallel")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = set(args.cells.split(",")) if args.cells else None
    configs = [c for c in CONFIGS[args.configs] if not wanted or c[0] in wanted]
    jobs = [(c, seed, args.epochs, args.threads) for c in configs for seed in seeds]
    out = run_jobs(run_one, jobs, args.jobs)
    if args.markdown:
        how = out[0][1] if out else ""
        print(f"\nHAR-2, {args.epochs} epochs, validation: {how}, seeds {args.seeds}, "
              f"{args.threads} thread(s) per run, torch {torch.__version__}\n")
        print("| cell | D | hyperparameters | size KiB | val acc | best epoch | test acc "
              "| train s |")
        print("|---|---|---|---|---|---|---|---|")
        for i in range(len(configs)):
            rows = [r for r, _ in out[i * len(seeds):(i + 1) * len(seeds)]]
            cell, D, hp, kib = rows[0][:4]
            val = np.array([r[4] for r in rows])
            acc = 100 * np.array([r[6] for r in rows])
            epochs = "/".join(str(r[5]) for r in rows)
            accs = f"{acc.mean():.2f} ± {acc.std():.2f} %" if len(rows) > 1 else f"{acc[0]:.2f} %"
            if len(rows) > 1:
                accs += " (" + ", ".join(f"{a:.1f}" for a in acc) + ")"
            print(f"| {cell} | {D} | {hp} | {kib:.2f} | {val.mean():.4f} | {epochs} | {accs} | "
                  f"{np.mean([r[7] for r in rows]):.0f} |")


if __name__ == "__main__":
    main()
