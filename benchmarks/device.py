"""The exported models on a microcontroller: flash, RAM, multiply-accumulates and instructions.

For each finished run directory given, the run's model is exported to C (fp32 and int8), its
predictions on real test series are checked on QEMU's emulated Cortex-M4F (mps2-an386) against
the host's ``best.onnx``, and the figures of ``seqeq.export.mcu.deployment`` are printed as a
Markdown table for ``benchmarks/RESULTS.md``. Needs gcc-arm-none-eabi, libnewlib-arm-none-eabi
and qemu-system-arm (Debian packages).

    SEQEQ_DATA_DIR=../shared/data python benchmarks/device.py runs/har2-20 runs/har2-2 runs/dsa19
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _test_data(run_dir: Path):
    """The run's test split (a built-in benchmark's), else None."""
    from seqeq.datasets import load_benchmark

    info = json.loads((run_dir / "report.json").read_text())["data"]
    name = (info.get("origin") or {}).get("name") or info.get("train", {}).get("name")
    try:
        return load_benchmark(str(name).removesuffix("-train"))[1]
    except Exception as e:  # a file run: no test split to check on
        print(f"{run_dir}: no test split to check ({e})", file=sys.stderr)
        return None


def measure(run_dir: Path, quantize: str | None, n_check: int) -> dict:
    from seqeq.export import export_onnx, mcu
    from seqeq.export.c_source import export_c
    from seqeq.models import load_model

    model, spec, meta = load_model(run_dir / "model")
    names = dict(class_names=meta["class_names"], channel_names=meta["channel_names"],
                 quantize=quantize)
    test = _test_data(run_dir)
    row: dict = {"run": str(run_dir), "model": spec.cell, "D": spec.hidden_size,
                 "members": spec.members, "quantize": quantize or "none"}
    series = (np.asarray(test.X[0, : int(test.lengths[0])]) if test is not None
              else np.random.default_rng(0).normal(size=(64, spec.input_size)))
    t0 = time.perf_counter()
    row.update(mcu.deployment(model, spec, series=series,
                              window_steps=int(np.median(test.lengths)) if test is not None
                              else 128, **names))
    row["measure_s"] = round(time.perf_counter() - t0, 1)
    if test is not None and n_check:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            export_c(model, spec, tmp / "model.c", **names)
            export_onnx(model, spec, tmp / "best.onnx", **names)
            idx = np.linspace(0, test.n_series - 1, n_check).astype(int)
            X, L = np.asarray(test.X[idx], np.float32), test.lengths[idx]
            (tmp / "fw").mkdir()
            elf = mcu.build_firmware(tmp / "model.c", X, L, tmp / "fw")
            got, _ = mcu.run_firmware(elf, len(meta["class_names"]), timeout=900)
            want = ort.InferenceSession(str(tmp / "best.onnx")).run(
                ["logits"], {"x": X, "lengths": L.astype(np.int64)})[0]
            same = int((got.argmax(1) == want.argmax(1)).sum())
            row["m4_same_predictions"] = f"{same}/{len(idx)}"
            row["m4_max_logit_diff"] = float(np.abs(got - want).max())
    return row


def table(rows: list[dict]) -> str:
    out = ["| run | model | weights | flash KiB | RAM B (state + stack) | MACs / sample | "
           "instructions / sample | ms / window at 80 MHz (samples) | M4 = host predictions |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        model = f"{r['model']} D={r['D']}" + (f" x{r['members']}" if r["members"] > 1 else "")
        out.append(
            f"| {Path(r['run']).name} | {model} | {r['quantize']} | "
            f"{(r['flash_bytes'] or 0) / 1024:.1f} | {r['ram_bytes']} ({r['state_bytes']} + "
            f"{r.get('stack_bytes')}) | {r['macs_per_step']:,} | "
            f"{r['instructions_per_step'] or float('nan'):,.0f} | "
            f"{r['ms_per_window'] if r['ms_per_window'] is not None else '–'} "
            f"({r['window_steps']}) | {r.get('m4_same_predictions', '–')} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    ap.add_argument("--check", type=int, default=32,
                    help="test series to classify on the emulated M4 (0: none)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    rows = []
    for run in args.runs:
        for q in (None, "int8"):
            rows.append(measure(run, q, args.check))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"`SEQEQ_DATA_DIR=../shared/data python benchmarks/device.py "
          f"{' '.join(sys.argv[1:])}`\n")
    print(table(rows))


if __name__ == "__main__":
    main()
