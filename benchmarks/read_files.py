"""How long seqeq takes to read a long-format CSV, against pandas' own ``read_csv`` of the same
file in the same run (the reference: what reading the bytes costs before any checking).

seqeq reads ids, labels and groups as text, checks every row's field count, and reads numbers by
one decimal-mark convention per file; a file with ',' decimals is read twice (every number as
text). This measures what that costs, for a '.'-decimal file and a ';'/','-decimal file.

    python benchmarks/read_files.py --rows 1000000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from seqeq.datasets import load_file


def _frame(rows: int, channels: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    T = 128
    n = rows // T
    return pd.DataFrame({
        "series_id": np.repeat(np.arange(n), T), "time": np.tile(np.arange(T), n),
        **{f"c{j}": rng.normal(size=n * T).astype(np.float32) for j in range(channels)},
        "label": np.repeat(np.array(["walk", "run"])[np.arange(n) % 2], T)})


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--channels", type=int, default=9)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    df = _frame(args.rows, args.channels)
    print(f"{len(df):,} rows x {args.channels} channels (+ id, time, label); best of "
          f"{args.repeat}")
    print(f"{'file':<28} {'pandas read_csv':>16} {'seqeq load_file':>16} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, sep, dec in (("'.' decimals, ','", ",", "."), ("',' decimals, ';'", ";", ",")):
            path = Path(tmp) / "d.csv"
            df.to_csv(path, index=False, sep=sep, decimal=dec)
            ref = _best(lambda p=path, s=sep, d=dec: pd.read_csv(p, sep=s, decimal=d),
                        args.repeat)
            ours = _best(lambda p=path: load_file(p), args.repeat)
            print(f"{name:<28} {ref:>14.2f} s {ours:>14.2f} s {ours / ref:>6.1f}x")


if __name__ == "__main__":
    main()
