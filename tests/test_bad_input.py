"""Malformed input through the real CLI: every case exits 2 with one line on stderr that names the
problem and the fix, no traceback, and nothing written or overwritten (issue 8).

One good run is trained once (module fixture, on a ';'-delimited, BOM-prefixed, unsorted file with a
NaN read with ``--nan fill``: three inputs that must work); every bad case then runs against it and
checks that its files are byte-identical afterwards.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from seqeq.cli import app

REPO = Path(__file__).resolve().parents[1]
FAST = ["--trials", "1", "--epochs", "1", "--final-seeds", "1", "--cells", "gru",
        "--budget-kb", "4", "--device", "cpu", "--quiet"]


def good_frame(n: int = 24, T: int = 8, seed: int = 0) -> pd.DataFrame:
    """Long format: series_id, time, channels a and b, label calm/wild (12 series each)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        wild = i % 2
        x = np.cumsum(rng.normal(size=(T, 2)) * (1.0 if wild else 0.1), axis=0)
        for t in range(T):
            rows.append({"series_id": i, "time": t, "a": x[t, 0], "b": x[t, 1],
                         "label": "wild" if wild else "calm"})
    return pd.DataFrame(rows)


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_input")
    good = good_frame()
    good.to_csv(d / "good.csv", index=False)
    # the must-work variants, all at once: ';' + decimal comma + BOM, rows shuffled (sorted by
    # the time column on reading), one NaN filled by --nan fill
    messy = good.sample(frac=1.0, random_state=1)
    messy.loc[messy.index[5], "a"] = np.nan
    text = "\ufeff" + messy.to_csv(index=False, sep=";", decimal=",")
    (d / "messy.csv").write_bytes(text.encode("utf-8"))
    run = d / "good_run"
    res = CliRunner().invoke(app, ["fit", str(d / "messy.csv"), *FAST, "--nan", "fill",
                                   "--out", str(run)])
    assert res.exit_code == 0, (res.output, res.exception)
    for f in ("best.onnx", "report.json", "report.html", "study.db", "run.json",
              "model/model.json", "model/model.safetensors"):
        assert (run / f).is_file(), f
    return {"dir": d, "good": d / "good.csv", "messy": d / "messy.csv", "run": run,
            "onnx": run / "best.onnx", "snap": snapshot(run)}


def test_messy_file_is_read_as_the_clean_one(base):
    """The module's good run read the ';'/BOM/shuffled file; it holds the clean file's series."""
    from seqeq.datasets import load_file

    clean = load_file(base["good"])
    messy = load_file(base["messy"], nan="fill")
    assert messy.meta["delimiter"] == ";" and messy.meta["bom"]
    assert messy.channel_names == ["a", "b"] and sorted(messy.ids) == list(clean.ids)
    assert np.isfinite(messy.X).all()
    order = np.argsort(messy.ids)  # series come in order of first appearance
    same = np.isclose(messy.X[order], clean.X, rtol=1e-6).all(axis=(1, 2))
    assert same.sum() == clean.n_series - 1  # sorted by time; only the filled series differs
    assert (messy.y[order] == clean.y).all()


# ---- the matrix ------------------------------------------------------------------------------
def _w(path: Path, df: pd.DataFrame | None = None, text: str | None = None,
       data: bytes | None = None) -> str:
    if df is not None:
        df.to_parquet(path, index=False) if path.suffix == ".parquet" else df.to_csv(path,
                                                                                    index=False)
    elif text is not None:
        path.write_text(text)
    else:
        path.write_bytes(data or b"")
    return str(path)


def _edit(fn):
    g = good_frame()
    fn(g)
    return g


def _nested(g: pd.DataFrame, widths=lambda sid: 2, empty=()) -> pd.DataFrame:
    rows = []
    for sid, s in g.groupby("series_id"):
        v = s[["a", "b"]].to_numpy()
        x = [] if sid in empty else [list(r[: widths(sid)]) + [0.0] * (widths(sid) - 2)
                                     for r in v]
        rows.append({"series_id": sid, "label": s.label.iloc[0], "x": x})
    return pd.DataFrame(rows)


def _set(g, rows, col, value):
    g[col] = g[col].astype(object) if isinstance(value, str) else g[col]
    g.loc[rows, col] = value


