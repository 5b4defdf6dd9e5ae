"""The streaming model on the Android / TFLite Micro route: onnx2tf -> LiteRT, in ai-edge-litert.

Two steps, because TensorFlow and torch rarely share an environment:

    python benchmarks/litert.py export /tmp/litert          # seqeq's env: step graphs + references
    /path/to/tf-venv/bin/python benchmarks/litert.py check /tmp/litert   # onnx2tf, ai-edge-litert

``export`` writes, for every registered cell (fp32 and int8 weights, random weights at the HAR-2
shape: 9 channels, D=16, 6 classes), the streaming ONNX file and onnxruntime's outputs over a
24-sample stream; ``check`` converts each file with ``onnx2tf`` (batch 1, float32 LiteRT),
steps the same stream through ``ai_edge_litert``'s interpreter and prints the largest logit and
state difference per cell. The check environment needs ``onnx2tf tensorflow ai-edge-litert onnx
onnxruntime onnx_graphsurgeon sng4onnx psutil`` (pip), too heavy for the test extras.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

STEPS, C, D, K = 24, 9, 16, 6


def export(out: Path) -> None:
    import onnxruntime as ort
    import torch

    from seqeq.cells import list_cells
    from seqeq.export.streaming import export_streaming_onnx, initial_state
    from seqeq.models import ModelSpec, build_model

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(STEPS, 1, C)).astype(np.float32)
    for cell in list_cells():
        for q in (None, "int8"):
            spec = ModelSpec(cell, C, D, K)
            model = build_model(spec, seed=0)
            g = torch.Generator().manual_seed(1)
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(1 + 0.2 * torch.randn(p.shape, generator=g))
            model.set_normalisation(np.zeros(C), np.ones(C))
            name = f"{cell}-{q or 'fp32'}"
            export_streaming_onnx(model, spec, out / f"{name}.onnx",
                                  class_names=[str(k) for k in range(K)],
                                  channel_names=[f"c{i}" for i in range(C)], quantize=q)
            sess = ort.InferenceSession(str(out / f"{name}.onnx"))
            s = initial_state(model)[None]
            states, logits = [], []
            for x in xs:
                s, lg, _ = sess.run(None, {"x_t": x, "state": s})
                states.append(s)
                logits.append(lg)
            np.savez(out / f"{name}.npz", x=xs, s0=initial_state(model)[None],
                     states=np.stack(states), logits=np.stack(logits))
    print(f"wrote {len(list(out.glob('*.onnx')))} streaming models to {out}")


def check(out: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    rows = []
    for onnx_path in sorted(out.glob("*.onnx")):
        name = onnx_path.stem
        ref = np.load(out / f"{name}.npz")
        tf_dir = out / f"{name}_tf"
        r = subprocess.run(["onnx2tf", "-i", str(onnx_path), "-o", str(tf_dir), "-b", "1",
                            "-n"], capture_output=True, text=True)
        tfl = tf_dir / f"{name}_float32.tflite"
        if r.returncode != 0 or not tfl.is_file():
            rows.append((name, "conversion failed", (r.stderr or r.stdout).strip()[-300:]))
            continue
        it = Interpreter(model_path=str(tfl))
        it.allocate_tensors()
        ins = {d["name"]: d for d in it.get_input_details()}
        outs = it.get_output_details()

        def find(details, key, n):
            hit = [d for d in details if key in d["name"]]
            return hit[0] if hit else [d for d in details if d["shape"][-1] == n][0]

        x_in, s_in = find(list(ins.values()), "x_t", C), find(list(ins.values()), "state",
                                                               ref["s0"].shape[1])
        s_out = find(outs, "state_next", ref["s0"].shape[1])
        l_out = find(outs, "logits", K)
        s = ref["s0"].astype(np.float32)
        worst_l = worst_s = 0.0
        for t in range(STEPS):
            it.set_tensor(x_in["index"], ref["x"][t])
            it.set_tensor(s_in["index"], s)
            it.invoke()
            s = it.get_tensor(s_out["index"]).copy()
            lg = it.get_tensor(l_out["index"])
            worst_l = max(worst_l, float(np.abs(lg - ref["logits"][t]).max()))
            worst_s = max(worst_s, float(np.abs(s - ref["states"][t]).max()))
        rows.append((name, f"{worst_l:.2e}", f"{worst_s:.2e}"))
    print("| model | largest logit difference over 24 steps | largest state difference |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    (out / "litert.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    what, where = sys.argv[1], Path(sys.argv[2])
    {"export": export, "check": check}[what](where)
