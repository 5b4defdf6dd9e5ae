"""Official sources of the built-in benchmarks: download and conversion to the data-dir layout.

Each ``convert_*`` function reads an archive in its original public layout -- a directory, a
``.zip`` (zips nested inside zips are opened too) or loose files -- and returns the arrays of the
seqeq ``.npz`` file; each ``check_*`` function compares a converted result with the published sizes
and class counts. :func:`fetch` downloads an archive (``urllib``, with a timeout), converts it,
checks it and writes the ``.npz`` atomically next to a ``<file>.source.json`` record (URL and the
sha256 of the written file). Nothing here runs unless a benchmark file is missing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import struct
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = [
    "URLS",
    "FetchError",
    "download",
    "fetch",
    "convert_uci_har",
    "convert_dsa19",
    "convert_mnist",
    "convert_ucr",
    "parse_arff",
    "parse_archive_file",
    "local_ucr_archive",
    "convert_local_ucr",
    "parse_ts",
    "check_uci_har",
    "check_dsa19",
    "check_mnist",
    "check_ucr",
    "sha256_of",
]

#: Where each data-dir file comes from (tried in order); ``{name}`` is a UCR/UEA problem name.
URLS: dict[str, list[str]] = {
    "uci_har.npz": [
        "https://archive.ics.uci.edu/static/public/240/human+activity+recognition+using+smartphones.zip",
        "https://archive.ics.uci.edu/ml/machine-learning-databases/00240/UCI%20HAR%20Dataset.zip",
    ],
    "dsa19.npz": [
        "https://archive.ics.uci.edu/static/public/256/daily+and+sports+activities.zip",
        "https://archive.ics.uci.edu/ml/machine-learning-databases/00256/data.zip",
    ],
    # folders holding the four gzipped IDX files
    "mnist.npz": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "ucr_uea/{name}.npz": ["https://timeseriesclassification.com/aeon-toolkit/{name}.zip"],
}
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

HAR_CHANNELS = ("body_acc_x", "body_acc_y", "body_acc_z", "body_gyro_x", "body_gyro_y",
                "body_gyro_z", "total_acc_x", "total_acc_y", "total_acc_z")
HAR_CLASSES = ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING",
               "LAYING")
# HAR-2 (iRNN paper, App. A): 0 = {SITTING, LAYING, WALKING_UPSTAIRS}, 1 = the other three
HAR2_CLASSES = ("SITTING+LAYING+WALKING_UPSTAIRS", "STANDING+WALKING+WALKING_DOWNSTAIRS")
HAR2_OF_HAR6 = np.array([1, 0, 1, 0, 1, 0], dtype=np.int64)

DSA_CLASSES = (
    "sitting", "standing", "lying on back", "lying on right side", "ascending stairs",
    "descending stairs", "standing in an elevator still", "moving around in an elevator",
    "walking in a parking lot", "walking on a treadmill 4 km/h flat",
    "walking on a treadmill 4 km/h 15 deg inclined", "running on a treadmill 8 km/h",
    "exercising on a stepper", "exercising on a cross trainer",
    "cycling on an exercise bike horizontal", "cycling on an exercise bike vertical", "rowing",
    "jumping", "playing basketball",
)
DSA_CHANNELS = tuple(f"{unit}_{axis}{sensor}" for unit in ("T", "RA", "LA", "RL", "LL")
                     for sensor in ("acc", "gyro", "mag") for axis in "xyz")

# published sizes: (n_train, n_test, per-class train counts, per-class test counts)
HAR_COUNTS = (7352, 2947, (1226, 1073, 986, 1286, 1374, 1407), (496, 471, 420, 491, 532, 537))
MNIST_COUNTS = (60000, 10000,
                (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
                (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009))
# name: (n_train, n_test, T, C, n_classes)
UCR_SIZES = {
    "ArrowHead": (36, 175, 251, 1, 3),
    "BasicMotions": (40, 40, 100, 6, 4),
    "GunPoint": (50, 150, 150, 1, 2),
    "ItalyPowerDemand": (67, 1029, 24, 1, 2),
    "JapaneseVowels": (270, 370, 29, 12, 9),
}


class FetchError(Exception):
    """A download or conversion failed; the message says why (turned into a SeqeqError)."""


# ---- reading archives ----------------------------------------------------------------------
def _tree(src: Path) -> dict[str, Callable[[], bytes]]:
    """Every file under ``src`` (a directory, a zip, or a single file): path -> byte reader.
    Zips inside zips (the UCI HAR download) are opened too, under ``outer.zip/``."""
    src = Path(src)
    out: dict[str, Callable[[], bytes]] = {}
    if src.is_dir():
        for p in sorted(src.rglob("*")):
            if p.is_file():
                rel = p.relative_to(src).as_posix()
                if p.suffix.lower() == ".zip":
                    for k, v in _zip_tree(zipfile.ZipFile(p)).items():
                        out[f"{rel}/{k}"] = v
                else:
                    out[rel] = p.read_bytes
    elif zipfile.is_zipfile(src):
        out = _zip_tree(zipfile.ZipFile(src))
    else:
        out[src.name] = src.read_bytes
    return out


def _zip_tree(zf: zipfile.ZipFile) -> dict[str, Callable[[], bytes]]:
    out: dict[str, Callable[[], bytes]] = {}
    for info in zf.infolist():
        if info.is_dir() or "__MACOSX/" in info.filename:
            continue
        if info.filename.lower().endswith(".zip"):
            inner = zipfile.ZipFile(io.BytesIO(zf.read(info)))
            for k, v in _zip_tree(inner).items():
                out[f"{info.filename}/{k}"] = v
        else:
            out[info.filename] = (lambda i=info: zf.read(i))
    return out


def _find(tree: dict[str, Callable[[], bytes]], pattern: str) -> dict[str, re.Match]:
    rx = re.compile(pattern, re.IGNORECASE)
    return {k: m for k in tree if (m := rx.search(k))}


def _text(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # some copies of the HAR labels are UTF-16
        return raw.decode("utf-16")
    return raw.decode("utf-8-sig")


def _numbers(raw: bytes) -> np.ndarray:
    return np.array(_text(raw).replace(",", " ").split(), dtype=np.float64)


# ---- UCI HAR -------------------------------------------------------------------------------
def convert_uci_har(src: Path) -> dict[str, np.ndarray]:
    """``UCI HAR Dataset/{train,test}/Inertial Signals/<signal>_<split>.txt`` (128 values per
    row), ``y_<split>.txt`` (1..6) and ``subject_<split>.txt`` -> the ``uci_har.npz`` arrays."""
    tree = _tree(src)
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        def one(fname: str, split=split) -> bytes:
            hits = _find(tree, rf"(^|/){split}/(Inertial Signals/)?{re.escape(fname)}$")
            if not hits:
                raise FetchError(f"{split}/{fname} not found in the UCI HAR archive")
            return tree[sorted(hits)[0]]()

        y = _numbers(one(f"y_{split}.txt")).astype(np.int64)
        subject = _numbers(one(f"subject_{split}.txt")).astype(np.int64)
        if len(y) != len(subject):
            raise FetchError(f"{split}: {len(y)} labels but {len(subject)} subject ids")
        if len(y) == 0 or y.min() < 1 or y.max() > 6:
            raise FetchError(f"{split}: activity labels must be 1..6")
        chans = []
        for sig in HAR_CHANNELS:
            v = _numbers(one(f"{sig}_{split}.txt"))
            if v.size != len(y) * 128:
                raise FetchError(f"{split}/{sig}: {v.size} values, expected {len(y)} x 128")
            chans.append(v.reshape(len(y), 128))
        out[f"X_{split}"] = np.stack(chans, axis=2).astype(np.float32)  # (N, 128, 9)
        out[f"y_{split}"] = y - 1
        out[f"y2_{split}"] = HAR2_OF_HAR6[y - 1]
        out[f"subject_{split}"] = subject
    out["channel_names"] = np.array(HAR_CHANNELS)
    out["class_names"] = np.array(HAR_CLASSES)
    out["class2_names"] = np.array(HAR2_CLASSES)
    return out


def _check_counts(what: str, y: np.ndarray, expected: tuple[int, ...]) -> None:
    got = tuple(np.bincount(y, minlength=len(expected)).tolist())
    if got != tuple(expected):
        raise FetchError(f"{what}: class counts {got}, expected {tuple(expected)}")


def check_uci_har(a: dict[str, np.ndarray]) -> None:
    n_tr, n_te, c_tr, c_te = HAR_COUNTS
    if a["X_train"].shape != (n_tr, 128, 9) or a["X_test"].shape != (n_te, 128, 9):
        raise FetchError(f"UCI HAR shapes {a['X_train'].shape}/{a['X_test'].shape}, expected "
                         f"({n_tr}, 128, 9)/({n_te}, 128, 9)")
    _check_counts("UCI HAR train", a["y_train"], c_tr)
    _check_counts("UCI HAR test", a["y_test"], c_te)


# ---- DSA-19 --------------------------------------------------------------------------------
def convert_dsa19(src: Path) -> dict[str, np.ndarray]:
    """``data/aNN/pM/sKK.txt`` (125 rows x 45 comma-separated values) -> the ``dsa19.npz``
    arrays: rows sorted by (activity, subject, segment), each channel quantised to int16 with
    ``scale = max|x| / 32767`` (``X = X_int16 * scale``; error at most ``scale / 2``)."""
    tree = _tree(src)
    hits = _find(tree, r"(^|/)a(\d+)/p(\d+)/s(\d+)\.txt$")
    if not hits:
        raise FetchError("no a??/p?/s??.txt files in the DSA archive")
    keys = sorted(hits, key=lambda k: tuple(int(hits[k].group(g)) for g in (2, 3, 4)))
    segs = []
    for k in keys:
        v = _numbers(tree[k]())
        if v.size % 45:
            raise FetchError(f"{k}: {v.size} values is not a multiple of 45 channels")
        segs.append(v.reshape(-1, 45))
    lens = {len(s) for s in segs}
    if len(lens) != 1:
        raise FetchError(f"DSA segments have different lengths {sorted(lens)}")
    X = np.stack(segs)  # (N, T, 45) float64
    scale = np.abs(X).max(axis=(0, 1)) / 32767.0
    scale = np.where(scale > 0, scale, 1.0)
    return {
        "X_int16": np.round(X / scale).astype(np.int16),
        "scale": scale,
        "y": np.array([int(hits[k].group(2)) - 1 for k in keys], dtype=np.int64),
        "subject": np.array([int(hits[k].group(3)) for k in keys], dtype=np.int64),
        "segment": np.array([int(hits[k].group(4)) for k in keys], dtype=np.int64),
        "channel_names": np.array(DSA_CHANNELS),
        "class_names": np.array(DSA_CLASSES),
    }


def check_dsa19(a: dict[str, np.ndarray]) -> None:
    if a["X_int16"].shape != (9120, 125, 45):
        raise FetchError(f"DSA shape {a['X_int16'].shape}, expected (9120, 125, 45)")
    _check_counts("DSA activities", a["y"], (480,) * 19)
    _check_counts("DSA subjects", a["subject"] - 1, (1140,) * 8)


# ---- MNIST ---------------------------------------------------------------------------------
def _idx(raw: bytes) -> np.ndarray:
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 8 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise FetchError("not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise FetchError(f"IDX file holds {data.size} bytes for shape {dims}")
    return data.reshape(dims)


def convert_mnist(src: Path) -> dict[str, np.ndarray]:
    """The four IDX files (``{train,t10k}-{images,labels}-idx?-ubyte``, gzipped or not; the
    dot-separated ``images.idx3-ubyte`` spelling too) -> the ``mnist.npz`` arrays."""
    tree = _tree(src)
    out = {}
    for split, tag in (("train", "train"), ("test", "t10k")):
        for kind, key in (("images", "x"), ("labels", "y")):
            hits = _find(tree, rf"(^|/){tag}-{kind}[-.]idx\d-ubyte(\.gz)?$")
            if not hits:
                raise FetchError(f"{tag}-{kind} IDX file not found")
            arr = _idx(tree[sorted(hits)[0]]())
            out[f"{key}_{split}"] = arr.astype(np.int64) if key == "y" else arr
    for split in ("train", "test"):
        x, y = out[f"x_{split}"], out[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or len(x) != len(y):
            raise FetchError(f"MNIST {split}: images {x.shape}, labels {y.shape}")
    return out


def check_mnist(a: dict[str, np.ndarray]) -> None:
    n_tr, n_te, c_tr, c_te = MNIST_COUNTS
    if len(a["x_train"]) != n_tr or len(a["x_test"]) != n_te:
        raise FetchError(f"MNIST sizes {len(a['x_train'])}/{len(a['x_test'])}, expected "
                         f"{n_tr}/{n_te}")
    _check_counts("MNIST train", a["y_train"], c_tr)
    _check_counts("MNIST test", a["y_test"], c_te)


# ---- UCR/UEA .ts ---------------------------------------------------------------------------
def parse_ts(text: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str], dict]:
    """Parse a sktime/aeon ``.ts`` classification file.

    Returns ``X (n, T, C)`` float32 NaN-padded at the end, ``lengths (n,)``, the label strings,
    the declared class labels (``@classLabel true ...``, in declaration order) and the header.
    Missing values (``?``, ``NaN``) become NaN.
    """
    header: dict[str, str] = {}
    classes: list[str] = []
    rows: list[list[np.ndarray]] = []
    labels: list[str] = []
    in_data = False
    for ln, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise FetchError(f"line {ln}: expected an @-header line before @data")
            key, _, rest = line[1:].partition(" ")
            key = key.lower()
            if key == "data":
                in_data = True
                continue
            header[key] = rest.strip()
            if key == "timestamps" and rest.strip().lower() == "true":
                raise FetchError(".ts files with time stamps are not supported")
            if key == "classlabel":
                parts = rest.split()
                if not parts or parts[0].lower() != "true":
                    raise FetchError("the .ts file has no class labels (@classLabel false)")
                classes = parts[1:]
            continue
        parts = line.split(":")
        if len(parts) < 2:
            raise FetchError(f"line {ln}: expected dimensions and a label separated by ':'")
        labels.append(parts[-1].strip())
        dims = []
        for d in parts[:-1]:
            vals = [v.strip() for v in d.split(",")] if d.strip() else []
            dims.append(np.array([np.nan if v in ("?", "NaN", "nan", "") else float(v)
                                  for v in vals], dtype=np.float64))
        rows.append(dims)
    if not in_data:
        raise FetchError("no @data section in the .ts file")
    if not rows:
        raise FetchError("the .ts file has no series")
    C = {len(r) for r in rows}
    if len(C) != 1:
        raise FetchError(f"series have different numbers of dimensions {sorted(C)}")
    C = C.pop()
    lengths = np.array([max(len(d) for d in r) for r in rows], dtype=np.int64)
    X = np.full((len(rows), int(lengths.max()), C), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        for c, d in enumerate(r):
            X[i, : len(d), c] = d
    return X, lengths, labels, classes, header


def _arff_value(v: str) -> float:
    v = v.strip().strip("'\"")
    return np.nan if v in ("?", "NaN", "nan", "") else float(v)


def _split_arff_row(line: str) -> list[str]:
    """The fields of an ARFF data row: commas outside quotes separate them."""
    out, cur, quote = [], [], None
    for ch in line:
        if quote:
            if ch == quote:
                quote = None
            else:
                cur.append(ch)
        elif ch in "'\"":
            quote = ch
        elif ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if quote:
        raise FetchError("an unclosed quote in a data row")
    out.append("".join(cur))
    return [f.strip() for f in out]


def parse_arff(text: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str], dict]:
    """Parse a UCR/UEA ``.arff`` classification file, as :func:`parse_ts` returns it.

    Univariate: one numeric attribute per time step, then the nominal class attribute (trailing
    ``?`` make a series shorter). Multivariate (UEA): one ``relational`` attribute whose value is
    a quoted block of ``C`` lines (``\\n``-separated), each one channel's values, then the class.
    """
    header: dict[str, str] = {"relation": ""}
    attrs: list[tuple[str, str]] = []  # (name, type) of the top-level attributes
    depth, in_data = 0, False
    rows: list[list[np.ndarray]] = []
    labels: list[str] = []
    for ln, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        if not in_data:
            low = line.lower()
            if low.startswith("@relation"):
                header["relation"] = line[9:].strip()
            elif low.startswith("@attribute"):
                rest = line[10:].strip()
                m = re.match(r"""('[^']*'|"[^"]*"|\S+)\s+(.*)$""", rest)
                if not m:
                    raise FetchError(f"line {ln}: cannot read the @attribute line")
                if depth == 0:
                    attrs.append((m.group(1).strip("'\""), m.group(2).strip()))
                if m.group(2).strip().lower().startswith("relational"):
                    depth += 1
            elif low.startswith("@end"):
                depth -= 1
            elif low.startswith("@data"):
                in_data = True
            else:
                raise FetchError(f"line {ln}: expected an @-header line before @data")
            continue
        fields = _split_arff_row(line)
        if len(fields) != len(attrs):
            raise FetchError(f"line {ln}: {len(fields)} values for {len(attrs)} attributes")
        labels.append(fields[-1].strip("'\""))
        if len(attrs) == 2 and attrs[0][1].lower().startswith("relational"):
            block = fields[0].replace("\\n", "\n").split("\n")
            dims = [np.array([_arff_value(v) for v in b.split(",")], dtype=np.float64)
                    for b in block if b.strip()]
        else:
            dims = [np.array([_arff_value(v) for v in fields[:-1]], dtype=np.float64)]
        # trailing missing values are padding (unequal lengths), not gaps
        n = max(int(np.max(np.nonzero(~np.isnan(d))[0], initial=-1)) + 1 for d in dims)
        rows.append([d[:n] for d in dims])
    if not in_data:
        raise FetchError("no @data section in the .arff file")
    if not rows:
        raise FetchError("the .arff file has no series")
    cls = attrs[-1][1]
    classes = ([c.strip().strip("'\"") for c in cls[cls.index("{") + 1: cls.rindex("}")]
                .split(",")] if "{" in cls and "}" in cls else [])
    C = {len(r) for r in rows}
    if len(C) != 1:
        raise FetchError(f"series have different numbers of dimensions {sorted(C)}")
    C = C.pop()
    lengths = np.array([max(len(d) for d in r) for r in rows], dtype=np.int64)
    if lengths.min() < 1:
        raise FetchError("a series has no values")
    X = np.full((len(rows), int(lengths.max()), C), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        for c, d in enumerate(r):
            X[i, : len(d), c] = d
    return X, lengths, labels, classes, header


def parse_archive_file(name: str, text: str):
    """A ``.ts`` or ``.arff`` file's series, by its extension."""
    return parse_arff(text) if name.lower().endswith(".arff") else parse_ts(text)


def convert_ucr(src: Path, name: str) -> dict[str, np.ndarray]:
    """``<Name>_TRAIN.ts`` and ``<Name>_TEST.ts`` (or the ``.arff`` pair) -> the
    ``ucr_uea/<Name>.npz`` arrays (official split; labels encoded in the declared class order;
    ``lengths_*`` when lengths differ). ``src``: the archive's zip, a folder, or one file of the
    pair (its partner beside it)."""
    src = Path(src)
    tree = _tree(src.parent if src.is_file() and not zipfile.is_zipfile(src) else src)
    out: dict[str, np.ndarray] = {}
    parsed = {}
    for split in ("TRAIN", "TEST"):
        hits = (_find(tree, rf"(^|/){re.escape(name)}_{split}\.ts$")
                or _find(tree, rf"(^|/){re.escape(name)}_{split}\.arff$"))
        if not hits:
            raise FetchError(f"{name}_{split}.ts (or .arff) not found in {src.name}")
        first = sorted(hits)[0]
        parsed[split] = parse_archive_file(first, _text(tree[first]()))
    classes = parsed["TRAIN"][3] or sorted(set(parsed["TRAIN"][2]))
    index = {c: i for i, c in enumerate(classes)}
    unequal = any(len(set(p[1].tolist())) > 1 for p in parsed.values())
    T = max(p[0].shape[1] for p in parsed.values())
    for split, (X, lengths, labels, _, _) in parsed.items():
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise FetchError(f"{split} labels {unknown} are not declared in @classLabel")
        s = split.lower()
        out[f"X_{s}"] = np.pad(X, ((0, 0), (0, T - X.shape[1]), (0, 0)), constant_values=np.nan)
        out[f"y_{s}"] = np.array([index[lab] for lab in labels], dtype=np.int64)
        if unequal:
            out[f"lengths_{s}"] = lengths
    out["class_names"] = np.array(classes)
    return out


def local_ucr_archive(name: str, folder: Path) -> Path | None:
    """An archive of UCR/UEA problem ``name`` a user put in ``folder`` (the data dir's
    ``ucr_uea/``, or the data dir itself): ``<Name>.zip`` as downloaded, a ``<Name>/`` folder
    or the ``<Name>_TRAIN``/``_TEST`` ``.ts``/``.arff`` files. None: none there."""
    for d in (folder, folder / name):
        if not d.is_dir():
            continue
        for cand in (d / f"{name}.zip", *(d / f"{name}_TRAIN{e}" for e in (".ts", ".arff"))):
            if cand.is_file():
                return cand
    return None


def convert_local_ucr(name: str, archive: Path, dest: Path) -> Path:
    """Convert a user's copy of the archive's files into ``dest`` (``ucr_uea/<Name>.npz``),
    checked as a download is; its record names the file it came from."""
    arrays = convert_ucr(archive, name)
    check_ucr(name, arrays)
    _save_npz(arrays, dest, f"file://{Path(archive).resolve()}")
    return dest


def check_ucr(name: str, a: dict[str, np.ndarray]) -> None:
    n_tr, n_te = len(a["y_train"]), len(a["y_test"])
    if a["X_train"].shape[2] != a["X_test"].shape[2]:
        raise FetchError(f"{name}: train and test have different channel counts")
    if len(a["class_names"]) < 2:
        raise FetchError(f"{name}: fewer than two classes")
    if name in UCR_SIZES:
        want = UCR_SIZES[name]
        got = (n_tr, n_te, a["X_train"].shape[1], a["X_train"].shape[2], len(a["class_names"]))
        if got != want:
            raise FetchError(f"{name}: (train, test, T, C, classes) = {got}, expected {want}")


# ---- download + cache ----------------------------------------------------------------------
def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, timeout: float = 60.0, sha256: str | None = None) -> Path:
    """Stream ``url`` to ``dest`` (via a temporary file); check ``sha256`` when given."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    req = urllib.request.Request(url, headers={"User-Agent": "seqeq-datasets"})
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r, os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
        if sha256 is not None and sha256_of(Path(tmp)) != sha256:
            raise FetchError(f"{url}: sha256 mismatch (download corrupted?)")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _save_npz(arrays: dict[str, np.ndarray], dest: Path, url: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".npz", dir=dest.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        digest = sha256_of(Path(tmp))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    record = {"url": url, "sha256": digest, "converted_by": "seqeq"}
    Path(f"{dest}.source.json").write_text(json.dumps(record, indent=2) + "\n")


def fetch(rel: str, data_dir: Path, timeout: float = 60.0) -> Path:
    """Download the official archive for ``rel`` (``uci_har.npz``, ``dsa19.npz``, ``mnist.npz``
    or ``ucr_uea/<Name>.npz``), convert and check it, and store ``data_dir/rel``.

    Raises :class:`FetchError` (or an ``OSError`` from ``urllib``) when that fails.
    """
    data_dir = Path(data_dir)
    dest = data_dir / rel
    m = re.fullmatch(r"ucr_uea/(\w+)\.npz", rel)
    if m:
        name = m.group(1)
        urls = [u.format(name=name) for u in URLS["ucr_uea/{name}.npz"]]

        def convert(src):
            return convert_ucr(src, name)

        def check(arrays):
            return check_ucr(name, arrays)
    elif rel in ("uci_har.npz", "dsa19.npz", "mnist.npz"):
        urls = URLS[rel]
        convert, check = {
            "uci_har.npz": (convert_uci_har, check_uci_har),
            "dsa19.npz": (convert_dsa19, check_dsa19),
            "mnist.npz": (convert_mnist, check_mnist),
        }[rel]
    else:
        raise FetchError(f"no known source for {rel}")
    errors = []
    for url in urls:
        work = Path(tempfile.mkdtemp(prefix=".seqeq-download-", dir=_writable(data_dir)))
        try:
            if rel == "mnist.npz":  # a folder of four files
                for f in MNIST_FILES:
                    download(url + f, work / f, timeout)
                src = work
            else:
                src = download(url, work / url.rsplit("/", 1)[-1].split("?")[0], timeout)
            arrays = convert(src)
            check(arrays)
            _save_npz(arrays, dest, url)
            return dest
        except (OSError, FetchError, zipfile.BadZipFile, ValueError) as e:
            errors.append(f"{url}: {e}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    raise FetchError("; ".join(errors))


def _writable(data_dir: Path) -> Path:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FetchError(f"cannot create {data_dir} ({e.strerror or e})") from None
    if not os.access(data_dir, os.W_OK):
        raise FetchError(f"{data_dir} is not writable")
    return data_dir