def _resume_run(b: dict, *args: str) -> list[str]:
    """Resume the module's good run, on its own data, with ``args`` changed."""
    return ["fit", str(b["messy"]), "--nan", "fill", "--out", str(b["run"]), "--resume", *args]


def _tiny_onnx(path: Path) -> str:
    """A valid ONNX file that seqeq did not write (no seqeq metadata)."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(g), path)
    return str(path)


def _wide_with_empty_row(t: Path) -> str:
    rows = [{"label": k % 2, **{f"t{j}": float(j + k) for j in range(5)}} for k in range(12)]
    rows[3] = {"label": 1}  # every step empty: a series of length 0
    return _w(t / "wide.csv", pd.DataFrame(rows))


def _foreign_dir(t: Path) -> str:
    (t / "run").mkdir()
    (t / "run" / "notes.txt").write_text("mine")
    return str(t / "run")


def _long_text(values_a: list[str], sep: str = ";", quote: bool = False) -> str:
    """A long file of 12 series of 2 steps whose channel 'a' holds ``values_a`` as written."""
    q = '"' if quote else ""
    rows = [sep.join(["series_id", "time", "a", "label"])]
    for i in range(24):
        v = values_a[i % len(values_a)]
        rows.append(sep.join([str(i // 2), str(i % 2), f"{q}{v}{q}", "ab"[i // 2 % 2]]))
    return "\n".join(rows) + "\n"


def _loop(t: Path) -> str:
    (t / "loop.csv").symlink_to(t / "loop.csv")
    return str(t / "loop.csv")


def _dangling(t: Path) -> str:
    (t / "link.csv").symlink_to(t / "gone.csv")
    return str(t / "link.csv")


def _late_latin1(t: Path) -> str:
    """UTF-8 for the first 64 KiB, then a Latin-1 byte."""
    text = good_frame(n=600).to_csv(index=False)
    data = text.encode() + "9999,0,1.0,2.0,caf\xe9\n".encode("latin-1")
    return _w(t / "d.csv", data=data)


def _report_v99(t: Path, run: Path) -> str:
    d = t / "copy"
    d.mkdir()
    text = (run / "report.json").read_text().replace('"schema_version": 1', '"schema_version": 99')
    (d / "report.json").write_text(text)
    return str(d)


# (id, argv builder (tmp_path, base) -> list[str], substrings the one line must contain)
# fit/bench cases write nothing: --out is tmp_path / "run" and must not exist afterwards.
CASES = [
    ("missing-file", lambda t, b: ["fit", str(t / "nope.csv")],
     ["does not exist", "check the path"]),
    ("unknown-extension", lambda t, b: ["fit", _w(t / "d.xlsx", text="a,b\n1,2\n")],
     ["extension '.xlsx'", ".csv or .parquet"]),
    ("empty-file", lambda t, b: ["fit", _w(t / "d.csv", text="")], ["is empty", "header"]),
    ("header-only", lambda t, b: ["fit", _w(t / "d.csv", text="series_id,time,a,label\n")],
     ["no data rows", "add rows"]),
    ("no-label-column", lambda t, b: ["fit", _w(t / "d.csv", good_frame().rename(
        columns={"label": "lable"}))], ["no label column", "did you mean 'lable'", "--label-col"]),
    ("label-col-typo", lambda t, b: ["fit", str(b["good"]), "--label-col", "labl"],
     ["label column 'labl' is not in the file", "did you mean 'label'"]),
    ("single-class", lambda t, b: ["fit", _w(t / "d.csv", _edit(lambda g: _set(
        g, slice(None), "label", "x")))], ["single class 'x'", "at least two classes"]),
    ("class-with-one-series", lambda t, b: ["fit", _w(t / "d.csv", _edit(lambda g: _set(
        g, g.series_id == 0, "label", "rare")))],
     ["'rare' (1)", "fewer than 3 series", "add series"]),
    ("class-with-one-series-and-test", lambda t, b: ["fit", _w(t / "d.csv", _edit(lambda g: _set(
        g, g.series_id == 0, "label", "rare"))), "--test", str(b["good"])],
     ["'rare' (1)", "fewer than 2 series", "validation"]),
    ("non-numeric-channel", lambda t, b: ["fit", _w(t / "d.csv", _edit(lambda g: _set(
        g, 3, "a", "abc")))], ["column 'a'", "not numeric", "'abc'", "fix or drop"]),
    ("nan", lambda t, b: ["fit", _w(t / "d.csv", _edit(lambda g: _set(g, [5, 9], "a", np.nan)))],
     ["2 nan/inf values", "series 0 at step 5, channel 'a'", "--nan fill"]),
    ("inf", lambda t, b: ["fit", _w(t / "d.csv", _edit(lambda g: _set(g, 12, "b", np.inf)))],
     ["1 nan/inf values", "series 1 at step 4, channel 'b'", "--nan fill"]),
    ("minus-inf", lambda t, b: ["fit", _w(t / "d.csv", _edit(lambda g: _set(g, 7, "a", -np.inf)))],
     ["1 nan/inf values", "step 7", "--nan fill"]),
    ("series-of-length-0-wide", lambda t, b: ["fit", _wide_with_empty_row(t)],
     ["series 3", "length 0", "drop empty series"]),
    ("series-of-length-0-nested", lambda t, b: ["fit", _w(t / "d.parquet", _nested(
        good_frame(), empty={4}))], ["series 4", "length 0", "drop empty series"]),
    ("duplicated-time", lambda t, b: ["fit", _w(t / "d.csv", _edit(lambda g: _set(
        g, 4, "time", 3)))], ["duplicated time stamp 3 in series 0", "drop or aggregate"]),
    ("label-changes-within-series", lambda t, b: ["fit", _w(t / "d.csv", _edit(lambda g: _set(
        g, 2, "label", "wild")))], ["changes within series 0", "one label"]),
    ("nested-mixed-channel-counts", lambda t, b: ["fit", _w(t / "d.parquet", _nested(
        good_frame(), widths=lambda sid: 3 if sid == 5 else 2))],
     ["mixed channel counts", "series 5 has 3 channels", "same channels"]),
    ("corrupted-parquet", lambda t, b: ["fit", _w(t / "d.parquet", data=b"PAR1" + bytes(range(
        200)))], ["not a readable parquet file", "re-export"]),
    ("truncated-parquet", lambda t, b: ["fit", _w(t / "d.parquet", data=_parquet_bytes()[:-40])],
     ["not a readable parquet file"]),
    ("thousands-or-decimal", lambda t, b: ["fit", _w(t / "d.csv", text=_long_text(
        ["1,234", "5,678", "9,001"]))],
     ["column 'a'", "'1,234'", "1234 if ',' separates thousands", "1.234 if ',' is the decimal",
      "--decimal . or --decimal ,"]),
    ("decimal-comma-in-comma-csv", lambda t, b: ["fit", _w(t / "d.csv", text=_long_text(
        ["1,5", "2,25"], sep=",", quote=True))],
     ["'1,5'", "decimal comma in a comma-separated file", "--decimal ,"]),
    ("two-decimal-marks", lambda t, b: ["fit", _w(t / "d.csv", text=_long_text(
        ["1,5", "2.75", "3"]))], ["two decimal marks", "'1,5'", "'2.75'", "--decimal"]),
    ("decimal-unknown", lambda t, b: ["fit", str(b["good"]), "--decimal", "x"],
     ["unknown --decimal mark 'x'"]),
    ("ragged-wide-rows", lambda t, b: ["fit", _w(t / "d.csv", text="label,t0,t1\n" + "".join(
        f"{k % 2},{k},{k + 1}\n" for k in range(10)) + "1,2,3,4\n0,5,6,7,8\n")],
     ["2 row(s) of d.csv have more fields than its header (3", "line 12 has 4",
      "line 13 has 5", "remove the extra fields"]),
    ("not-utf8-after-64k", lambda t, b: ["fit", _late_latin1(t)],
     ["d.csv is not utf-8 text", "re-save the file as utf-8"]),
    ("symlink-loop", lambda t, b: ["fit", _loop(t)],
     ["loop.csv' is a symbolic link that loops", "point the link at the real file"]),
    ("dangling-symlink", lambda t, b: ["fit", _dangling(t)],
     ["link.csv' is a symbolic link to", "gone.csv', which does not exist"]),
    ("data-path-is-a-folder", lambda t, b: ["fit", str(t)], ["is a folder, not a file"]),
    ("zip-of-two-files", lambda t, b: ["fit", _two_member_zip(t)],
     ["d.csv.zip holds 2 files", "unzip it"]),
    ("cells-name-nothing", lambda t, b: ["fit", str(b["good"]), "--cells", ","],
     ["--cells , names no cell", "leave it out"]),
    ("test-missing", lambda t, b: ["fit", str(b["good"]), "--test", str(t / "test.csv")],
     ["test.csv' does not exist"]),
    ("test-unknown-label", lambda t, b: ["fit", str(b["good"]), "--test", _w(
        t / "test.csv", _edit(lambda g: _set(g, g.series_id == 1, "label", "new")))],
     ["not training classes: 'new'", "training classes: calm, wild"]),
    ("test-other-channels", lambda t, b: ["fit", str(b["good"]), "--test", _w(
        t / "test.csv", good_frame().rename(columns={"b": "c"}))],
     ["test channels [a, c]", "training channels [a, b]", "same channel columns"]),
    ("budget-too-small", lambda t, b: ["fit", str(b["good"]), "--budget-kb", "0.05"],
     ["no model fits --budget-kb 0.05", "smallest feasible model (gru) needs 0.41 kib",
      "raise --budget-kb to at least 0.42"]),
    ("group-col-missing", lambda t, b: ["fit", str(b["good"]), "--group-col", "subjct"],
     ["group column 'subjct' is not in the file"]),
    ("group-col-one-group", lambda t, b: ["fit", _w(t / "d.csv", _edit(lambda g: g.insert(
        1, "subject", 7))), "--group-col", "subject"], ["only 1 distinct", "drop --group-col"]),
    ("metric", lambda t, b: ["fit", str(b["good"]), "--metric", "nope"],
     ["unknown --metric 'nope'", "accuracy, balanced_accuracy, macro_f1"]),
    ("budget-0", lambda t, b: ["fit", str(b["good"]), "--budget-kb", "0"],
     ["--budget-kb must be a positive number, got 0", "e.g. --budget-kb 20"]),
    ("budget-inf", lambda t, b: ["fit", str(b["good"]), "--budget-kb", "inf"],
     ["--budget-kb must be a positive number"]),
    ("trials-0", lambda t, b: ["fit", str(b["good"]), "--trials", "0"],
     ["--trials must be at least 1", "e.g. --trials 20"]),
    ("timeout-nan", lambda t, b: ["fit", str(b["good"]), "--timeout", "nan"],
     ["--timeout must be a number of seconds (0: no limit), got nan"]),
    ("timeout-negative", lambda t, b: ["fit", str(b["good"]), "--timeout", "-5"],
     ["--timeout must be a number of seconds (0: no limit), got -5"]),
    ("cv-folds-0", lambda t, b: ["fit", str(b["good"]), "--cv-folds", "0"],
     ["--cv-folds must be 1 (one validation split) or 2..10, got 0"]),
    ("epochs-0", lambda t, b: ["fit", str(b["good"]), "--epochs", "0"], ["--epochs must be"]),
    ("final-seeds-0", lambda t, b: ["fit", str(b["good"]), "--final-seeds", "0"],
     ["--final-seeds must be"]),
    ("resume-other-budget", lambda t, b: ["fit", str(b["good"]), "--out", str(b["run"]),
                                          "--resume", "--budget-kb", "5"],
     ["--resume with --budget-kb 5", "used 4", "Resume with --budget-kb 4"]),
    ("resume-other-ensemble", lambda t, b: ["fit", str(b["good"]), "--out", str(b["run"]),
                                            "--resume", "--ensemble", "2"],
     ["--resume with --ensemble 2", "used 1"]),
    ("resume-other-seed", lambda t, b: _resume_run(b, "--seed", "3"),
     ["--resume with --seed 3", "used 0", "Resume with --seed 0"]),
    ("resume-other-cells", lambda t, b: _resume_run(b, "--cells", "lstm,gru"),
     ["--resume with --cells lstm,gru", "used gru"]),
    ("resume-other-rotate", lambda t, b: _resume_run(b, "--rotate", "30"),
     ["--resume with --rotate 30", "used auto", "Resume with --rotate auto"]),
    ("resume-other-mixup", lambda t, b: _resume_run(b, "--mixup", "0"),
     ["--resume with --mixup 0", "used auto", "Resume with --mixup auto"]),
    ("resume-other-quantize", lambda t, b: _resume_run(b, "--quantize", "int8"),
     ["--resume with --quantize int8", "used none", "Resume without --quantize"]),
    # good.csv is messy.csv with its one NaN given a value: other data, however slightly
    ("resume-other-data", lambda t, b: ["fit", str(b["good"]), "--out", str(b["run"]),
                                        "--resume"],
     ["--resume with other data than the run", "same data file"]),
    ("ensemble-0", lambda t, b: ["fit", str(b["good"]), "--ensemble", "0"],
     ["--ensemble must be 1..16"]),
    ("ensemble-over-budget", lambda t, b: ["fit", str(b["good"]), "--ensemble", "16",
                                           "--budget-kb", "0.5", "--cells", "gru"],
     ["an ensemble of 16 models", "lower --ensemble"]),
    ("rerank-1", lambda t, b: ["fit", str(b["good"]), "--rerank", "1"],
     ["--rerank must be 0 (off) or 2..20", "e.g. --rerank 3"]),
    ("rerank-folds-2", lambda t, b: ["fit", str(b["good"]), "--rerank", "2", "--rerank-folds",
                                     "2"], ["--rerank-folds must be 3..10"]),
    ("rerank-folds-more-than-groups", lambda t, b: [
        "fit", _w(t / "d.csv", _edit(lambda g: g.insert(1, "subject", g["series_id"] % 6))),
        "--group-col", "subject", "--rerank", "2", "--rerank-folds", "8"],
     ["--rerank-folds 8 needs 7 groups", "or --rerank 0"]),
    ("workers-0", lambda t, b: ["fit", str(b["good"]), "--workers", "0"], ["--workers must be"]),
    ("format-xml", lambda t, b: ["fit", str(b["good"]), "--format", "xml"],
     ["unknown --format 'xml'", "long, wide, nested"]),
    ("nan-policy", lambda t, b: ["fit", str(b["good"]), "--nan", "zero"],
     ["unknown --nan policy 'zero'", "reject or fill"]),
    ("quantize", lambda t, b: ["fit", str(b["good"]), "--quantize", "int4"],
     ["unknown --quantize 'int4'", "use int8"]),
    ("pruner", lambda t, b: ["fit", str(b["good"]), "--pruner", "random"],
     ["unknown --pruner 'random'"]),
    ("device-tpu", lambda t, b: ["fit", str(b["good"]), "--device", "tpu"],
     ["unknown device 'tpu'"]),
    ("device-cuda-index", lambda t, b: ["fit", str(b["good"]), "--device", "cuda:99"],
     ["--device cuda:99", "--device cpu"]),
    ("cells", lambda t, b: ["fit", str(b["good"]), "--cells", "gru,foo"],
     ["unknown cell(s) in --cells: foo", "choose from"]),
    ("resume-and-overwrite", lambda t, b: ["fit", str(b["good"]), "--resume", "--overwrite"],
     ["contradict"]),
    ("storage-url", lambda t, b: ["fit", str(b["good"]), "--storage", "nodb://u:s3cret@h/x"],
     ["cannot open the study storage", "check --storage"]),
    ("resume-empty-dir", lambda t, b: ["fit", str(b["good"]), "--resume"],
     ["nothing to resume", "drop --resume"]),
    ("out-is-a-file", lambda t, b: ["fit", str(b["good"]), "--out", _w(t / "f.txt", text="x")],
     ["is not a directory"]),
    ("out-foreign-dir", lambda t, b: ["fit", str(b["good"]), "--out", _foreign_dir(t)],
     ["not empty and holds no seqeq run", "'notes.txt'", "--overwrite"]),
    ("existing-run", lambda t, b: ["fit", str(b["good"]), "--out", str(b["run"])],
     ["already holds a run", "--resume", "--overwrite"]),
    ("overwrite-with-bad-data", lambda t, b: ["fit", str(t / "nope.csv"), "--overwrite",
                                              "--out", str(b["run"])], ["does not exist"]),
    ("overwrite-with-tiny-budget", lambda t, b: ["fit", str(b["good"]), "--overwrite",
                                                 "--budget-kb", "0.05", "--out", str(b["run"])],
     ["smallest feasible"]),
    ("bench-unknown", lambda t, b: ["bench", "harr"], ["unknown benchmark 'harr'",
                                                       "did you mean 'har"]),
    ("bench-ucr-path", lambda t, b: ["bench", "ucr:../../etc/passwd"],
     ["not a ucr/uea problem name"]),
    ("bench-file-missing-offline", lambda t, b: ["bench", "har2", "--data-dir", str(t)],
     ["needs uci_har.npz", "downloads are off", "put uci_har.npz in {tmp}"]),
    ("export-no-run", lambda t, b: ["export", str(t / "e.onnx")], ["no finished run",
                                                                   "--run dir"]),
    ("export-empty-dir", lambda t, b: ["export", str(t / "e.onnx"), "--run", str(t)],
     ["holds no finished model"]),
    ("export-not-onnx-name", lambda t, b: ["export", str(t / "e.txt"), "--run", str(b["run"])],
     ["does not end in .onnx", "*.onnx"]),
    ("export-quantize", lambda t, b: ["export", str(t / "e.onnx"), "--run", str(b["run"]),
                                      "--quantize", "int3"], ["unknown quantisation 'int3'"]),
    ("predict-model-missing", lambda t, b: ["predict", str(t / "m.onnx"), str(b["good"])],
     ["not found", ".onnx file"]),
    ("predict-model-not-onnx", lambda t, b: ["predict", str(b["run"] / "model" / "model.json"),
                                             str(b["good"])], ["cannot load", "seqeq export"]),
    ("predict-model-pickle", lambda t, b: ["predict", _w(t / "m.onnx", data=pickle.dumps(
        {"w": [1.0]})), str(b["good"])], ["cannot load", "seqeq export"]),
    ("predict-foreign-onnx", lambda t, b: ["predict", _tiny_onnx(t / "m.onnx"), str(b["good"])],
     ["not a seqeq onnx model", "seqeq export"]),
    ("predict-other-channels", lambda t, b: ["predict", str(b["onnx"]), _w(
        t / "d.csv", good_frame().rename(columns={"b": "c"}))],
     ["channels ['a', 'c']", "expects 2: ['a', 'b']"]),
    ("predict-fewer-channels", lambda t, b: ["predict", str(b["onnx"]), _w(
        t / "d.csv", good_frame().drop(columns=["b"]))], ["channels ['a']", "['a', 'b']"]),
    ("predict-nan", lambda t, b: ["predict", str(b["onnx"]), _w(t / "d.csv", _edit(
        lambda g: _set(g, 5, "a", np.nan)))], ["nan/inf", "--nan fill"]),
    ("predict-out-extension", lambda t, b: ["predict", str(b["onnx"]), str(b["good"]), "--out",
                                            str(t / "preds.txt")], [".csv or .parquet"]),
    ("report-no-report-json", lambda t, b: ["report", str(t)], ["report.json not found"]),
    ("report-newer-schema", lambda t, b: ["report", _report_v99(t, b["run"])],
     ["schema_version 99", "upgrade seqeq"]),
    ("report-not-json", lambda t, b: ["report", str(Path(_w(t / "report.json", text="{oops"))
                                                    .parent)], ["not valid json"]),
]


def _two_member_zip(t: Path) -> str:
    import zipfile

    with zipfile.ZipFile(t / "d.csv.zip", "w") as z:
        z.writestr("a.csv", good_frame().to_csv(index=False))
        z.writestr("b.csv", good_frame().to_csv(index=False))
    return str(t / "d.csv.zip")


def _parquet_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    good_frame().to_parquet(buf, index=False)
    return buf.getvalue()


def _needs_no_cuda(case_id: str) -> None:
    if case_id.startswith("device-cuda"):
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 99:  # pragma: no cover
            pytest.skip("this machine has a CUDA device with that index")


def check_one_error_line(stderr: str, stdout: str, must: list[str]) -> str:
    assert "Traceback" not in stderr + stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("error: "), line
    # "<problem>. <fix>": the fix is a second sentence
    assert ". " in line[7:].rstrip("."), line
    for m in must:
        assert m.lower() in line.lower(), (m, line)
    return line


@pytest.mark.parametrize("case_id,build,must", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(base, tmp_path, monkeypatch,
                                                            case_id, build, must):
    _needs_no_cuda(case_id)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # `export` without --run looks in ./runs; nothing may land here
    monkeypatch.setenv("SEQEQ_OFFLINE", "1")
    args = build(tmp_path, base)
    out = tmp_path / "run"
    if args[0] in ("fit", "bench"):  # the case's own options come last, so they win
        args = [*args[:2], *FAST, *([] if "--out" in args else ["--out", str(out)]), *args[2:]]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    check_one_error_line(res.stderr, res.stdout, [m.format(tmp=tmp_path) for m in must])
    assert res.stdout == ""
    # nothing written: no run dir, nothing in the cwd, no file added or changed in tmp_path
    if not (case_id.startswith("out-") or case_id == "resume-empty-dir"):
        assert not out.exists()
    assert not any(cwd.iterdir())
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    assert snapshot(base["run"]) == base["snap"]


def test_resume_on_an_empty_dir_leaves_it_empty(base, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(app, ["fit", str(base["good"]), *FAST, "--out", str(empty),
                                   "--resume"])
    assert res.exit_code == 2
    check_one_error_line(res.stderr, res.stdout, ["nothing to resume"])
    assert list(empty.iterdir()) == []


def test_overwrite_replaces_only_after_validation(base, tmp_path):
    """--overwrite on a copy of the good run with good data does replace it (the refusals above
    are not because --overwrite is broken)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(base["run"], run)
    (run / "model" / ".model.json.abc.tmp").write_text("left by a killed writer")
    res = CliRunner().invoke(app, ["fit", str(base["good"]), *FAST, "--overwrite", "--seed", "3",
                                   "--out", str(run)])
    assert res.exit_code == 0, res.output
    assert (run / "report.json").read_bytes() != base["snap"]["report.json"]
    assert not list(run.rglob(".*.tmp"))


