"""The built-in benchmarks: ``load_benchmark(name) -> (train, test)``.

- ``randomwalk``: the ERNN toy task, 2-D Gaussian random walks of 100 steps, step std 0.1 vs 1.0;
  800 / 200 walks (balanced) generated from ``seed``; needs no file.
- ``har2``, ``har6``: UCI HAR raw inertial signals, 128 steps x 9 channels, 2 (iRNN merge) or 6
  classes; official subject-disjoint split 7352 / 2947; ``uci_har.npz``.
- ``dsa19``: Daily and Sports Activities, 125 steps x 45 channels, 19 classes; subjects 1-4 train /
  5-8 test (4560 / 4560; the archive defines no split); ``dsa19.npz``.
- ``pixel-mnist``: MNIST pixel by pixel, 784 steps x 1 channel in [0, 1]; official 60000 / 10000;
  ``mnist.npz``. ``perm-mnist``: the same with the pixels in a fixed order
  (``np.random.RandomState(42).permutation(784)``).
- ``noisy-mnist``: the 28 image rows as 28 steps x 28 channels, then N(0, 1) noise up to T = 1000
  (iRNN paper, App. A.3); ``mnist.npz``.
- ``ucr:<Name>``: a UCR/UEA archive problem, official split; ``ucr_uea/<Name>.npz``.

Data directory (:func:`resolve_data_dir`): the ``data_dir`` argument, else ``$SEQEQ_DATA_DIR``,
else ``$XDG_CACHE_HOME/seqeq/data`` (``~/.cache/seqeq/data``). A missing file is downloaded from
its official public source and converted (see :mod:`seqeq.datasets._sources`) unless
``download=False`` or ``$SEQEQ_OFFLINE`` is set; failing that, the error names the file to put
where. Values are not normalised here (the papers z-score channels with training statistics at
train time). ``groups`` holds subject ids for har*/dsa19.

The randomwalk task follows the ERNN paper ("Validation of Proposed Method on Toy Data"):
``X_0 = 0``, ``X_t ~ N(X_{t-1}, sigma_k^2 I)`` in R^2 for t = 1..100, sigma_0 = 0.1, sigma_1 = 1.
The paper draws 10^4 walks per class; seqeq draws 400 + 100 per class so that it trains in
seconds as a smoke test. The classes differ in scale, so even a trivial model can separate them.

noisy-mnist is 6.7 GB as float32, so its ``X`` is a :class:`~seqeq.datasets.LazySeries`: only the
pixels are held, and each series' noise is drawn from its own seeded generator when read
(``data.rows(idx)``); ``seed`` picks the noise.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SeqeqError
from . import _sources
from ._dataset import SeqData
from ._lazy import NoisePadded

__all__ = [
    "BenchmarkInfo",
    "list_benchmarks",
    "load_benchmark",
    "resolve_data_dir",
    "verify_file",
    "STAGED_SHA256",
    "RANDOMWALK_SIZES",
]

#: sha256 of the staged copies (see the data README); checked by ``verify=True``.
STAGED_SHA256 = {
    "uci_har.npz": "405bfa6974cd14b6b77ecd60875965feaa48cc13caf4c02d173bee9ee0a5c9eb",
    "dsa19.npz": "d051ffdc17b9d013c2be2a60523688c36bdb9bc5674a82229f20be1fb5b5a9b7",
    "mnist.npz": "094b831e432331f1f6d6829ab9bfff4551410a81e1f816c9cce482d3e9b3ba57",
    "ucr_uea/ArrowHead.npz": "2d1cf14844852d876bbfe019032dae38ff51ecb560280e5833c0355fae8e7570",
    "ucr_uea/BasicMotions.npz": "4ea64d21ffe2332bc67d6aa6d8cfec2f49322b5f949e51d6ae984710194f1d14",
    "ucr_uea/GunPoint.npz": "5b1b26553699ac9bdf44d192353cd2634774a41ffe51fa119ce71a07bc3ca7d2",
    "ucr_uea/ItalyPowerDemand.npz":
        "94a3bf245152082552e450df46668f043a34eb586c13fca72d840753ac47a609",
    "ucr_uea/JapaneseVowels.npz":
        "ad6c8ab987005594402300383089783e1cd88b61e175093361631665a4502f9e",
}

#: (train, test) series per class of the randomwalk task
RANDOMWALK_SIZES = (400, 100)
RANDOMWALK_SIGMAS = (0.1, 1.0)
RANDOMWALK_STEPS = 100
NOISY_MNIST_T = 1000
PERM_MNIST_SEED = 42


@dataclass(frozen=True)
class BenchmarkInfo:
    name: str
    description: str
    file: str | None  # path relative to the data dir; None when generated
    present: bool  # the file is there (or none is needed)
    n_classes: int
    shape: tuple[int, int]  # (T, C): max steps, channels
    n_train: int
    n_test: int
    source: str


@dataclass(frozen=True)
class _Spec:
    description: str
    file: str | None
    n_classes: int
    shape: tuple[int, int]
    n_train: int
    n_test: int
    source: str
    split: str
    loader: Callable[..., tuple[SeqData, SeqData]]


# ---- data dir ------------------------------------------------------------------------------
def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """``data_dir`` if given, else ``$SEQEQ_DATA_DIR``, else the per-user cache
    ``$XDG_CACHE_HOME/seqeq/data`` (default ``~/.cache/seqeq/data``)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("SEQEQ_DATA_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "seqeq" / "data"


def _downloads_allowed(download: bool | None) -> bool:
    if download is not None:
        return download
    return os.environ.get("SEQEQ_OFFLINE", "").strip().lower() not in ("1", "true", "yes", "on")


def _require(rel: str, name: str, data_dir: Path, download: bool | None) -> Path:
    path = data_dir / rel
    if path.is_file():
        return path
    key = "ucr_uea/{name}.npz" if rel.startswith("ucr_uea/") else rel
    stem = Path(rel).stem
    url = _sources.URLS[key][0].format(name=stem)
    fix = (f"Put {rel} in {data_dir} (or point SEQEQ_DATA_DIR at a folder holding it); "
           f"official source: {url}")
    if rel.startswith("ucr_uea/"):
        # the archive's own files, as a user downloads them: seqeq converts them once
        archive = (_sources.local_ucr_archive(stem, data_dir / "ucr_uea")
                   or _sources.local_ucr_archive(stem, data_dir))
        if archive is not None:
            try:
                return _sources.convert_local_ucr(stem, archive, path)
            except (OSError, _sources.FetchError, zipfile.BadZipFile, ValueError) as e:
                reason = " ".join(str(e).split())[:300]
                raise SeqeqError(f"cannot convert {archive} for benchmark {name!r} ({reason})",
                                 f"Replace it with the archive's {stem}.zip from {url}"
                                 ) from None
        fix = (f"Download {url} and put {stem}.zip (or its {stem}_TRAIN/_TEST .ts or .arff "
               f"files) in {data_dir / 'ucr_uea'}: seqeq converts it (or point SEQEQ_DATA_DIR "
               "at a folder holding it)")
    if not _downloads_allowed(download):
        raise SeqeqError(f"benchmark {name!r} needs {rel}, which is not in {data_dir} "
                         "(downloads are off)", fix)
    try:
        return _sources.fetch(rel, data_dir)
    except (OSError, _sources.FetchError, zipfile.BadZipFile, ValueError) as e:
        reason = " ".join(str(e).split())[:300]
        raise SeqeqError(f"benchmark {name!r} needs {rel}, which is not in {data_dir}, and "
                         f"downloading it failed ({reason})", fix) from None


def verify_file(path: str | Path, rel: str | None = None) -> str:
    """Check a data file's sha256 against the staged checksum (or the ``.source.json`` record
    written when seqeq converted it); returns the digest, raises SeqeqError on a mismatch."""
    path = Path(path)
    digest = _sources.sha256_of(path)
    record = Path(f"{path}.source.json")
    if record.is_file():
        expected = json.loads(record.read_text()).get("sha256")
    else:
        expected = STAGED_SHA256.get(rel or path.name)
    if expected is None:
        raise SeqeqError(f"no known checksum for {path.name}",
                         "Only staged or seqeq-converted files can be verified")
    if digest != expected:
        raise SeqeqError(f"{path} has sha256 {digest[:16]}..., expected {expected[:16]}...",
                         "The file is corrupted or a different version; delete it and fetch it "
                         "again")
    return digest


def _meta(spec: _Spec, path: Path | None, name: str, **extra) -> dict:
    m = {"benchmark": name, "source": spec.source, "split": spec.split}
    if path is not None:
        m["file"] = str(path)
    m.update(extra)
    return m


# x/y/z triplets (seqeq.augment): HAR's one phone carries body_acc, body_gyro and total_acc;
# DSA-19's five units (torso, arms, legs) each carry acc, gyro and mag and turn independently
HAR_VECTORS = (((0, 1, 2), (3, 4, 5), (6, 7, 8)),)
DSA_VECTORS = tuple(tuple((u * 9 + s, u * 9 + s + 1, u * 9 + s + 2) for s in (0, 3, 6))
                    for u in range(5))


# ---- loaders -------------------------------------------------------------------------------
def _randomwalk(spec, name, data_dir, seed, download):
    rng = np.random.default_rng(seed)
    sigmas = np.array(RANDOMWALK_SIGMAS, dtype=np.float64)
    out = []
    for split, per_class in zip(("train", "test"), RANDOMWALK_SIZES, strict=True):
        y = rng.permutation(np.repeat(np.arange(2), per_class))
        steps = rng.standard_normal((len(y), RANDOMWALK_STEPS, 2)) * sigmas[y][:, None, None]
        X = np.cumsum(steps, axis=1).astype(np.float32)  # (N, 100, 2): X_1 .. X_100
        out.append(SeqData(
            X=X, lengths=np.full(len(y), RANDOMWALK_STEPS), y=y,
            class_names=[f"sigma={s}" for s in RANDOMWALK_SIGMAS], channel_names=["x", "y"],
            ids=np.arange(len(y)), name=f"{name}-{split}",
            meta=_meta(spec, None, name, seed=seed),
        ))
    return out[0], out[1]


def _har(spec, name, data_dir, seed, download):
    path = _require(spec.file, name, data_dir, download)
    d = np.load(path, allow_pickle=False)  # a data file never runs code
    two = name == "har2"
    classes = [str(c) for c in d["class2_names" if two else "class_names"]]
    out = []
    for split in ("train", "test"):
        y = d[f"y2_{split}" if two else f"y_{split}"]
        out.append(SeqData(
            X=d[f"X_{split}"], lengths=np.full(len(y), d[f"X_{split}"].shape[1]), y=y,
            class_names=classes, channel_names=[str(c) for c in d["channel_names"]],
            ids=np.arange(len(y)), groups=d[f"subject_{split}"], name=f"{name}-{split}",
            meta=_meta(spec, path, name), vectors=HAR_VECTORS,
        ))
    return out[0], out[1]


def _dsa19(spec, name, data_dir, seed, download):
    path = _require(spec.file, name, data_dir, download)
    d = np.load(path, allow_pickle=False)  # a data file never runs code
    X16, scale = d["X_int16"], d["scale"].astype(np.float32)
    subject, y = d["subject"], d["y"]
    out = []
    for split, idx in (("train", np.flatnonzero(subject <= 4)),
                       ("test", np.flatnonzero(subject >= 5))):
        X = X16[idx].astype(np.float32)
        X *= scale  # (N, 125, 45)
        out.append(SeqData(
            X=X, lengths=np.full(len(idx), X.shape[1]), y=y[idx],
            class_names=[str(c) for c in d["class_names"]],
            channel_names=[str(c) for c in d["channel_names"]],
            ids=idx.astype(np.int64), groups=subject[idx], name=f"{name}-{split}",
            meta=_meta(spec, path, name), vectors=DSA_VECTORS,
        ))
    return out[0], out[1]


def _mnist(spec, name, data_dir, seed, download):
    path = _require(spec.file, name, data_dir, download)
    d = np.load(path, allow_pickle=False)  # a data file never runs code
    perm = np.random.RandomState(PERM_MNIST_SEED).permutation(784)
    out = []
    for stream, split in enumerate(("train", "test")):
        x, y = d[f"x_{split}"], d[f"y_{split}"]  # (N, 28, 28) uint8
        extra = {}
        if name == "noisy-mnist":
            X = NoisePadded(x, NOISY_MNIST_T, seed=seed, stream=stream, scale=1 / 255)
            T, C = NOISY_MNIST_T, 28
            extra = {"seed": seed, "informative_steps": 28}
        else:
            flat = x.reshape(len(x), 784)
            if name == "perm-mnist":
                flat = flat[:, perm]
                extra = {"permutation_seed": PERM_MNIST_SEED}
            X = np.multiply(flat, np.float32(1 / 255), dtype=np.float32)[:, :, None]  # (N, 784, 1)
            T, C = 784, 1
        out.append(SeqData(
            X=X, lengths=np.full(len(y), T), y=y, class_names=[str(k) for k in range(10)],
            channel_names=["pixel"] if C == 1 else [f"col{k}" for k in range(C)],
            ids=np.arange(len(y)), name=f"{name}-{split}", meta=_meta(spec, path, name, **extra),
        ))
    return out[0], out[1]


def _ucr(spec, name, data_dir, seed, download):
    from .files import _apply_nan_policy

    path = _require(spec.file, name, data_dir, download)
    d = np.load(path, allow_pickle=False)  # a data file never runs code
    classes = [str(c) for c in d["class_names"]]
    out = []
    for split in ("train", "test"):
        X, y = d[f"X_{split}"], d[f"y_{split}"]
        key = f"lengths_{split}"
        lengths = d[key] if key in d.files else np.full(len(y), X.shape[1])
        n_missing = int((~np.isfinite(X[np.arange(X.shape[1])[None, :] < lengths[:, None]])).sum())
        ids = np.arange(len(y))
        X = _apply_nan_policy(X, lengths, "fill", ids, [], name)  # padding -> 0, gaps filled
        X = X[:, : int(lengths.max())]
        C = X.shape[2]
        out.append(SeqData(
            X=X, lengths=lengths, y=y, class_names=classes,
            channel_names=["value"] if C == 1 else [f"dim{k}" for k in range(C)],
            ids=ids, name=f"{name}-{split}",
            meta=_meta(spec, path, name, missing_values_filled=n_missing),
        ))
    return out[0], out[1]


# ---- registry ------------------------------------------------------------------------------
_HAR_SRC = ("UCI HAR (Anguita et al., ESANN 2013), raw Inertial Signals; "
            "https://archive.ics.uci.edu/dataset/240")
_MNIST_SRC = "MNIST (LeCun & Cortes), official IDX files"
_BUILTIN: dict[str, _Spec] = {
    "randomwalk": _Spec(
        "ERNN toy task: 2-D Gaussian random walks, step std 0.1 vs 1.0 (smoke test)", None, 2,
        (RANDOMWALK_STEPS, 2), 2 * RANDOMWALK_SIZES[0], 2 * RANDOMWALK_SIZES[1],
        "generated (ERNN paper, 'Validation of Proposed Method on Toy Data')",
        "800 train / 200 test walks, balanced, drawn from the seed", _randomwalk),
    "har2": _Spec(
        "UCI HAR, 2 classes (iRNN merge), 9 inertial channels", "uci_har.npz", 2, (128, 9), 7352,
        2947, _HAR_SRC, "official subject-disjoint split (21 / 9 subjects)", _har),
    "har6": _Spec(
        "UCI HAR, 6 activities, 9 inertial channels", "uci_har.npz", 6, (128, 9), 7352, 2947,
        _HAR_SRC, "official subject-disjoint split (21 / 9 subjects)", _har),
    "dsa19": _Spec(
        "Daily and Sports Activities, 19 activities, 45 channels", "dsa19.npz", 19, (125, 45),
        4560, 4560,
        "DSA (Altun, Barshan & Tuncel 2010); https://archive.ics.uci.edu/dataset/256",
        "subjects 1-4 train / 5-8 test (subject-disjoint; the papers' 4560/4560 sizes)", _dsa19),
    "pixel-mnist": _Spec(
        "MNIST pixel by pixel, 784 steps x 1", "mnist.npz", 10, (784, 1), 60000, 10000,
        _MNIST_SRC, "official 60000 / 10000", _mnist),
    "perm-mnist": _Spec(
        "MNIST pixels in a fixed random order (numpy seed 42)", "mnist.npz", 10, (784, 1), 60000,
        10000, _MNIST_SRC, "official 60000 / 10000", _mnist),
    "noisy-mnist": _Spec(
        "MNIST rows (28 x 28) then N(0,1) noise to 1000 steps (iRNN App. A.3; lazy X)",
        "mnist.npz", 10, (NOISY_MNIST_T, 28), 60000, 10000, _MNIST_SRC,
        "official 60000 / 10000", _mnist),
}
_ALIASES = {"har": "har6", "dsa": "dsa19", "random-walk": "randomwalk", "mnist": "pixel-mnist",
            "permuted-mnist": "perm-mnist", "sequential-mnist": "pixel-mnist"}


def _ucr_spec(name: str, path: Path) -> _Spec:
    if name in _sources.UCR_SIZES:
        n_tr, n_te, T, C, k = _sources.UCR_SIZES[name]
    elif path.is_file():
        n_tr, n_te, T, C, k = _npz_sizes(path)
    else:
        n_tr = n_te = T = C = k = 0
    return _Spec(
        f"UCR/UEA archive problem {name}", f"ucr_uea/{name}.npz", k, (T, C), n_tr, n_te,
        f"UCR/UEA archive, {name}_TRAIN.ts / {name}_TEST.ts; "
        f"https://timeseriesclassification.com", "official archive train/test split", _ucr)


def _npz_sizes(path: Path) -> tuple[int, int, int, int, int]:
    """(n_train, n_test, T, C, n_classes) from the .npy headers only (no decompression of X)."""
    shapes = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for key in ("X_train", "X_test", "class_names"):
                with zf.open(f"{key}.npy") as f:
                    major, _ = np.lib.format.read_magic(f)
                    read = (np.lib.format.read_array_header_1_0 if major == 1
                            else np.lib.format.read_array_header_2_0)
                    shapes[key] = read(f)[0]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return 0, 0, 0, 0, 0
    (n_tr, T, C), (n_te, _, _) = shapes["X_train"], shapes["X_test"]
    return n_tr, n_te, T, C, shapes["class_names"][0]


def _ucr_dir_names(data_dir: Path) -> dict[str, str]:
    """lower-case name -> name, for the known problems and every ``ucr_uea/*.npz`` present."""
    names = {n.lower(): n for n in _sources.UCR_SIZES}
    folder = data_dir / "ucr_uea"
    if folder.is_dir():
        for p in folder.glob("*.npz"):
            names.setdefault(p.stem.lower(), p.stem)
        for p in folder.glob("*.zip"):  # the archive's downloads, converted when first used
            names.setdefault(p.stem.lower(), p.stem)
    return names


def _spec_for(name: str, data_dir: Path) -> tuple[str, _Spec]:
    key = re.sub(r"[\s_]+", "-", name.strip().lower())
    key = _ALIASES.get(key, key)
    if key in _BUILTIN:
        return key, _BUILTIN[key]
    if key.startswith(("ucr:", "uea:")):
        raw = name.strip()[4:].strip()
        if not re.fullmatch(r"\w+", raw):
            raise SeqeqError(f"{raw!r} is not a UCR/UEA problem name",
                             "Use ucr:<Name>, e.g. ucr:GunPoint")
        canon = _ucr_dir_names(data_dir).get(raw.lower(), raw)
        return f"ucr:{canon}", _ucr_spec(canon, data_dir / "ucr_uea" / f"{canon}.npz")
    choices = list(_BUILTIN) + [f"ucr:{n}" for n in _ucr_dir_names(data_dir).values()]
    close = difflib.get_close_matches(key, choices, n=1)
    raise SeqeqError(
        f"unknown benchmark {name!r}",
        (f"Did you mean {close[0]!r}? " if close else "")
        + f"Choose one of: {', '.join(choices)} (or ucr:<Name> for any UCR/UEA problem)",
    )


# ---- public API ----------------------------------------------------------------------------
def list_benchmarks(data_dir: str | Path | None = None) -> list[BenchmarkInfo]:
    """Every built-in benchmark plus ``ucr:<Name>`` for the known and present UCR/UEA files."""
    d = resolve_data_dir(data_dir)
    specs = list(_BUILTIN.items())
    specs += [(f"ucr:{n}", _ucr_spec(n, d / "ucr_uea" / f"{n}.npz"))
              for n in sorted(_ucr_dir_names(d).values(), key=str.lower)]
    return [
        BenchmarkInfo(name=n, description=s.description, file=s.file,
                      present=s.file is None or (d / s.file).is_file() or (
                          n.startswith("ucr:") and (
                              _sources.local_ucr_archive(n[4:], d / "ucr_uea") is not None
                              or _sources.local_ucr_archive(n[4:], d) is not None)),
                      n_classes=s.n_classes,
                      shape=s.shape, n_train=s.n_train, n_test=s.n_test, source=s.source)
        for n, s in specs
    ]


def load_benchmark(
    name: str,
    data_dir: str | Path | None = None,
    seed: int = 0,
    *,
    download: bool | None = None,
    verify: bool = False,
) -> tuple[SeqData, SeqData]:
    """Load benchmark ``name`` as ``(train, test)``.

    ``seed`` drives the generated parts only (randomwalk walks, noisy-mnist noise).
    ``download``: fetch a missing file from its official source (default: yes unless
    ``$SEQEQ_OFFLINE`` is set). ``verify``: check the file's sha256 first (slow for dsa19).
    """
    d = resolve_data_dir(data_dir)
    key, spec = _spec_for(name, d)
    if verify and spec.file is not None:
        verify_file(_require(spec.file, key, d, download), spec.file)
    try:
        return spec.loader(spec, key, d, seed, download)
    except SeqeqError:
        raise
    except (OSError, EOFError, KeyError, ValueError, TypeError, IndexError,
            zipfile.BadZipFile) as e:  # a damaged, truncated or foreign file (object arrays too)
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        where = d / spec.file if spec.file else "its data"
        raise SeqeqError(f"benchmark {key!r}: cannot read {where} ({type(e).__name__}: "
                         f"{reason})", "The file is damaged or not in seqeq's format; replace it "
                         "with a fresh copy (or delete it to download it again)") from None
