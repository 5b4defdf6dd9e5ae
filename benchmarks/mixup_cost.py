"""What mixup's mixed copy costs a training step: one forward and backward pass over the batch
and its mixed copy together (how ``train_model`` does it) and over each in turn (how it did
before), against a step without mixup, measured in the same run on one thread.

    python benchmarks/mixup_cost.py            # small-data batches (7-28 series, T = 251)

Prints milliseconds per step and the ratios to the step without mixup.
"""

from __future__ import annotations

import sys
import time

import torch

#: (cell, hidden size, cell settings): the configurations the development suite's searches chose
MODELS = [
    ("dirnn", 12, {"K": 1, "L": 4, "activation": "relu"}),
    ("tarnn", 12, {"K": 2, "activation": "relu", "variant": "code"}),
    ("ernn", 130, {"K": 2, "activation": "tanh", "u_kind": "lowrank", "u_rank": 3,
                   "v_kind": "permdiag", "w_kind": "permdiag"}),
    ("gru", 24, {}),
]


def step_ms(model, x, lengths, y, how: str, reps: int = 5) -> float:
    from seqeq.augment import mix_series

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ce = torch.nn.functional.cross_entropy
    gen = torch.Generator().manual_seed(0)
    times = []
    for r in range(reps + 1):
        t0 = time.perf_counter()
        if how == "none":
            loss = ce(model(x, lengths), y)
        else:
            xm, Lm, j, lam = mix_series(x, lengths, 0.5, gen)
            if how == "one pass":
                out = model(torch.cat([x, xm]), torch.cat([lengths, Lm]))
                clean, mixed = out[: len(y)], out[len(y):]
            else:
                clean, mixed = model(x, lengths), model(xm, Lm)
            loss = ce(clean, y) + lam * ce(mixed, y) + (1 - lam) * ce(mixed, y[j])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if r:  # the first step warms up
            times.append(time.perf_counter() - t0)
    return 1000 * sorted(times)[len(times) // 2]


def main() -> None:
    from seqeq.models import ModelSpec, build_model

    torch.set_num_threads(1)
    T = 251
    print(f"`python benchmarks/mixup_cost.py {' '.join(sys.argv[1:])}` (one thread, T = {T}, "
          "16-filter convolution front end, median of 5 steps)\n")
    print("| model | batch | no mixup ms | mixup, two passes ms (ratio) | mixup, one pass ms "
          "(ratio) |")
    print("|---|---|---|---|---|")
    for cell, D, kw in MODELS:
        model = build_model(ModelSpec(cell, 1, D, 3, cell_kwargs=kw, conv=16), seed=0)
        for B in (7, 14, 28):
            g = torch.Generator().manual_seed(B)
            x, y = torch.randn(B, T, 1, generator=g), torch.randint(0, 3, (B,), generator=g)
            lengths = torch.full((B,), T)
            ms = {how: step_ms(model, x, lengths, y, how)
                  for how in ("none", "two passes", "one pass")}
            print(f"| {cell} D={D} | {B} | {ms['none']:.1f} | {ms['two passes']:.1f} "
                  f"({ms['two passes'] / ms['none']:.2f}) | {ms['one pass']:.1f} "
                  f"({ms['one pass'] / ms['none']:.2f}) |")


if __name__ == "__main__":
    main()