# ---- real processes: no traceback reaches the terminal ---------------------------------------
@pytest.mark.parametrize("args,must", [
    (["fit", "{tmp}/nope.csv"], ["does not exist"]),
    (["fit", "{nan}", "--out", "{tmp}/run"], ["nan/inf values", "--nan fill"]),
    (["predict", "{good}", "{good}"], ["cannot load"]),
    (["report", "{tmp}"], ["report.json not found"]),
], ids=["missing-file", "nan", "predict-csv-as-model", "report-missing"])
def test_subprocess_exit_2_without_traceback(base, tmp_path, args, must):
    nan = _w(tmp_path / "nan.csv", _edit(lambda g: _set(g, 5, "a", np.nan)))
    argv = [a.format(tmp=tmp_path, nan=nan, good=base["good"]) for a in args]
    env = {**os.environ, "SEQEQ_OFFLINE": "1"}
    env.pop("SEQEQ_DEBUG", None)
    p = subprocess.run([sys.executable, "-m", "seqeq.cli", *argv], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=120)
    assert p.returncode == 2, p.stderr
    check_one_error_line(p.stderr, p.stdout, must)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,must", [
    (["fit", "x.csv", "--bogus"], "No such option: --bogus"),
    (["fit"], "Missing argument 'PATH'"),
    (["fit", "x.csv", "--trials", "abc"], "Invalid value for '--trials'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
], ids=["unknown-option", "missing-argument", "not-an-int", "unknown-command"])
def test_usage_errors_exit_2_and_are_readable(tmp_path, monkeypatch, args, must):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    text = " ".join(res.stderr.split())
    assert "Traceback" not in res.stderr and res.stdout == ""
    assert must.lower() in text.lower().replace("│", "").replace("  ", " "), res.stderr
    assert "-h' for help" in text
    assert not any(tmp_path.iterdir())


