"""User-file ingestion: layouts round-trip, real data survives the trip, every user mistake gives
one clear SeqeqError line, and ``seqeq.datasets`` never needs torch."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqeq.datasets import (
    NoisePadded,
    SeqData,
    align_test,
    from_dataframe,
    load_file,
    save_file,
    sort_class_names,
)
from seqeq.errors import SeqeqError

REPO = Path(__file__).resolve().parents[1]


def small_data(labelled: bool = True) -> SeqData:
    """5 series, 2 channels, lengths 1..5, string ids/labels, groups."""
    rng = np.random.default_rng(0)
    lengths = np.array([3, 5, 1, 4, 2])
    X = np.zeros((5, 5, 2), np.float32)
    for i, n in enumerate(lengths):
        X[i, :n] = rng.normal(size=(n, 2)).astype(np.float32)
    return SeqData(X=X, lengths=lengths, y=np.array([0, 1, 2, 1, 0]) if labelled else None,
                   class_names=["cat", "dog", "eel"] if labelled else [],
                   channel_names=["acc", "gyro"], ids=np.array(["s1", "s2", "s3", "s4", "s5"]),
                   groups=np.array([1, 1, 2, 2, 3]))


def assert_same(a: SeqData, b: SeqData, channels: bool = True) -> None:
    np.testing.assert_array_equal(a.lengths, b.lengths)
    T = int(a.lengths.max())
    np.testing.assert_array_equal(a.X[:, :T], b.X[:, :T])
    assert a.max_len == T  # no padding column nobody uses
    if b.y is None:
        assert a.y is None
    else:
        np.testing.assert_array_equal(a.y, b.y)
        assert a.class_names == b.class_names
    if channels:
        assert a.channel_names == b.channel_names


# ---- layouts round-trip --------------------------------------------------------------------
@pytest.mark.parametrize("layout,ext", [("long", "csv"), ("long", "parquet"), ("wide", "csv"),
                                        ("wide", "parquet"), ("nested", "parquet")])
def test_round_trip(tmp_path, layout, ext):
    data = small_data()
    if layout == "wide":
        data = data.subset(np.arange(5))
        data.X, data.channel_names = data.X[:, :, :1], ["value"]
    path = save_file(data, tmp_path / f"d.{ext}", layout)
    back = load_file(path)
    assert back.meta["layout"] == layout
    assert_same(back, data)
    assert [str(i) for i in back.ids] == ["s1", "s2", "s3", "s4", "s5"]
    assert back.groups.tolist() == [1, 1, 2, 2, 3]


def test_unlabelled_round_trip(tmp_path):
    data = small_data(labelled=False)
    back = load_file(save_file(data, tmp_path / "u.csv"), require_labels=False)
    assert back.y is None and back.class_names == []
    assert_same(back, data)
    with pytest.raises(SeqeqError, match="no label column"):
        load_file(tmp_path / "u.csv")


@pytest.fixture(scope="module")
def vowels(staged):
    d = np.load(staged("ucr_uea/JapaneseVowels.npz"))
    X, L = d["X_train"], d["lengths_train"]
    X = np.where(np.arange(X.shape[1])[None, :, None] < L[:, None, None], X, 0)
    return SeqData(X=X, lengths=L, y=d["y_train"], class_names=list(d["class_names"]),
                   channel_names=[f"lpc{k}" for k in range(12)]), d


@pytest.mark.parametrize("layout,ext", [("long", "csv"), ("nested", "parquet"), ("wide", "csv")])
def test_japanese_vowels_files(tmp_path, vowels, layout, ext):
    data, d = vowels
    if layout == "wide":  # wide is univariate: the first coefficient
        data = SeqData(X=data.X[:, :, :1], lengths=data.lengths, y=data.y,
                       class_names=data.class_names, channel_names=["value"])
    back = load_file(save_file(data, tmp_path / f"jv.{ext}", layout))
    assert back.n_series == 270 and back.n_channels == data.n_channels
    np.testing.assert_array_equal(back.lengths, d["lengths_train"])
    assert back.lengths.min() == 7 and back.max_len == int(d["lengths_train"].max())
    np.testing.assert_array_equal(back.y, d["y_train"])
    assert back.class_names == [str(c) for c in d["class_names"]]
    ref = d["X_train"][:, : back.max_len, : back.n_channels]
    inside = np.arange(back.max_len)[None, :] < back.lengths[:, None]
    np.testing.assert_array_equal(back.X[inside], ref[inside])
    assert not back.X[~inside].any()  # zero padding


# ---- CSV dialects and label handling --------------------------------------------------------
def write(tmp_path: Path, text: str | bytes, name: str = "d.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return p


LONG = "series_id,time,x,label\na,0,1.0,up\na,1,2.0,up\nb,0,3.0,down\nb,1,4.0,down\nb,2,5.0,down\n"


@pytest.mark.parametrize("name,raw", [
    ("bom.csv", b"\xef\xbb\xbf" + LONG.encode()),
    ("semi.csv", LONG.replace(",", ";").encode()),
    ("semi_decimal_comma.csv", LONG.replace(",", ";").replace(".", ",").encode()),
    ("bom_semi.csv", b"\xef\xbb\xbf" + LONG.replace(",", ";").encode()),
    ("tabs.tsv", LONG.replace(",", "\t").encode()),
    ("tabs_in_csv.csv", LONG.replace(",", "\t").encode()),
    ("crlf.csv", LONG.replace("\n", "\r\n").encode()),
    ("utf16.csv", LONG.encode("utf-16")),
])
def test_csv_dialects(tmp_path, name, raw):
    d = load_file(write(tmp_path, raw, name))
    assert d.channel_names == ["x"] and d.meta["columns"]["id"] == "series_id"
    assert d.class_names == ["down", "up"]
    np.testing.assert_array_equal(d.lengths, [2, 3])
    np.testing.assert_array_equal(d.X[:, :, 0], [[1, 2, 0], [3, 4, 5]])
    np.testing.assert_array_equal(d.y, [1, 0])


def test_long_sorted_by_time_and_first_appearance(tmp_path):
    p = write(tmp_path, "id,t,v,y\nz,2,30,1\nz,0,10,1\nq,5,7,0\nz,1,20,1\nq,4,6,0\n")
    d = load_file(p)
    assert d.ids.tolist() == ["z", "q"]
    np.testing.assert_array_equal(d.X[0, :, 0], [10, 20, 30])
    np.testing.assert_array_equal(d.X[1, :2, 0], [6, 7])


def test_pandas_index_column_is_not_a_channel(tmp_path):
    df = pd.DataFrame({"id": [1, 1, 2], "v": [1.0, 2.0, 3.0], "label": ["a", "a", "b"]})
    df.to_csv(tmp_path / "i.csv")  # index=True writes an 'Unnamed: 0' column
    d = load_file(tmp_path / "i.csv")
    assert d.channel_names == ["v"] and d.meta["dropped_columns"] == ["Unnamed: 0"]


def test_datetime_time_column(tmp_path):
    p = write(tmp_path, "id,timestamp,v,label\n1,2024-01-01 00:00:02,3,a\n1,2024-01-01 00:00:01,2,a"
                        "\n2,2024-01-01,5,b\n")
    d = load_file(p)
    np.testing.assert_array_equal(d.X[0, :, 0], [2, 3])


def test_label_order_and_mapping(tmp_path):
    wide = "label,t0,t1\n10,1,2\n2,3,4\n1,5,6\n2.0,7,8\n"
    d = load_file(write(tmp_path, wide))
    assert d.class_names == ["1", "2", "10"]  # numeric order, 2.0 == 2
    np.testing.assert_array_equal(d.y, [2, 1, 0, 1])
    assert sort_class_names(["a10", "a2", "b1"]) == ["a2", "a10", "b1"]
    assert sort_class_names(["-1", "0.5", "10", "9"]) == ["-1", "0.5", "9", "10"]
    test = load_file(write(tmp_path, "label,t0\n10,1\n1,2\n", "test.csv"),
                     class_names=d.class_names)
    np.testing.assert_array_equal(test.y, [2, 0])
    assert test.class_names == ["1", "2", "10"]


def test_nan_fill(tmp_path):
    p = write(tmp_path, "id,t,a,b,y\n1,0,,1,w\n1,1,2,,w\n1,2,,,w\n1,3,4,5,w\n2,0,,,x\n2,1,,3,x\n")
    with pytest.raises(SeqeqError, match=r"NaN/inf values .*series 1 at step 0, channel 'a'"):
        load_file(p)
    d = load_file(p, nan="fill")
    np.testing.assert_array_equal(d.X[0], [[2, 1], [2, 1], [2, 1], [4, 5]])
    np.testing.assert_array_equal(d.X[1, :2], [[0, 3], [0, 3]])  # all-NaN channel -> 0


def test_wide_nan_tail_is_length(tmp_path):
    d = load_file(write(tmp_path, "y,s0,s1,s2\na,1,2,\nb,1,,\na,1,2,3\n"))
    np.testing.assert_array_equal(d.lengths, [2, 1, 3])


def test_nested_matrix_column(tmp_path):
    df = pd.DataFrame({"label": ["a", "b"],
                       "imu": [[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 1.0]]]})
    df.to_parquet(tmp_path / "m.parquet")
    d = load_file(tmp_path / "m.parquet")
    assert d.channel_names == ["imu_0", "imu_1"] and d.lengths.tolist() == [2, 3]
    np.testing.assert_array_equal(d.X[1, 2], [9, 1])


def test_align_test_reorders_channels_and_maps_labels():
    train = small_data()
    test = SeqData(X=train.X[:2, :, ::-1], lengths=train.lengths[:2], y=np.array([1, 0]),
                   class_names=["cat", "eel"], channel_names=["gyro", "acc"])
    out = align_test(train, test)
    assert out.channel_names == ["acc", "gyro"] and out.class_names == train.class_names
    np.testing.assert_array_equal(out.X, train.X[:2])
    np.testing.assert_array_equal(out.y, [2, 0])


# ---- the error matrix ------------------------------------------------------------------------
def _parquet(tmp_path, df, name="d.parquet"):
    p = tmp_path / name
    df.to_parquet(p)
    return p


def _corrupt_parquet(tmp_path):
    p = _parquet(tmp_path, pd.DataFrame({"id": [1, 2], "label": ["a", "b"], "v": [1.0, 2.0]}))
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    return p


def _bad_test_labels(tmp_path):
    p = write(tmp_path, "label,t0\ncat,1\nbird,2\nfish,3\n")
    return lambda: load_file(p, class_names=["cat", "dog"])


def _channel_mismatch(tmp_path):
    train = small_data()
    test = SeqData(X=train.X[:, :, :1], lengths=train.lengths, y=None, class_names=[],
                   channel_names=["pressure"])
    return lambda: align_test(train, test)


ERRORS = {
    "missing file": (lambda t: t / "nope.csv", {}, ["does not exist"]),
    "unknown extension": (lambda t: write(t, LONG, "d.xlsx"), {}, ["extension", "'.xlsx'"]),
    "unknown fmt": (lambda t: write(t, LONG), {"fmt": "excel"}, ["unknown file format"]),
    "empty file": (lambda t: write(t, b""), {}, ["is empty"]),
    "blank file": (lambda t: write(t, b"\xef\xbb\xbf\n \n"), {}, ["is empty"]),
    "header only": (lambda t: write(t, "id,time,x,label\n"), {}, ["no data rows"]),
    "empty parquet": (lambda t: _parquet(t, pd.DataFrame({"label": [], "t0": []})), {},
                      ["no data rows"]),
    "no label column": (lambda t: write(t, "id,t,x,lable\n1,0,1,a\n1,1,2,a\n"), {},
                        ["no label column", "'lable'", "label_col"]),
    "label_col typo": (lambda t: write(t, LONG), {"label_col": "labl"},
                       ["'labl' is not in the file", "'label'"]),
    "empty label column": (lambda t: write(t, "id,t,x,label\n1,0,1,\n1,1,2,\n"), {},
                           ["label column 'label'", "is empty"]),
    "single class": (lambda t: write(t, "label,t0,t1\na,1,2\na,3,4\n"), {}, ["single class 'a'"]),
    "non-numeric channel": (lambda t: write(t, "id,t,x,label\n1,0,1,a\n1,1,oops,a\n2,0,3,b\n"),
                            {}, ["column 'x'", "not numeric", "'oops'"]),
    "nan rejected": (lambda t: write(t, "id,t,x,label\n1,0,1,a\n1,1,nan,a\n2,0,3,b\n"), {},
                     ["1 NaN/inf", "series 1 at step 1", "nan='fill'"]),
    "inf rejected": (lambda t: write(t, "label,t0,t1\na,1,inf\nb,-inf,2\n"), {},
                     ["2 NaN/inf", "series 0 at step 1"]),
    "bad nan policy": (lambda t: write(t, LONG), {"nan": "drop"}, ["unknown NaN policy"]),
    "bad layout": (lambda t: write(t, LONG), {"layout": "tall"}, ["unknown layout"]),
    "length 0 wide": (lambda t: write(t, "id,label,t0,t1\n7,a,1,2\n8,b,,\n"), {},
                      ["series 8", "length 0"]),
    "length 0 nested": (lambda t: _parquet(t, pd.DataFrame(
        {"label": ["a", "b"], "v": [[1.0, 2.0], []]})), {}, ["series 1", "length 0"]),
    "duplicated time": (lambda t: write(t, "id,time,x,label\n1,0,1,a\n1,0,2,a\n2,0,3,b\n"), {},
                        ["duplicated time stamp 0", "series 1"]),
    "label changes": (lambda t: write(t, "id,time,x,label\n1,0,1,a\n1,1,2,b\n2,0,3,b\n"), {},
                      ["label", "changes within series 1"]),
    "group changes": (lambda t: write(
        t, "id,time,x,label,subject\n1,0,1,a,s1\n1,1,2,a,s2\n2,0,3,b,s1\n"), {},
        ["group", "changes within series 1"]),
    "missing labels": (lambda t: write(t, "id,t,x,label\n1,0,1,a\n1,1,2,\n2,0,3,b\n"), {},
                       ["1 rows", "no label"]),
    "missing ids": (lambda t: write(t, "id,t,x,label\n1,0,1,a\n,1,2,a\n2,0,3,b\n"), {},
                    ["no series id"]),
    "bad time values": (lambda t: write(t, "id,t,x,label\n1,0,1,a\n1,soon,2,a\n2,0,3,b\n"), {},
                        ["time column 't'", "'soon'"]),
    "long without id": (lambda t: write(t, "time,x,label\n0,1,a\n1,2,b\n"), {},
                        ["no series id column", "id_col"]),
    "wide duplicate ids": (lambda t: write(t, "id,label,t0\n1,a,1\n1,b,2\n"), {"layout": "wide"},
                           ["series id 1 appears on several rows"]),
    "mixed channel counts": (lambda t: _parquet(t, pd.DataFrame(
        {"label": ["a", "b"], "imu": [[[1.0, 2.0]], [[1.0, 2.0, 3.0]]]})), {},
        ["mixed channel counts", "'imu'"]),
    "ragged steps": (lambda t: _parquet(t, pd.DataFrame(
        {"label": ["a", "b"], "imu": [[[1.0, 2.0], [1.0]], [[1.0, 2.0]]]})), {},
        ["mixed channel counts"]),
    "nested unequal channels": (lambda t: _parquet(t, pd.DataFrame(
        {"label": ["a", "b"], "u": [[1.0, 2.0], [1.0]], "v": [[1.0], [2.0]]})), {},
        ["different lengths", "u: 2, v: 1"]),
    "nested missing channel": (lambda t: _parquet(t, pd.DataFrame(
        {"label": ["a", "b"], "u": [[1.0, 2.0], None]})), {}, ["no values in channel 'u'"]),
    "nested stray column": (lambda t: _parquet(t, pd.DataFrame(
        {"label": ["a", "b"], "age": [3, 4], "u": [[1.0], [2.0]]})), {},
        ["'age'", "neither list"]),
    "corrupted parquet": (_corrupt_parquet, {}, ["not a readable Parquet file"]),
    "not utf-8": (lambda t: write(t, "id,t,x,label\n1,0,1,caf\xe9\n".encode("latin-1") * 1),
                  {}, ["not UTF-8"]),
    "ragged csv": (lambda t: write(t, "id,t,x,label\n1,0,1,a\n1,1,2,a,extra,more\n"), {},
                   ["1 row(s) of d.csv have more fields than its header (4", "line 3 has 6",
                    "Remove the extra fields"]),
    "two roles": (lambda t: write(t, LONG), {"id_col": "x", "label_col": "x"}, ["two roles"]),
    "unknown test labels": (_bad_test_labels, None, ["2 label(s)", "'bird'", "'fish'"]),
    "channel mismatch": (_channel_mismatch, None,
                         ["test channels [pressure]", "training channels [acc, gyro]"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors(tmp_path, case):
    build, kwargs, expected = ERRORS[case]
    made = build(tmp_path)
    with pytest.raises(SeqeqError) as info:
        made() if kwargs is None else load_file(made, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and info.value.fix, msg  # one line, problem + fix
    for part in expected:
        assert part in msg, f"{part!r} not in {msg!r}"


# ---- property: any small table loads or fails with a SeqeqError ------------------------------
CELLS = {
    "int": st.integers(-3, 3),
    "float": st.sampled_from([0.5, -1.25, 2.0, float("nan"), float("inf"), 0.0]),
    "str": st.sampled_from(["a", "b", "1", "2.5", "", "x y"]),
    "mixed": st.one_of(st.none(), st.integers(0, 2), st.sampled_from(["a", "b", "1,5"])),
    "list": st.one_of(st.none(), st.lists(st.sampled_from([0.0, 1.5, float("nan")]), max_size=3)),
}
NAMES = ["series_id", "id", "time", "t", "label", "y", "group", "subject", "a", "b", "t0"]


@st.composite
def tables(draw):
    n = draw(st.integers(0, 6))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
    cols = {}
    for c in names:
        kind = draw(st.sampled_from(list(CELLS)))
        cols[c] = pd.Series(draw(st.lists(CELLS[kind], min_size=n, max_size=n)), dtype=object)
        if kind in ("int", "float") and n:
            cols[c] = cols[c].astype(float)
    return pd.DataFrame(cols) if cols else pd.DataFrame()


@st.composite
def long_tables(draw):
    """Mostly well-formed long tables, with an occasional defect (duplicate step, changing label,
    NaN/inf, stray string) so both the valid path and the checks get exercised."""
    rows = []
    for sid in range(draw(st.integers(1, 4))):
        label = draw(st.sampled_from(["a", "b", "1"]))
        for k in range(draw(st.integers(1, 4))):
            rows.append({
                "series_id": f"s{sid}",
                "time": draw(st.sampled_from([k, k, k, k, 0])),
                "label": draw(st.sampled_from([label] * 6 + ["b"])),
                "x": draw(st.sampled_from([0.5, -1.0, 2.0, 3.5, float("nan")])),
                "z": draw(st.sampled_from([1.0, -2.0, 0.0, 1.5, -0.5, 4.0, float("inf"), "?"])),
            })
    df = pd.DataFrame(rows)
    drop = draw(st.sampled_from([None, None, "time", "z", "label"]))
    return df.drop(columns=[drop]) if drop else df


def check_valid(d: SeqData, require_labels: bool = True) -> None:
    assert d.X.dtype == np.float32 and d.X.ndim == 3 and np.isfinite(d.X).all()
    assert len(d.lengths) == d.n_series > 0 and d.lengths.min() >= 1
    assert d.lengths.max() == d.max_len
    assert not d.X[np.arange(d.max_len)[None, :] >= d.lengths[:, None]].any()
    assert len(d.ids) == d.n_series and len(d.channel_names) == d.n_channels
    if d.y is not None:
        assert d.y.min() >= 0 and d.y.max() < d.n_classes
        assert len(set(d.class_names)) == d.n_classes >= (2 if require_labels else 1)
    if d.groups is not None:
        assert len(d.groups) == d.n_series


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=st.one_of(tables(), long_tables()), fmt=st.sampled_from(["csv", "parquet"]),
       layout=st.sampled_from([None, None, "long", "wide", "nested"]),
       nan=st.sampled_from(["reject", "fill"]), require=st.booleans())
def test_any_table_loads_or_raises_seqeq_error(df, fmt, layout, nan, require):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d.{fmt}"
        try:
            if fmt == "csv":
                df.to_csv(path, index=False)
            else:
                df.to_parquet(path, index=False)
        except (ValueError, TypeError, ImportError, ArithmeticError) as e:
            if fmt == "csv":
                raise
            path = Path(tmp) / "d.csv"  # pyarrow refuses mixed object columns: use CSV
            df.to_csv(path, index=False)
            assert e is not None
        try:
            d = load_file(path, layout=layout, nan=nan, require_labels=require)
        except SeqeqError as e:
            assert "\n" not in str(e)
            return
        check_valid(d, require)


def test_labels_optional_when_not_required(tmp_path):
    one_class = write(tmp_path, "id,t,x,label\n1,0,1,a\n1,1,2,a\n2,0,3,a\n")
    d = load_file(one_class, require_labels=False)  # e.g. predicting on one class of series
    assert d.class_names == ["a"] and d.y.tolist() == [0, 0]
    partial = write(tmp_path, "id,t,x,label\n1,0,1,a\n1,1,2,a\n2,0,3,\n", "p.csv")
    d = load_file(partial, require_labels=False)
    assert d.y is None and d.channel_names == ["x"]
    assert d.meta["ignored_label_column"] == "label"


def test_from_dataframe_matches_file(tmp_path):
    df = pd.DataFrame({"id": [1, 1, 2], "v": [1.0, 2.0, 3.0], "label": ["a", "a", "b"]})
    d = from_dataframe(df, name="mem")
    assert d.meta["layout"] == "long" and d.lengths.tolist() == [2, 1]


# ---- SeqData extensions: lazy arrays, chunked stats -----------------------------------------
def test_channel_stats_chunked_equals_direct():
    d = small_data()
    mean, std = d.channel_stats(chunk=2)
    vals = d.X[np.arange(d.max_len)[None, :] < d.lengths[:, None]]
    np.testing.assert_allclose(mean, vals.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, vals.std(0), rtol=1e-5)


def test_noise_padded_lazy_rows():
    sig = np.arange(4 * 2 * 3, dtype=np.uint8).reshape(4, 2, 3)
    X = NoisePadded(sig, 6, seed=1, stream=0, scale=0.5)
    assert X.shape == (4, 6, 3) and len(X) == 4
    full = np.asarray(X)
    np.testing.assert_array_equal(full[:, :2], sig * 0.5)
    np.testing.assert_array_equal(X[[2, 0]], full[[2, 0]])  # a row is the same however read
    np.testing.assert_array_equal(X[1:3, :4], full[1:3, :4])
    np.testing.assert_array_equal(X[3], full[3])
    np.testing.assert_array_equal(X.take([3, 1])[1], full[1])
    assert not np.array_equal(full[0, 2:], full[1, 2:])
    assert not np.array_equal(full, np.asarray(NoisePadded(sig, 6, seed=2, stream=0)) * 1.0)
    d = SeqData(X=X, lengths=np.full(4, 6), y=np.array([0, 1, 0, 1]), class_names=["a", "b"],
                channel_names=["c0", "c1", "c2"])
    assert d.is_lazy and d.subset([1, 2]).is_lazy
    np.testing.assert_array_equal(d.subset([1, 2]).rows([1]), full[[2]])
    eager = d.materialize()
    np.testing.assert_allclose(d.channel_stats(chunk=3)[0], eager.channel_stats()[0], rtol=1e-6)
    with pytest.raises(IndexError):
        X[4]


def test_datasets_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import pandas as pd\n"
            "import seqeq.datasets as d\n"
            "df = pd.DataFrame({'id': [1, 1, 2], 'v': [1.0, 2.0, 3.0], 'label': ['a', 'a', 'b']})\n"
            "assert d.from_dataframe(df).lengths.tolist() == [2, 1]\n"
            "assert not [m for m in sys.modules if m.startswith('torch') and sys.modules[m]]\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_fingerprint_follows_every_part_of_the_data():
    """A resumed search compares fingerprints: equal data agree, and a change to any of values,
    labels, lengths, groups, classes or channels is seen."""
    from seqeq.datasets import SeqData

    def make(**kw):
        args = dict(X=np.arange(24, dtype=np.float32).reshape(3, 4, 2), lengths=[4, 4, 3],
                    y=[0, 1, 0], class_names=["a", "b"], channel_names=["x", "y"],
                    groups=np.array(["s1", "s2", "s1"], dtype=object))
        return SeqData(**{**args, **kw})

    base = make().fingerprint()
    assert make().fingerprint() == base
    X = np.arange(24, dtype=np.float32).reshape(3, 4, 2)
    X[2, 1, 0] += 0.5
    changed = [make(X=X), make(y=[0, 1, 1]), make(lengths=[4, 3, 3]),
               make(groups=np.array(["s1", "s2", "s3"], dtype=object)), make(groups=None),
               make(class_names=["a", "c"]), make(channel_names=["x", "z"])]
    digests = [d.fingerprint() for d in changed]
    assert base not in digests and len(set(digests)) == len(digests)


# ---- read as the file means it (issue 18) ----------------------------------------------------
def test_quoted_thousands_in_a_comma_csv_are_read_as_thousands(tmp_path):
    """'8,302' in a comma-delimited file was read as 8.302: the stored channel mean was 5.47
    where the data's is about 5,000."""
    rows = ["series_id,time,power,label"]
    vals = ["8,302", "12,044", "1,000.5", "950", "3,001", "7,777"]
    for i, v in enumerate(vals):
        rows.append(f'{i // 2},{i % 2},"{v}",{"ab"[i // 2 % 2]}')
    p = tmp_path / "d.csv"
    p.write_text("\n".join(rows) + "\n")
    d = load_file(p)
    want = [8302, 12044, 1000.5, 950, 3001, 7777]
    got = [d.X[i // 2, i % 2, 0] for i in range(6)]
    np.testing.assert_array_equal(got, np.float32(want))
    assert d.meta["decimal"] == "."
    mean, _ = d.channel_stats()
    assert mean[0] == pytest.approx(np.mean(want), rel=1e-6)


def test_decimal_comma_file_with_dot_thousands(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("id;t;x;label\n1;0;1.234,5;a\n1;1;0,25;a\n2;0;7;b\n2;1;-3,5;b\n")
    d = load_file(p)
    np.testing.assert_array_equal(d.X[:, :, 0], np.float32([[1234.5, 0.25], [7, -3.5]]))
    assert d.meta["decimal"] == ","


def test_an_ambiguous_file_reads_as_the_decimal_option_says(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("id;t;x;label\n1;0;1,234;a\n1;1;5,678;a\n2;0;2,000;b\n2;1;3;b\n")
    with pytest.raises(SeqeqError, match="read as 1234 if ',' separates thousands"):
        load_file(p)
    np.testing.assert_array_equal(load_file(p, decimal=".").X[0, :, 0], [1234, 5678])
    np.testing.assert_array_equal(load_file(p, decimal=",").X[0, :, 0], np.float32([1.234,
                                                                                    5.678]))


def test_ids_and_labels_are_text_as_written(tmp_path):
    """'007' and '7' are two series (pandas read both as 7); 'NA' and 'None' are labels (pandas
    read them as missing); missing-value words in a channel are NaN."""
    p = tmp_path / "d.csv"
    p.write_text("series_id,time,x,label\n007,0,1,NA\n007,1,2,NA\n7,0,3,None\n7,1,NA,None\n")
    d = load_file(p, nan="fill")
    assert list(d.ids) == ["007", "7"] and d.class_names == ["NA", "None"]
    np.testing.assert_array_equal(d.X[:, :, 0], [[1, 2], [3, 3]])  # the 'NA' value filled


@pytest.mark.parametrize("ext", ["csv.gz", "csv.bz2", "csv.xz", "csv.zip", "tsv.gz"])
def test_compressed_csv(tmp_path, ext):
    import bz2
    import gzip
    import lzma
    import zipfile

    data = small_data()
    plain = save_file(data, tmp_path / ("p.tsv" if ext.startswith("tsv") else "p.csv"))
    raw = plain.read_bytes()
    p = tmp_path / f"d.{ext}"
    if ext.endswith("zip"):
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("d.csv", raw)
    else:
        p.write_bytes({"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[
            ext.rsplit(".", 1)[1]](raw))
    assert_same(load_file(p), data)


def test_a_compressed_file_that_is_not_is_refused(tmp_path):
    p = tmp_path / "d.csv.gz"
    p.write_bytes(b"series_id,time,a,label\n1,0,1,a\n")
    with pytest.raises(SeqeqError, match="cannot decompress d.csv.gz"):
        load_file(p)


_LABEL_POOL = ["walk", "run", "NA", "None", "null", "n/a", "sit down", "a;b", "a,b", 'say "hi"',
               "é", "007", "7", "-1", "0", "2.5", "x", "1e3"]
_ID_STYLES = ["int", "text", "zero-padded"]


@st.composite
def written_tables(draw):
    """(frame as written, per-series truth) in a random layout: the values are float32 numbers
    (exact in text), ints, labels and ids that pandas would guess wrong."""
    layout = draw(st.sampled_from(["long", "wide", "nested"]))
    n = draw(st.integers(2, 7))
    labels = draw(st.lists(st.sampled_from(_LABEL_POOL), min_size=2, max_size=4, unique=True))
    id_style = draw(st.sampled_from(_ID_STYLES))
    C = 1 if layout == "wide" else draw(st.integers(1, 3))
    num = st.floats(allow_nan=False, allow_infinity=False, width=32, min_value=-1e6,
                    max_value=1e6) | st.integers(-5000, 5000).map(float)
    truth = []
    for i in range(n):
        T = draw(st.integers(1, 5))
        X = np.array([[draw(num) for _ in range(C)] for _ in range(T)], dtype=np.float32)
        sid = {"int": i * 3, "text": f"s{i}", "zero-padded": f"{i:03d}"}[id_style]
        truth.append({"id": sid, "label": labels[i % len(labels)], "X": X})
    chans = [f"ch{j}" for j in range(C)]
    if layout == "long":
        rows = [{"series_id": s["id"], "time": t, "label": s["label"],
                 **{c: float(s["X"][t, j]) for j, c in enumerate(chans)}}
                for s in truth for t in range(len(s["X"]))]
        df = pd.DataFrame(rows).sample(frac=1.0, random_state=draw(st.integers(0, 99)))
    elif layout == "wide":
        T = max(len(s["X"]) for s in truth)
        df = pd.DataFrame([{"series_id": s["id"], "label": s["label"],
                            **{f"t{k}": float(s["X"][k, 0]) if k < len(s["X"]) else np.nan
                               for k in range(T)}} for s in truth])
    else:
        df = pd.DataFrame([{"series_id": s["id"], "label": s["label"],
                            **{c: s["X"][:, j].astype(np.float64).tolist()
                               for j, c in enumerate(chans)}} for s in truth])
    return layout, df, truth, chans


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=written_tables(), how=st.sampled_from(["minimal", "all", "nonnumeric", "parquet"]),
       sep=st.sampled_from([",", ";", "\t"]))
def test_what_seqeq_reads_equals_what_was_written(table, how, sep):
    """Any valid frame, written through CSV (any quoting, ',' decimals in a ';' file) or
    Parquet, reads back value for value: every series, its length, its float32 values, its
    label text and its id. A ';' file whose comma numbers all read two ways may be refused, and
    then reads right with the decimal mark given."""
    import csv

    layout, df, truth, chans = table
    if layout == "nested":
        how = "parquet"
    with tempfile.TemporaryDirectory() as tmp:
        if how == "parquet":
            path = Path(tmp) / "d.parquet"
            df.to_parquet(path, index=False)
        else:
            path = Path(tmp) / "d.csv"
            quoting = {"minimal": csv.QUOTE_MINIMAL, "all": csv.QUOTE_ALL,
                       "nonnumeric": csv.QUOTE_NONNUMERIC}[how]
            df.to_csv(path, index=False, sep=sep, quoting=quoting,
                      decimal="," if sep == ";" else ".")
        try:
            d = load_file(path)
        except SeqeqError as e:
            assert sep == ";" and "if ',' separates thousands" in str(e), str(e)
            d = load_file(path, decimal=",")
    assert d.n_series == len(truth) and d.channel_names == (chans if layout != "wide"
                                                             else ["value"])
    by_id = {str(i): k for k, i in enumerate(d.ids)}
    for s in truth:
        k = by_id[str(s["id"])]
        T = len(s["X"])
        assert d.lengths[k] == T
        np.testing.assert_array_equal(d.X[k, :T], s["X"])
        assert d.class_names[d.y[k]] == s["label"]


def test_a_time_column_of_non_iso_dates_is_refused_not_guessed(tmp_path):
    """'01/02/2024' is 1 February or 2 January: the order of steps would be a guess."""
    p = write(tmp_path, "id,timestamp,v,label\n1,01/02/2024,3,a\n1,02/01/2024,2,a\n"
                        "2,03/01/2024,5,b\n")
    with pytest.raises(SeqeqError, match="'01/02/2024', neither a number nor an ISO 8601 date"):
        load_file(p)


@pytest.mark.parametrize("layout", ["long", "wide", "nested"])
def test_the_format_option_is_the_layout(tmp_path, layout):
    """`--format long|wide|nested` names the layout (it was passed as the file format)."""
    from seqeq.api import load_data
    from seqeq.config import DataConfig

    data = small_data()
    if layout == "wide":
        data = data.subset(np.arange(5))
        data = SeqData(X=data.X[:, :, :1], lengths=data.lengths, y=data.y,
                       class_names=data.class_names, channel_names=["acc"], ids=data.ids)
    ext = "parquet" if layout == "nested" else "csv"
    path = save_file(data, tmp_path / f"d.{ext}", layout)
    train, test, _ = load_data(DataConfig(path=str(path), test_path=str(path), fmt=layout))
    assert train.meta["layout"] == layout
    assert_same(train, data, channels=layout != "wide")


def test_a_delimiter_closing_every_line_and_padded_ids(tmp_path):
    p = write(tmp_path, "id,t,x,label,\ns1 ,0,1,a,\n s1,1,2,a,\ns2,0,3,b,\ns2,1,4,b,\n")
    d = load_file(p)
    assert d.channel_names == ["x"] and list(d.ids) == ["s1", "s2"]
    np.testing.assert_array_equal(d.X[:, :, 0], [[1, 2], [3, 4]])
    assert d.meta["dropped_columns"] == ["Unnamed: 4"]
