"""ONNX export benchmark (issue 5): file size, parity and single-series latency per cell.

At the HAR-2 shape (d=9 channels, T=128 steps, C=2 classes), every registered cell with its
default hyperparameters and hidden size D (``--hidden``, default 64), random weights and
non-trivial normalisation statistics:

* fp32 and int8 ONNX file size against the weight bytes (parameters + buffers);
* max |logit| difference, onnxruntime vs PyTorch, on 64 series of unequal lengths (int8: against
  the fake-quantised PyTorch model);
* latency of one series (batch 1, T=128): median over ``--repeats`` calls of onnxruntime and of
  the PyTorch model in the same process, one thread each, and their ratio (ORT / torch).

    python benchmarks/export.py [--hidden 64] [--repeats 50] [--cells irnn gru ...]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from seqeq.cells import list_cells
from seqeq.export import export_onnx, quantize_model_weights
from seqeq.models import ModelSpec, build_model

D_IN, T, C = 9, 128, 2


def _median_ms(fn, repeats: int) -> float:
    fn()
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def bench_cell(cell: str, hidden: int, repeats: int, tmp: Path) -> dict:
    spec = ModelSpec(cell, D_IN, hidden, C)
    torch.manual_seed(0)
    model = build_model(spec).eval()
    rng = np.random.default_rng(0)
    model.set_normalisation(rng.normal(0, 2, D_IN), rng.uniform(0.5, 3, D_IN))
    names = dict(class_names=["class0", "class1"], channel_names=[f"ch{i}" for i in range(D_IN)])
    fp = export_onnx(model, spec, tmp / f"{cell}.onnx", **names)
    q8 = export_onnx(model, spec, tmp / f"{cell}.int8.onnx", quantize="int8", **names)

    # parity on 64 series of unequal lengths
    lengths = rng.integers(1, T + 1, size=64)
    lengths[:2] = (1, T)
    x = (model.mean + model.std * torch.randn(64, T, D_IN)).float()
    feed = {"x": x.numpy(), "lengths": lengths.astype(np.int64)}
    with torch.no_grad():
        want = model(x, torch.as_tensor(lengths)).numpy()
        want_q = quantize_model_weights(model)(x, torch.as_tensor(lengths)).numpy()
    sess, sess_q = _session(tmp / f"{cell}.onnx"), _session(tmp / f"{cell}.int8.onnx")
    err = float(np.abs(sess.run(["logits"], feed)[0] - want).max())
    err_q = float(np.abs(sess_q.run(["logits"], feed)[0] - want_q).max())

    # single-series latency
    x1 = x[:1].contiguous()
    l1 = torch.tensor([T])
    feed1 = {"x": x1.numpy(), "lengths": l1.numpy()}

    def run_torch():
        with torch.no_grad():
            model(x1, l1)

    ort_ms = _median_ms(lambda: sess.run(None, feed1), repeats)
    ort_q_ms = _median_ms(lambda: sess_q.run(None, feed1), repeats)
    torch_ms = _median_ms(run_torch, repeats)
    return {"cell": cell, "params": fp["param_count"], "weight_B": fp["weight_bytes"],
            "onnx_B": fp["file_bytes"], "int8_weight_B": q8["weight_bytes"],
            "int8_onnx_B": q8["file_bytes"], "nodes": fp["num_nodes"], "err": err,
            "err_int8": err_q, "ort_ms": ort_ms, "ort_int8_ms": ort_q_ms, "torch_ms": torch_ms}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--cells", nargs="*", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cells = args.cells or list_cells()
    print(f"# seqeq ONNX export, HAR-2 shape d={D_IN} T={T} C={C}, D={args.hidden}, default "
          f"hyperparameters; torch {torch.__version__}, onnxruntime {ort.__version__}, "
          f"{platform.machine()}, 1 thread each; latency = median of {args.repeats} calls, "
          "batch 1")
    print()
    print("| cell | params | weights B | ONNX B | ONNX/weights | int8 weights B | int8 ONNX B | "
          "fp32/int8 file | nodes | max abs err | int8 max abs err | ORT ms | ORT int8 ms | "
          "torch ms | ORT/torch |")
    print("|" + "---|" * 15)
    with tempfile.TemporaryDirectory() as d:
        for cell in cells:
            r = bench_cell(cell, args.hidden, args.repeats, Path(d))
            print(f"| {r['cell']} | {r['params']} | {r['weight_B']} | {r['onnx_B']} | "
                  f"{r['onnx_B'] / r['weight_B']:.2f} | {r['int8_weight_B']} | "
                  f"{r['int8_onnx_B']} | {r['onnx_B'] / r['int8_onnx_B']:.2f} | {r['nodes']} | "
                  f"{r['err']:.1e} | {r['err_int8']:.1e} | {r['ort_ms']:.2f} | "
                  f"{r['ort_int8_ms']:.2f} | {r['torch_ms']:.2f} | "
                  f"{r['ort_ms'] / r['torch_ms']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