# ---- property: any small table either loads into valid, honest splits or is a SeqeqError ------
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_DEFECTS = [None] * 14 + ["nan", "inf", "text", "empty", "decimal-comma", "dup-time", "bad-time",
                         "label-change", "no-label", "drop-time", "drop-label", "drop-a",
                         "empty-series", "weird-label"]


@st.composite
def long_csv(draw, classes, grouped):
    """A long-format table in a random dialect, clean or with one random defect. The structure
    (size, classes, defect, dialect) is drawn by hypothesis, the numbers from a seeded RNG."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    n_series = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16]))
    rows = []
    for sid in range(n_series):
        label = classes[sid % len(classes)]
        for k in range(int(rng.integers(1, 5))):
            rows.append({"series_id": f"s{sid}", "time": k, "label": label, "subject": sid % 3,
                         "a": float(np.float32(rng.normal() * 100)), "b": int(rng.integers(-5, 6))})
    df = pd.DataFrame(rows, columns=["series_id", "time", "label", "subject", "a", "b"])
    if not grouped:  # 'subject' is detected as the group column by name
        df = df.drop(columns=["subject"])
    df = df.sample(frac=1.0, random_state=int(rng.integers(100)))  # any row order
    defect, r = draw(st.sampled_from(_DEFECTS)), int(rng.integers(len(df)))
    cell = {"nan": ("a", float("nan")), "inf": ("a", -float("inf")), "text": ("b", "abc"),
            "empty": ("b", ""), "decimal-comma": ("a", "1,5"), "bad-time": ("time", "noon"),
            "label-change": ("label", "other"), "no-label": ("label", ""),
            "weird-label": ("label", "../é/<x>")}.get(defect)
    if cell:
        df[cell[0]] = df[cell[0]].astype(object)
        df.iloc[r, df.columns.get_loc(cell[0])] = cell[1]
    elif defect == "dup-time":
        df.iloc[r, df.columns.get_loc("time")] = 0 if df.iloc[r]["time"] else 1
    elif defect and defect.startswith("drop-"):
        df = df.drop(columns=[defect[5:]])
    elif defect == "empty-series":
        df[["a", "b"]] = df[["a", "b"]].astype(object)
        df.loc[df.series_id == df.iloc[r]["series_id"], ["a", "b"]] = ""
    sep = draw(st.sampled_from([",", ";", "\t"]))
    text = df.to_csv(index=False, sep=sep, decimal="," if sep == ";" else ".")
    return ("\ufeff" if draw(st.booleans()) else "") + text


def check_splits(train, val, test, holdout: bool) -> None:
    for d in (train, val, test):
        assert d.n_series >= 1 and d.X.dtype == np.float32 and np.isfinite(d.X).all()
        assert d.lengths.min() >= 1 and d.max_len == d.lengths.max()
        assert d.class_names == train.class_names and d.channel_names == train.channel_names
        assert 0 <= d.y.min() and d.y.max() < train.n_classes
    assert train.n_classes >= 2
    # every class is trained on and validated; a hold-out of the same file also tests every
    # class, and no series is on two sides (a --test file is the user's: any classes, any ids)
    every = set(range(train.n_classes))
    assert set(np.unique(train.y)) == set(np.unique(val.y)) == every
    ids = [set(map(str, d.ids)) for d in (train, val, test)]
    assert not ids[0] & ids[1]
    if holdout:
        assert set(np.unique(test.y)) == every
        assert not (ids[0] & ids[2]) and not (ids[1] & ids[2])


@st.composite
def csv_files(draw):
    """(training text, test text or None) over one set of classes."""
    classes = draw(st.sampled_from([["a", "b"], ["a", "b", "c"], ["1", "2.0"], ["x"], ["a", "b"],
                                    ["a", "b", "c"], ["1", "2.0"], ["p", "q"]]))
    grouped = draw(st.integers(0, 3)) == 0
    return draw(long_csv(classes, grouped)), draw(st.none() | long_csv(classes, grouped))


@settings(max_examples=140, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=csv_files(), nan=st.sampled_from(["reject", "fill"]), seed=st.integers(0, 3))
def test_any_csv_gives_honest_splits_or_one_seqeq_error(files, nan, seed):
    """Through seqeq.api exactly as `seqeq fit` reads data: load (+ align a --test file), hold
    out test, split validation. Only SeqeqError may escape, on one line."""
    import tempfile

    from seqeq.api import load_data, split_validation
    from seqeq.config import DataConfig
    from seqeq.errors import SeqeqError

    text, test_text = files
    with tempfile.TemporaryDirectory() as tmp:
        path, test_path = Path(tmp) / "train.csv", None
        path.write_text(text, encoding="utf-8")
        if test_text is not None:
            test_path = Path(tmp) / "test.csv"
            test_path.write_text(test_text, encoding="utf-8")
        try:
            dc = DataConfig(path=str(path), test_path=test_path and str(test_path), nan=nan)
            train_all, test, _ = load_data(dc, seed=seed)
            train, val, how = split_validation(train_all, dc.val_frac, seed)
        except SeqeqError as e:
            assert "\n" not in str(e) and str(e).strip()
            event("SeqeqError " + str(e)[:30])
            return
    event("loaded and split: " + how.split(":")[0].split(" ")[0])
    if "grouped" in how:  # whole groups held out: a class may sit on one side only
        assert not set(train.groups) & set(val.groups)
        return
    if test_path is None:
        check_splits(train, val, test, holdout=True)
    else:
        check_splits(train, val, test, holdout=False)
