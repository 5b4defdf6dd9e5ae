"""The UCR/UEA archive's own files: .ts and .arff read as data files, and a downloaded
<Name>.zip (or its .ts/.arff pair) converted by seqeq for `seqeq bench ucr:<Name>`."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from seqeq.datasets import load_benchmark, load_file
from seqeq.datasets._sources import parse_arff, parse_ts
from seqeq.errors import SeqeqError

# two series per class; the second of class b is one step shorter (trailing missing value)
SERIES = [([1.0, 2.0, 3.0, 4.0], "a"), ([1.5, 2.5, 3.5, 4.5], "a"),
          ([4.0, 3.0, 2.0, 1.0], "b"), ([4.5, 3.5, 2.5], "b")]
MULTI = [([[1, 2, 3], [0, 0, 1]], "up"), ([[1, 2, 4], [0, 1, 1]], "up"),
         ([[3, 2, 1], [1, 0, 0]], "down"), ([[4, 2, 1], [1, 1, 0]], "down")]


def ts_text(series=SERIES) -> str:
    rows = "\n".join(",".join(map(str, v)) + f":{lab}" for v, lab in series)
    return ("@problemName Toy\n@timeStamps false\n@univariate true\n@equalLength false\n"
            "@classLabel true a b\n@data\n" + rows + "\n")


def arff_text(series=SERIES) -> str:
    T = max(len(v) for v, _ in series)
    attrs = "\n".join(f"@attribute att{k} numeric" for k in range(T))
    rows = "\n".join(",".join(map(str, v + ["?"] * (T - len(v)))) + f",{lab}" for v, lab in series)
    return f"@relation Toy\n{attrs}\n@attribute target {{a,b}}\n\n@data\n{rows}\n"


def multi_arff_text() -> str:
    rows = "\n".join("'" + "\\n".join(",".join(map(str, ch)) for ch in v) + f"',{lab}"
                     for v, lab in MULTI)
    return ("@relation Toy2\n@attribute relationalAtt relational\n@attribute t0 numeric\n"
            "@attribute t1 numeric\n@attribute t2 numeric\n@end relationalAtt\n"
            "@attribute activity {up,down}\n@data\n" + rows + "\n")


def multi_ts_text() -> str:
    rows = "\n".join(":".join(",".join(map(str, ch)) for ch in v) + f":{lab}" for v, lab in MULTI)
    return ("@problemName Toy2\n@timeStamps false\n@univariate false\n@dimensions 2\n"
            "@classLabel true up down\n@data\n" + rows + "\n")


def test_arff_reads_as_the_ts_of_the_same_series():
    for a, t in ((parse_arff(arff_text()), parse_ts(ts_text())),
                 (parse_arff(multi_arff_text()), parse_ts(multi_ts_text()))):
        np.testing.assert_array_equal(a[1], t[1])  # lengths (the short series is short)
        np.testing.assert_allclose(a[0], t[0], equal_nan=True)
        assert a[2] == t[2] and a[3] == t[3]
    X, lengths, *_ = parse_arff(arff_text())
    assert lengths.tolist() == [4, 4, 4, 3] and X.shape == (4, 4, 1)
    X, lengths, *_ = parse_arff(multi_arff_text())
    assert X.shape == (4, 3, 2) and X[3, 0].tolist() == [4, 1]


@pytest.mark.parametrize("ext,text", [(".ts", ts_text), (".arff", arff_text)])
def test_ts_and_arff_files_read_as_data_files(tmp_path, ext, text):
    (tmp_path / f"Toy_TRAIN{ext}").write_text(text())
    d = load_file(tmp_path / f"Toy_TRAIN{ext}")
    assert d.class_names == ["a", "b"] and d.y.tolist() == [0, 0, 1, 1]
    assert d.lengths.tolist() == [4, 4, 4, 3] and d.X[3, 3, 0] == 0.0  # padding, not a value
    assert d.X[2, :, 0].tolist() == [4.0, 3.0, 2.0, 1.0] and d.channel_names == ["value"]
    # a test file is encoded in the training classes; unknown labels are named
    (tmp_path / f"T{ext}").write_text(text([([1.0, 2.0], "b"), ([1.0, 2.0], "a")]))
    assert load_file(tmp_path / f"T{ext}", class_names=["a", "b"]).y.tolist() == [1, 0]
    with pytest.raises(SeqeqError, match="not training classes"):
        load_file(tmp_path / f"T{ext}", class_names=["a", "c"])


def test_a_damaged_archive_file_is_one_clear_error(tmp_path):
    (tmp_path / "bad.arff").write_text("@relation x\n@attribute a numeric\n@data\n1,2,3\n")
    with pytest.raises(SeqeqError, match=r"cannot read bad\.arff .*3 values for 1 attributes"):
        load_file(tmp_path / "bad.arff")


@pytest.mark.parametrize("how", ["zip", "ts", "arff", "folder"])
def test_bench_converts_the_archives_own_files_in_the_data_dir(tmp_path, monkeypatch, how):
    monkeypatch.setenv("SEQEQ_OFFLINE", "1")  # never downloads: the user's copy is converted
    folder = tmp_path / "ucr_uea"
    folder.mkdir()
    files = {"Toy_TRAIN": SERIES, "Toy_TEST": SERIES[::-1]}
    ext = ".arff" if how == "arff" else ".ts"
    write = arff_text if how == "arff" else ts_text
    if how == "zip":
        with zipfile.ZipFile(folder / "Toy.zip", "w") as z:
            for stem, s in files.items():
                z.writestr(f"{stem}{ext}", write(s))
    else:
        where = folder / "Toy" if how == "folder" else folder
        where.mkdir(exist_ok=True)
        for stem, s in files.items():
            (where / f"{stem}{ext}").write_text(write(s))
    train, test = load_benchmark("ucr:Toy", data_dir=tmp_path)
    assert train.n_series == 4 and test.y.tolist() == [1, 1, 0, 0]
    assert train.lengths.tolist() == [4, 4, 4, 3]
    record = json.loads((folder / "Toy.npz.source.json").read_text())
    assert record["url"].startswith("file://") and record["converted_by"] == "seqeq"
    # the converted file is what later runs read
    if how == "zip":
        (folder / "Toy.zip").unlink()
    assert load_benchmark("ucr:Toy", data_dir=tmp_path)[0].n_series == 4


def test_a_missing_ucr_problem_says_to_put_the_archives_zip_there(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQEQ_OFFLINE", "1")
    with pytest.raises(SeqeqError) as e:
        load_benchmark("ucr:Toy", data_dir=tmp_path)
    msg = str(e.value) + " " + getattr(e.value, "fix", "")
    assert "Toy.zip" in msg and ".arff" in msg and "converts" in msg


def test_the_archive_files_aeon_ships_read_as_the_staged_data(staged):
    aeon = pytest.importorskip("aeon", reason="aeon (the bench extra) ships the archive files")
    from pathlib import Path

    root = Path(aeon.__file__).parent / "datasets" / "data"
    for name in ("ArrowHead", "BasicMotions"):
        train, _ = load_benchmark(f"ucr:{name}", data_dir=staged(f"ucr_uea/{name}.npz").parents[1])
        for ext in (".ts", ".arff"):
            path = root / name / f"{name}_TRAIN{ext}"
            if not path.is_file():
                pytest.skip(f"aeon has no {path.name}")
            d = load_file(path)
            np.testing.assert_allclose(d.X, train.X, atol=1e-6)
            assert [d.class_names[k] for k in d.y] == [train.class_names[k] for k in train.y]
