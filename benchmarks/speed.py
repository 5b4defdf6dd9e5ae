"""Training-step and batch-1 inference speed of every cell against torch's fused GRU (issue 9).

At the HAR-2 shape (batch 128, T = 128, d = 9, 2 classes, hidden D = 80 by default) one training
step is forward, cross-entropy (+ the cell's regulariser), backward and Adam, exactly as
``seqeq.train.train_model`` does it. For every row the fused ``nn.GRU`` of the same D is timed in
the same run, interleaved with the cell (repeat r: GRU, seqeq's path, reference loop), and each
time is the minimum over repeats of the mean over ``--steps`` steps, so a shared, noisy machine
still gives a usable *ratio*:

* ``train x GRU`` = GRU step time / cell step time (>= 1: the cell trains faster than the GRU);
* ``ref ms`` is the same cell through the plain ``step`` loop (``use_fast_loops(False)``), the
  ground truth the fast loops are tested against;
* ``infer x GRU`` = GRU / cell latency of one series (batch 1, T = 128) in eval mode, no grad.

    python benchmarks/speed.py                       # table, CPU, 1 thread
    python benchmarks/speed.py --markdown            # rows for benchmarks/RESULTS.md
    python benchmarks/speed.py --device cuda --gpu-kernels --repeats 10
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqeq.cells._fast import use_fast_loops  # noqa: E402
from seqeq.models import ModelSpec, build_model  # noqa: E402

#: (row label, cell, hyperparameters): references first, then every cell at the settings of issue 9
CASES = [
    ("gru", "gru", {}),
    ("lstm", "lstm", {}),
    ("rnn", "rnn", {}),
    ("irnn K=1", "irnn", {"K": 1}),
    ("irnn K=3", "irnn", {"K": 3}),
    ("irnn K=5", "irnn", {"K": 5}),
    ("dirnn L=3 K=1", "dirnn", {"L": 3, "K": 1}),
    ("dirnn L=3 K=3", "dirnn", {"L": 3, "K": 3}),
    ("tinyrnn L=3 K=1", "tinyrnn", {"L": 3, "K": 1}),
    ("tinyrnn L=3 K=3", "tinyrnn", {"L": 3, "K": 3}),
    ("tarnn K=1", "tarnn", {"K": 1}),
    ("tarnn K=3", "tarnn", {"K": 3}),
    ("ernn K=1", "ernn", {"K": 1}),
    ("ernn K=2", "ernn", {"K": 2}),
    ("srnn", "srnn", {}),
    ("fastrnn", "fastrnn", {}),
    ("fastgrnn", "fastgrnn", {}),
]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Bench:
    """One model at the benchmark shape: ``train()`` runs one training step, ``infer()`` one
    batch-1 prediction."""

    def __init__(self, cell: str, hp: dict, args, seed: int = 0):
        torch.manual_seed(seed)
        spec = ModelSpec(cell, args.input, args.hidden, 2, dict(hp))
        self.model = build_model(spec).to(args.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(args.batch, args.length, args.input, generator=g).to(args.device)
        self.y = torch.randint(0, 2, (args.batch,), generator=g).to(args.device)
        self.lengths = torch.full((args.batch,), args.length, device=args.device)
        self.x1 = self.x[:1].clone()
        self.loss = torch.nn.CrossEntropyLoss()

    def train(self) -> None:
        self.model.train()
        loss = self.loss(self.model(self.x, self.lengths), self.y) + self.model.regularization()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def infer(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self.model(self.x1)


def timed(fn, n: int, device: str, fast: bool = True) -> float:
    """Mean seconds of ``fn`` over ``n`` calls (after one untimed call)."""
    with use_fast_loops(fast):
        fn()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        _sync(device)
    return (time.perf_counter() - t0) / n


def path_of(model: Bench, args) -> str:
    cell = model.model.cell
    if args.gpu_kernels:
        from seqeq.cells import _triton

        if _triton.supports(cell, model.x):
            return "triton"
    if cell.fast_loop() is not None:
        return "fast loop"
    return "fused torch" if cell.name in ("gru", "lstm", "rnn") else "step loop"


def measure(label: str, cell: str, hp: dict, args) -> dict:
    gru = Bench("gru", {}, args)
    model = Bench(cell, hp, args)
    path = path_of(model, args)
    fused = path in ("fast loop", "triton")
    best = {"gru": float("inf"), "cell": float("inf"), "ref": float("inf"),
            "gru1": float("inf"), "cell1": float("inf")}
    for _ in range(args.repeats):
        best["gru"] = min(best["gru"], timed(gru.train, args.steps, args.device))
        best["cell"] = min(best["cell"], timed(model.train, args.steps, args.device))
        if fused and not args.no_reference:
            best["ref"] = min(best["ref"], timed(model.train, args.steps, args.device, False))
        best["gru1"] = min(best["gru1"], timed(gru.infer, args.infer_calls, args.device))
        best["cell1"] = min(best["cell1"], timed(model.infer, args.infer_calls, args.device))
    return {
        "label": label,
        "path": path,
        "params": sum(p.numel() for p in model.model.cell.parameters()),
        "gru_ms": best["gru"] * 1e3,
        "cell_ms": best["cell"] * 1e3,
        "ref_ms": best["ref"] * 1e3 if fused and not args.no_reference else None,
        "train_ratio": best["gru"] / best["cell"],
        "gru1_ms": best["gru1"] * 1e3,
        "cell1_ms": best["cell1"] * 1e3,
        "infer_ratio": best["gru1"] / best["cell1"],
    }


COLUMNS = [("cell", "label", "{}"), ("path", "path", "{}"), ("params", "params", "{}"),
           ("GRU train ms", "gru_ms", "{:.1f}"), ("train ms", "cell_ms", "{:.1f}"),
           ("ref ms", "ref_ms", "{:.1f}"), ("train x GRU", "train_ratio", "{:.2f}"),
           ("GRU infer ms", "gru1_ms", "{:.2f}"), ("infer ms", "cell1_ms", "{:.2f}"),
           ("infer x GRU", "infer_ratio", "{:.2f}")]


def fmt(row: dict, key: str, spec: str) -> str:
    v = row[key]
    return "-" if v is None else spec.format(v)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    ap.add_argument("--repeats", type=int, default=5, help="timings per row; the minimum is kept")
    ap.add_argument("--steps", type=int, default=2, help="training steps per timing")
    ap.add_argument("--infer-calls", type=int, default=5, help="batch-1 calls per timing")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--input", type=int, default=9)
    ap.add_argument("--hidden", type=int, default=80)
    ap.add_argument("--cells", default="", help="comma-separated row labels or cell names")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference step loop")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--gpu-kernels", action="store_true",
                    help="use the Triton kernels where one exists (CUDA; opt-in, see _triton.py)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.gpu_kernels:
        from seqeq.cells import _triton

        with _triton.use_gpu_kernels(True):
            return run(args)
    return run(args)


def run(args) -> None:
    wanted = {w.strip() for w in args.cells.split(",") if w.strip()}
    cases = [c for c in CASES if not wanted or c[0] in wanted or c[1] in wanted]
    device = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
              else f"{platform.processor() or platform.machine()} CPU, {args.threads} thread(s)")
    print(f"# torch {torch.__version__}, {device}; B={args.batch} T={args.length} "
          f"d={args.input} D={args.hidden}; min of {args.repeats} x {args.steps} steps",
          flush=True)
    rows = []
    for label, cell, hp in cases:
        row = measure(label, cell, hp, args)
        rows.append(row)
        if not args.markdown:
            print("  ".join(f"{name}={fmt(row, key, spec)}" for name, key, spec in COLUMNS),
                  flush=True)
    if args.markdown:
        print("| " + " | ".join(c[0] for c in COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
        for row in rows:
            print("| " + " | ".join(fmt(row, k, s) for _, k, s in COLUMNS) + " |")


if __name__ == "__main__":
    main()
