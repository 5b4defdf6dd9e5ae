"""Read user files (CSV, Parquet) into :class:`SeqData`, and write them back.

Three layouts, detected from the columns (``layout=`` overrides):

* **long** -- one row per time step: a series id column, an optional time/order column (rows are
  sorted by it within each series), one numeric column per channel, and a label (and optional
  group) column that is constant within a series.
* **wide** -- one row per series: a label column plus one column per time step of a univariate
  series, in column order; trailing empty cells (NaN) make a series shorter.
* **nested** (Parquet) -- one row per series, each channel a list column. A list column whose
  elements are themselves lists holds several channels as ``(T, C)`` (one inner list per step).

Special columns are found by name (case-insensitive; see ``ID_NAMES``, ``TIME_NAMES``,
``LABEL_NAMES``, ``GROUP_NAMES``); the ``*_col`` arguments override. Every other column is a
channel (long) or a time step (wide). Labels may be strings or numbers; ``class_names`` come out
sorted (numerically when every label is a number). Pass the training ``class_names`` when reading a
test file so its labels are encoded the same way (:func:`align_test` also checks the channels).

Every problem with the file raises :class:`~seqeq.errors.SeqeqError` with one line naming the
problem and the fix.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import SeqeqError, opt
from ._dataset import SeqData

__all__ = [
    "load_file",
    "from_dataframe",
    "save_file",
    "align_test",
    "ID_NAMES",
    "TIME_NAMES",
    "LABEL_NAMES",
    "GROUP_NAMES",
]

ID_NAMES = ("series_id", "id", "sample_id", "series", "sample", "sequence_id", "seq_id",
            "instance_id")
TIME_NAMES = ("time", "timestamp", "t", "step", "time_step", "timestep", "time_idx", "datetime",
              "date")
LABEL_NAMES = ("label", "class", "target", "y", "labels", "class_label", "category")
GROUP_NAMES = ("group", "groups", "subject", "subject_id", "patient", "patient_id", "participant",
               "participant_id", "user", "user_id")

_COMPRESSED = (".gz", ".bz2", ".xz", ".zip")
_CSV_EXT = tuple(e + z for e in (".csv", ".tsv", ".txt") for z in ("", *_COMPRESSED))
_PARQUET_EXT = (".parquet", ".pq")
_ARCHIVE_EXT = (".ts", ".arff")
_LAYOUTS = ("long", "wide", "nested")
_NAN_POLICIES = ("reject", "fill")
#: bytes of a CSV file read to find its delimiter and encoding
_HEAD = 1 << 16


# ---- reading the table ---------------------------------------------------------------------
def _detect_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        f = fmt.lower().lstrip(".")
        if f in ("csv", "tsv", "txt"):
            return "csv"
        if f in ("parquet", "pq"):
            return "parquet"
        if f in ("ts", "arff"):
            return "archive"
        raise SeqeqError(f"unknown file format {fmt!r}", "Use fmt='csv' or fmt='parquet'")
    name = path.name.lower()
    if name.endswith(_CSV_EXT):
        return "csv"
    if name.endswith(_PARQUET_EXT):
        return "parquet"
    if name.endswith(_ARCHIVE_EXT):
        return "archive"
    raise SeqeqError(
        f"cannot tell the format of {path.name!r} from its extension {path.suffix or '(none)'!r}",
        "Use a .csv or .parquet file (.tsv and .txt, and CSV compressed as .gz, .bz2, .xz or "
        ".zip, also work; and the UCR/UEA archive's .ts and .arff), or pass fmt='csv' / "
        "fmt='parquet'",
    )


def _read_archive_file(path: Path, nan: str, require_labels: bool,
                       class_names: Sequence[str] | None) -> SeqData:
    """A UCR/UEA archive file (``.ts``, ``.arff``: one series per entry, its label last)."""
    from ._sources import FetchError, _text, parse_archive_file

    try:
        X, lengths, labels, _, _ = parse_archive_file(path.name, _text(path.read_bytes()))
    except FetchError as e:
        raise SeqeqError(f"cannot read {path.name} ({e})",
                         "Give the file as the UCR/UEA archive distributes it") from None
    except UnicodeDecodeError as e:
        raise _not_utf8(path, e.start) from None
    C = X.shape[2]
    channels = ["value"] if C == 1 else [f"dim{k}" for k in range(C)]
    ids = np.arange(len(lengths))
    X = _apply_nan_policy(X, lengths, nan, ids, channels, path.name)
    y, classes = None, []
    labels = np.array(labels)
    if labels.size and not (labels == "?").all():
        # classes in seqeq's order for files (numeric, else natural), as for CSV and Parquet
        y, classes = _encode_labels(labels, ids, "class", path.name, class_names)
    elif require_labels:
        raise SeqeqError(f"{path.name} has no class labels", "Give a labelled file")
    return SeqData(X=X, lengths=lengths, y=y, class_names=classes, channel_names=channels,
                   ids=ids, name=path.stem)


def _sniff_delimiter(lines: list[str]) -> str:
    """The candidate delimiter giving the same number (> 1) of fields on every sampled line."""
    best, best_n = ",", 1
    for d in (",", ";", "\t", "|"):
        try:
            counts = {len(row) for row in csv.reader(lines, delimiter=d)}
        except csv.Error:
            continue
        if len(counts) == 1:
            n = counts.pop()
            if n > best_n:
                best, best_n = d, n
    if best_n == 1:  # ragged lines: the delimiter most lines agree on, so they can be named
        votes = {d: sum(len(r) > 1 for r in csv.reader(lines, delimiter=d))
                 for d in (",", ";", "\t", "|")}
        best = max(votes, key=lambda d: (votes[d], d == ","))
    return best


def _open_binary(path: Path):
    """The file's (decompressed) bytes, as pandas will read them."""
    name = path.name.lower()
    if name.endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")
    if name.endswith(".bz2"):
        import bz2

        return bz2.open(path, "rb")
    if name.endswith(".xz"):
        import lzma

        return lzma.open(path, "rb")
    if name.endswith(".zip"):
        import zipfile

        zf = zipfile.ZipFile(path)
        members = [m for m in zf.namelist() if not m.endswith("/")]
        if len(members) != 1:
            raise SeqeqError(f"{path.name} holds {len(members)} files; seqeq reads a .zip of one "
                             "CSV file", "Unzip it and give the CSV file itself")
        return zf.open(members[0])
    return open(path, "rb")


def _head(path: Path) -> bytes:
    import lzma
    import zipfile

    try:
        with _open_binary(path) as f:
            return f.read(_HEAD)
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as e:
        raise SeqeqError(f"cannot decompress {path.name} ({e})",
                         "Check that the file is complete and compressed as its extension says"
                         ) from None


def _decode_head(path: Path, head: bytes) -> tuple[str, str, bool]:
    """(text, encoding, has BOM) of the sampled head: UTF-8 (with or without BOM) or UTF-16 with
    a BOM; anything else is refused rather than read as some other encoding's characters."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", errors="ignore"), "utf-16", True
    bom = head.startswith(b"\xef\xbb\xbf")
    try:
        return head.decode("utf-8-sig"), "utf-8-sig", bom
    except UnicodeDecodeError as e:
        if len(head) < _HEAD or e.start < len(head) - 4:  # not a character cut at the sample end
            raise _not_utf8(path, e.start) from None
        return head[: e.start].decode("utf-8-sig"), "utf-8-sig", bom


def _not_utf8(path: Path, offset: int | None = None) -> SeqeqError:
    where = f" (bad byte at offset {offset})" if offset is not None else ""
    return SeqeqError(f"{path.name} is not UTF-8 text{where}",
                      "Re-save the file as UTF-8 CSV (e.g. 'CSV UTF-8' in a spreadsheet)")


def _field_counts(path: Path, sep: str, encoding: str) -> list[tuple[int, int]]:
    """(line number, fields) of every row with more fields than the header."""
    import io as _io

    rows = []
    with _open_binary(path) as raw, _io.TextIOWrapper(raw, encoding=encoding, newline="") as f:
        reader = csv.reader(f, delimiter=sep, skipinitialspace=True)
        n_head = None
        for row in reader:
            if not row or not any(x.strip() for x in row):
                continue
            if n_head is None:
                n_head = len(row)
            elif len(row) > n_head:
                rows.append((reader.line_num, len(row)))
    return [(0, n_head or 0), *rows]


def _ragged(path: Path, sep: str, encoding: str) -> SeqeqError:
    """The error naming the rows that have more fields than the header."""
    (_, n_head), *rows = _field_counts(path, sep, encoding)
    shown = ", ".join(f"line {ln} has {n}" for ln, n in rows[:3]) + (" ..." if len(rows) > 3
                                                                      else "")
    return SeqeqError(
        f"{len(rows)} row(s) of {path.name} have more fields than its header ({n_head}, "
        f"delimiter {sep!r}): {shown}",
        "Remove the extra fields (a stray delimiter, or a value holding the delimiter that "
        "should be quoted) or add their column names to the header")


def _text_columns(path: Path, sep: str, encoding: str, names: dict[str, str | None]
                  ) -> list[str]:
    """The header names (as in the file) of the label, id and group columns, found as
    :func:`from_dataframe` finds them (:func:`_resolve`), to be read as text: ids such as '007'
    and '7' stay two series and a label 'NA' stays a label."""
    try:
        raw = list(pd.read_csv(path, sep=sep, encoding=encoding, nrows=0,
                               skipinitialspace=True).columns)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError):
        return []
    header = pd.DataFrame(columns=[str(c).strip() for c in raw])
    as_written = dict(zip(header.columns, raw, strict=True))
    out, taken = [], set()
    for role, known, arg in (("label", LABEL_NAMES, "label_col"), ("id", ID_NAMES, "id_col"),
                             ("group", GROUP_NAMES, "group_col")):
        try:
            hit = _resolve(header, names.get(role), known, role, arg, taken)
        except SeqeqError:  # a given column that is absent: from_dataframe says so
            hit = None
        if hit is not None and hit not in taken:
            taken.add(hit)
            out.append(as_written[hit])
    return out


def _read_csv(path: Path, names: dict[str, str | None] | None = None,
              decimal: str | None = None) -> tuple[pd.DataFrame, dict]:
    """The table as pandas reads it with nothing guessed: the delimiter is found from the
    lines, only an empty field is missing (a label 'NA' stays a label), id/label/group columns
    are text, a row with more fields than the header is refused, and numbers written with a
    decimal comma are kept as text for :func:`_numbers`."""
    import warnings

    head = _head(path)
    text, encoding, bom = _decode_head(path, head)
    if not text.strip():
        raise SeqeqError(f"{path.name} is empty", "Give a CSV file with a header row and data rows")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(head) == _HEAD and len(lines) > 1:
        lines = lines[:-1]  # the last sampled line may be cut short
    sep = _sniff_delimiter(lines[:50])
    as_text = _text_columns(path, sep, encoding, names or {})

    def read(all_text: bool) -> pd.DataFrame:
        opts = dict(sep=sep, encoding=encoding, low_memory=False, skipinitialspace=True,
                    keep_default_na=False, na_values=[""], index_col=False,
                    dtype=str if all_text else {c: str for c in as_text})
        try:
            with warnings.catch_warnings():
                # more fields than the header: pandas would shift or drop values
                warnings.simplefilter("error", pd.errors.ParserWarning)
                return pd.read_csv(path, **opts)
        except pd.errors.EmptyDataError:
            raise SeqeqError(f"{path.name} is empty",
                             "Give a CSV file with a header row and data rows") from None
        except pd.errors.ParserWarning:
            raise _ragged(path, sep, encoding) from None
        except UnicodeDecodeError as e:
            raise _not_utf8(path) from e
        except (pd.errors.ParserError, ValueError) as e:
            if "Expected" in str(e) and "fields" in str(e):
                raise _ragged(path, sep, encoding) from None
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise SeqeqError(
                f"cannot parse {path.name} as CSV with delimiter {sep!r} ({msg})",
                "Check the file's quoting: every quoted value needs its closing quote") from None

    df = read(all_text=decimal == ",")
    if decimal is None and sep != "," and _may_have_decimal_commas(df, as_text):
        df = read(all_text=True)  # a ',' decimal file: every number as written (see _numbers)
    df.columns = [str(c).strip() for c in df.columns]
    return df, {"delimiter": sep, "bom": bom, "encoding": encoding}


def _may_have_decimal_commas(df: pd.DataFrame, skip: list[str]) -> bool:
    """Whether a text column holds a number with a ',' (where '.' in the other columns, read as
    decimal points, may be thousands separators)."""
    for c in df.columns:
        if c in skip or not (pd.api.types.is_object_dtype(df[c])
                             or pd.api.types.is_string_dtype(df[c])):
            continue
        vals = df[c].dropna().astype(str).str.strip()
        if vals.str.fullmatch(_COMMA_NUMBER).any() and vals.str.contains(",", regex=False).any():
            return True
    return False


def _read_parquet(path: Path) -> tuple[pd.DataFrame, dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SeqeqError(
            f"{path.name} is not a readable Parquet file ({msg})",
            "Re-export it (e.g. DataFrame.to_parquet) or check that the copy is complete",
        ) from None
    try:
        df = table.to_pandas()
    except (pa.ArrowException, ValueError, TypeError) as e:
        raise SeqeqError(f"cannot convert {path.name} to a table ({e})",
                         "Store plain numeric, string and list columns") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df, {}


# ---- column resolution ---------------------------------------------------------------------
def _suggest(name: str, columns: Sequence[str], known: Sequence[str] = ()) -> str:
    """``did you mean ...`` text for a missing column, using difflib."""
    cols = [str(c) for c in columns]
    lower = {c.lower(): c for c in cols}
    hits: list[str] = []
    for target in [name, *known]:
        for m in difflib.get_close_matches(target.lower(), list(lower), n=3, cutoff=0.6):
            if lower[m] not in hits:
                hits.append(lower[m])
    return ", ".join(repr(h) for h in hits[:3])


def _columns_text(columns: Sequence[str], limit: int = 12) -> str:
    cols = [str(c) for c in columns]
    more = f", ... ({len(cols)} in all)" if len(cols) > limit else ""
    return ", ".join(cols[:limit]) + more


def _resolve(df: pd.DataFrame, given: str | None, names: Sequence[str], role: str, arg: str,
             taken: set[str]) -> str | None:
    cols = list(df.columns)
    if given is not None:
        if given in cols:
            return given
        ci = [c for c in cols if c.lower() == str(given).lower()]
        if len(ci) == 1:
            return ci[0]
        hint = _suggest(str(given), cols)
        raise SeqeqError(
            f"{role} column {given!r} is not in the file (columns: {_columns_text(cols)})",
            f"Did you mean {hint}? Pass {opt(arg, placeholder='NAME')}" if hint
            else f"Pass {opt(arg, placeholder='NAME')} with one of the columns",
        )
    lower = {c.lower(): c for c in cols if c not in taken}
    for n in names:
        if n in lower:
            return lower[n]
    return None


# ---- value helpers -------------------------------------------------------------------------
#: text a numeric column may hold for a missing value (read as NaN: rejected or filled by ``nan``)
NA_MARKERS = frozenset({"", "na", "n/a", "nan", "-nan", "+nan", "null", "none", "#n/a", "<na>",
                        "missing", "?"})
#: a number written with ',' between groups of three digits and an optional '.' decimal part
_DOT_NUMBER = re.compile(r"^[-+]?(?:[1-9]\d{0,2}(?:,\d{3})+|\d+)?(?:\.\d*)?(?:[eE][-+]?\d+)?$")
#: a number written with an optional '.' between groups of three digits and a ',' decimal part
_COMMA_NUMBER = re.compile(r"^[-+]?(?:[1-9]\d{0,2}(?:\.\d{3})+|\d+)?(?:,\d*)?(?:[eE][-+]?\d+)?$")
_DECIMAL_NAMES = {".": "'.' (1,234.5 = 1234.5)", ",": "',' (1.234,5 = 1234.5)"}


def _typed_floats(s: pd.Series, col: str, fname: str) -> np.ndarray | None:
    """A column the reader already typed, as float64; None for a text column."""
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_timedelta64_dtype(s):  # durations as seconds
        return s.dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_complex_dtype(s):
        raise SeqeqError(f"channel column {col!r} in {fname} holds complex numbers",
                         "Store the real and imaginary parts as two channel columns")
    if pd.api.types.is_numeric_dtype(s):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_datetime64_any_dtype(s) or isinstance(s.dtype, pd.PeriodDtype):
        raise SeqeqError(f"channel column {col!r} in {fname} holds dates, not numbers",
                         f"Drop it, or name it as the time column with {opt('time_col')}")
    return None


class _TextNumbers:
    """One text column's values: those that read as plain numbers, the missing markers, and the
    rest (numbers with a thousands separator or a decimal comma, or not numbers at all)."""

    def __init__(self, s: pd.Series):
        text = s.astype(str).str.strip().where(s.notna().to_numpy(), "")
        text.index = range(len(text))
        self.text = text
        self.missing = text.str.lower().isin(NA_MARKERS).to_numpy()
        # a value with a ',' is never a plain number: leave it to the conventions (and skip
        # to_numeric's slow path for what cannot parse)
        comma = text.str.contains(",", regex=False).to_numpy()
        self.values = np.full(len(text), np.nan)
        easy = ~self.missing & ~comma
        self.values[easy] = pd.to_numeric(text[easy], errors="coerce").to_numpy(dtype=np.float64)
        self.rest = np.flatnonzero(np.isnan(self.values) & ~self.missing)
        #: plain numbers with a '.', which the ',' convention reads as thousands separators
        self.dotted = np.flatnonzero(~self.missing & ~np.isnan(self.values)
                                     & text.str.contains(".", regex=False).to_numpy())

        # which of those fit each convention, matched once (a number needs a digit)
        rest = self.text.iloc[self.rest]
        digit = rest.str.contains(r"\d").to_numpy()
        self._fit = {".": rest.str.fullmatch(_DOT_NUMBER).to_numpy() & digit,
                     ",": np.r_[rest.str.fullmatch(_COMMA_NUMBER).to_numpy() & digit,
                                self.text.iloc[self.dotted].str.fullmatch(_COMMA_NUMBER)
                                .to_numpy()].astype(bool)}

    def _idx(self, mark: str) -> np.ndarray:
        return self.rest if mark == "." else np.r_[self.rest, self.dotted].astype(np.int64)

    def not_numbers(self) -> np.ndarray:
        """Positions (into ``rest``) of values that are numbers by neither convention."""
        return np.flatnonzero(~(self._fit["."] | self._fit[","][: len(self.rest)]))

    def fits(self, mark: str) -> str | None:
        """The first value that does not read as a number with ``mark`` as the decimal mark."""
        bad = np.flatnonzero(~self._fit[mark])
        return None if not len(bad) else str(self.text.iloc[self._idx(mark)[bad[0]]])

    def floats(self, mark: str) -> np.ndarray:
        out = self.values.copy()
        idx = self._idx(mark)
        vals = self.text.iloc[idx]
        vals = (vals.str.replace(",", "", regex=False) if mark == "." else
                vals.str.replace(".", "", regex=False).str.replace(",", ".", regex=False))
        out[idx] = vals.astype(np.float64).to_numpy()
        out[self.missing] = np.nan
        return out


def _numbers(df: pd.DataFrame, cols: Sequence[str], fname: str, decimal: str | None,
             delimiter: str | None) -> tuple[dict[str, np.ndarray], str]:
    """The numeric columns (channels, or a wide file's time steps) as float64, and the decimal
    mark they were read with.

    Text numbers are read by one convention for the whole file: '.' as decimal mark (',' may
    group thousands: "8,302" is 8302) or ',' (with '.' grouping thousands: "1.234,5"). Given
    ``decimal``, that one; else the one every value fits, where a ','-delimited file never writes
    ',' as its decimal mark. A file that fits both (only values such as "1,234" in a
    ';'-delimited file), or neither, is refused naming a value: nothing is read by a guess."""
    out, texts = {}, {}
    for c in cols:
        typed = _typed_floats(df[c], c, fname)
        if typed is not None:
            out[c] = typed
            continue
        tn = _TextNumbers(df[c])
        bad = tn.not_numbers()
        if len(bad):  # not a number by either convention
            v = str(tn.text.iloc[tn.rest[bad[0]]])
            raise SeqeqError(
                    f"channel column {c!r} in {fname} is not numeric ({len(bad)} values "
                    f"such as {v[:40]!r})",
                    f"Fix or drop the column, or mark it with {opt('id_col')}/"
                    f"{opt('label_col')}/{opt('group_col')}")
        texts[c] = tn
    separated = {c: tn for c, tn in texts.items() if len(tn.rest)}
    if decimal is not None:
        mark = decimal
        for c, tn in texts.items():
            bad = tn.fits(mark)
            if bad is not None:
                raise SeqeqError(
                    f"channel column {c!r} in {fname} holds {bad[:40]!r}, which is not a number "
                    f"with {_DECIMAL_NAMES[mark]} as decimal mark",
                    f"Fix the value, or pass {opt('decimal')} the file's own decimal mark")
    elif not separated:
        mark = "."
    else:
        mark = _decide_decimal(texts, separated, fname, delimiter)
    for c, tn in texts.items():
        out[c] = tn.floats(mark)
    return out, mark


def _decide_decimal(texts: dict, separated: dict, fname: str, delimiter: str | None) -> str:
    """The one decimal mark that every text number of the file fits (see :func:`_numbers`)."""
    misfit = {m: next(((c, v) for c, tn in texts.items() if (v := tn.fits(m)) is not None),
                      None) for m in (".", ",")}
    if delimiter == "," and misfit["."] is None:
        return "."
    if delimiter == ",":
        c, v = misfit["."]
        raise SeqeqError(
            f"channel column {c!r} in {fname} holds {v[:40]!r}: a decimal comma in a "
            "comma-separated file",
            f"Pass {opt('decimal', ',')} if ',' is the decimal mark, or re-save the file with "
            "'.' decimals")
    if misfit["."] is None and misfit[","] is None:
        c, tn = next(iter(separated.items()))
        v = str(tn.text.iloc[tn.rest[0]])
        as_dot, as_comma = float(v.replace(",", "")), float(v.replace(".", "").replace(",", "."))
        raise SeqeqError(
            f"channel column {c!r} in {fname} holds numbers such as {v!r}, which read as "
            f"{as_dot:g} if ',' separates thousands and as {as_comma:g} if ',' is the decimal "
            "mark",
            f"Pass {opt('decimal', '.')} or {opt('decimal', ',')} to say which")
    if misfit["."] is not None and misfit[","] is not None:
        (c1, v1), (c2, v2) = misfit["."], misfit[","]
        raise SeqeqError(
            f"numbers in {fname} are written with two decimal marks ({v1[:30]!r} in column "
            f"{c1!r} needs ',', {v2[:30]!r} in column {c2!r} needs '.')",
            f"Re-save the file with one decimal mark, or pass {opt('decimal')} to say which")
    return "," if misfit["."] is not None else "."


def _canonical_labels(values: pd.Series) -> np.ndarray:
    """Labels as strings; integral numbers lose their ``.0`` so 1, 1.0 and '1' agree."""
    codes, uniq = pd.factorize(values, use_na_sentinel=False)
    canon = np.array([_label_str(v) for v in uniq.tolist()], dtype=object)
    return canon[codes]


#: a number written as text that another writer may write differently ('2.0' for 2, '1.50' for 1.5)
_PLAIN_DECIMAL = re.compile(r"^[-+]?(?:0|[1-9]\d*)\.\d*$")
#: an integer as text with nothing that would be lost as int64 (no leading zero, no '+')
_PLAIN_INT = re.compile(r"^-?(?:0|[1-9]\d{0,17})$")


def _label_str(v) -> str:
    """A label's canonical text: numbers lose their trailing zeros (``2.0`` and ``2`` are one
    class, whether a file stores them as text or as numbers); other text is kept as written
    (``'NA'``, ``'007'``), less surrounding spaces."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating)):
        return _num_str(float(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    t = str(v).strip()
    if _PLAIN_DECIMAL.match(t):
        t = t.rstrip("0").rstrip(".")
        return "0" if t in ("-0", "+0", "") else t.lstrip("+")
    return t


def _show(v) -> str:
    """repr of a value for a message, without NumPy's ``np.int64(...)`` wrapper."""
    return repr(v.item() if isinstance(v, np.generic) else v)


def _num_str(v: float) -> str:
    if math.isfinite(v) and v == int(v):
        return str(int(v))
    return repr(float(v))


def _as_number(s: str) -> float | None:
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _natural_key(s: str):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in re.split(r"(\d+)", s)]


def sort_class_names(names) -> list[str]:
    """Numeric order when every name is a number, else natural order ('a2' < 'a10')."""
    names = [str(n) for n in names]
    nums = [_as_number(n) for n in names]
    if all(v is not None for v in nums):
        return [n for _, n in sorted(zip(nums, names, strict=True))]
    return sorted(names, key=lambda n: (_natural_key(n), n))


def _encode_labels(labels: np.ndarray, series_ids: np.ndarray, col: str, fname: str,
                   class_names: Sequence[str] | None, min_classes: int = 2
                   ) -> tuple[np.ndarray, list[str]]:
    """Per-series label strings -> (y, class_names); unknown labels against given classes fail."""
    if class_names is not None:
        classes = [str(c) for c in class_names]
        index = {c: i for i, c in enumerate(classes)}
        # the training names may be '1.0'-style strings while the test file gives 1
        for i, c in enumerate(classes):
            v = _as_number(c)
            if v is not None:
                index.setdefault(_num_str(v), i)
        unknown = sorted({lab for lab in labels if lab not in index})
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise SeqeqError(
                f"{len(unknown)} label(s) in {fname} column {col!r} are not training classes: "
                f"{shown} (training classes: {_columns_text(classes, 10)})",
                "Remove those series or retrain with them in the training data",
            )
        return np.array([index[lab] for lab in labels], dtype=np.int64), classes
    classes = sort_class_names(set(labels.tolist()))
    if len(classes) < min_classes:
        raise SeqeqError(
            f"label column {col!r} in {fname} has a single class "
            f"{classes[0] if classes else ''!r} across {len(series_ids)} series",
            "A classifier needs at least two classes; check label_col or add data",
        )
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[lab] for lab in labels], dtype=np.int64), classes


def _id_array(values) -> np.ndarray:
    """Series ids (or groups) as int64 where every one is an integer, else as text. Text ids are
    kept as written: '007' and '7' are two series."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        return arr
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    text = [str(v).strip() for v in items]
    # integers written as text become numbers only when every id is one (mixed types stay text)
    if text and all(isinstance(v, str) for v in items) and all(map(_PLAIN_INT.match, text)):
        return np.array([int(t) for t in text], dtype=np.int64)
    return np.array(text)


def _apply_nan_policy(X: np.ndarray, lengths: np.ndarray, nan: str, ids: np.ndarray,
                      channel_names: list[str], fname: str) -> np.ndarray:
    """Reject or fill NaN/inf inside each series (padding is zeroed either way)."""
    N, T, C = X.shape
    inside = np.arange(T)[None, :] < lengths[:, None]  # (N, T)
    bad = ~np.isfinite(X) & inside[:, :, None]  # (N, T, C)
    if bad.any():
        if nan == "reject":
            i, t, c = (int(v[0]) for v in np.nonzero(bad))
            raise SeqeqError(
                f"{int(bad.sum())} NaN/inf values in {fname}, first in series {_show(ids[i])} at "
                f"step {t}, channel {channel_names[c]!r}",
                f"Clean the file, or pass {opt('nan', 'fill')} to forward/back-fill within "
                "each series",
            )
        valid = ~bad & inside[:, :, None]
        steps = np.arange(T)[None, :, None]
        last = np.maximum.accumulate(np.where(valid, steps, -1), axis=1)  # last valid step <= t
        first = np.argmax(valid, axis=1)[:, None, :]  # (N, 1, C) first valid step
        src = np.where(last >= 0, last, first)
        X = np.take_along_axis(X, src, axis=1)
        X = np.where(valid.any(axis=1)[:, None, :], X, 0.0)
    return np.where(inside[:, :, None], X, 0.0).astype(np.float32)


# ---- layouts -------------------------------------------------------------------------------
def _is_list_cell(v) -> bool:
    return isinstance(v, (list, tuple, np.ndarray))


def _list_columns(df: pd.DataFrame) -> list[str]:
    out = []
    for c in df.columns:
        s = df[c]
        if s.dtype != object:
            continue
        nn = s.dropna()
        if len(nn) and _is_list_cell(nn.iloc[0]):
            out.append(c)
    return out


def _per_series(values: np.ndarray, starts: np.ndarray, what: str, col: str, ids: np.ndarray,
                fname: str) -> np.ndarray:
    """The per-series value of a column that must be constant within each series (long layout)."""
    codes, uniq = pd.factorize(values, sort=False)
    lo = np.minimum.reduceat(codes, starts)
    hi = np.maximum.reduceat(codes, starts)
    changed = np.flatnonzero(lo != hi)
    if len(changed):
        k = int(changed[0])
        raise SeqeqError(
            f"the {what} in column {col!r} of {fname} changes within series {_show(ids[k])} "
            f"({_show(uniq[lo[k]])} and {_show(uniq[hi[k]])}; {len(changed)} series affected)",
            f"Give each series one {what}, or split the series with distinct ids",
        )
    return np.asarray(values)[starts]


def _check_missing(s: pd.Series, what: str, col: str, fname: str) -> None:
    miss = s.isna()
    if miss.any():
        raise SeqeqError(
            f"{int(miss.sum())} rows of {fname} have no {what} (column {col!r}, first at row "
            f"{int(np.flatnonzero(miss.to_numpy())[0])})",
            f"Fill in the {what} or drop those rows",
        )


def _time_values(s: pd.Series, col: str, fname: str) -> np.ndarray:
    _check_missing(s, "time value", col, fname)
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=np.float64)
    if pd.api.types.is_datetime64_any_dtype(s):
        return _datetime_order(s)
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().all():
        return num.to_numpy(dtype=np.float64)
    try:
        # ISO 8601 only: "01/02/2024" reads as 1 February or 2 January, so it is not guessed
        dt = pd.to_datetime(s, format="ISO8601", utc=True)
        if dt.isna().any():
            raise ValueError("unparsed time")
        return _datetime_order(dt)
    except (ValueError, TypeError, OverflowError):
        bad = s[num.isna()].iloc[0]
        raise SeqeqError(
            f"time column {col!r} of {fname} holds {str(bad)[:40]!r}, neither a number nor an "
            "ISO 8601 date (e.g. 2024-02-01 13:05:00; day/month orders are not guessed)",
            f"Use numeric steps or ISO timestamps, or pass {opt('time_col')} another column",
        ) from None


def _datetime_order(dt: pd.Series) -> np.ndarray:
    """Time stamps as float64 keys with the same order (and equality) as the stamps."""
    if getattr(dt.dt, "tz", None) is not None:
        dt = dt.dt.tz_convert("UTC").dt.tz_localize(None)
    return dt.to_numpy().view("int64").astype(np.float64)


def _long(df, fname, id_col, time_col, label_col, group_col, channels, nums):
    if id_col is None:
        raise SeqeqError(
            f"{fname} looks like long format (one row per time step) but has no series id column "
            f"(columns: {_columns_text(df.columns)})",
            "Add a column naming each row's series (e.g. 'series_id') or pass "
            f"{opt('id_col', placeholder='NAME')}",
        )
    if not channels:
        raise SeqeqError(f"{fname} has no channel columns besides id/time/label/group",
                         "Add at least one numeric value column")
    _check_missing(df[id_col], "series id", id_col, fname)
    codes, uniq = pd.factorize(df[id_col], sort=False)  # series in order of first appearance
    if time_col is not None:
        t = _time_values(df[time_col], time_col, fname)
        order = np.lexsort((t, codes))
    else:
        t = None
        order = np.argsort(codes, kind="stable")
    codes_s = codes[order]
    ids = _id_array(uniq)
    if t is not None:
        ts = t[order]
        dup = np.flatnonzero((codes_s[1:] == codes_s[:-1]) & (ts[1:] == ts[:-1]))
        if len(dup):
            row = order[dup[0] + 1]
            raise SeqeqError(
                f"duplicated time stamp {_show(df[time_col].iloc[row])} in series "
                f"{_show(ids[codes_s[dup[0]]])} of {fname} ({len(dup)} duplicates in all)",
                "Each (series id, time) pair must appear once; drop or aggregate the duplicates",
            )
    starts = np.flatnonzero(np.r_[True, codes_s[1:] != codes_s[:-1]])
    lengths = np.diff(np.r_[starts, len(codes_s)]).astype(np.int64)
    vals = np.stack([nums[c] for c in channels], axis=1)[order]  # (R, C)
    pos = np.arange(len(order)) - np.repeat(starts, lengths)
    X = np.zeros((len(starts), int(lengths.max()), len(channels)), dtype=np.float64)
    X[codes_s, pos] = vals
    labels = groups = None
    if label_col is not None:
        lab = df[label_col]
        if lab.notna().any():
            _check_missing(lab, "label", label_col, fname)
            labels = _per_series(_canonical_labels(lab)[order], starts, "label", label_col, ids,
                                 fname)
    if group_col is not None:
        g = df[group_col]
        _check_missing(g, "group", group_col, fname)
        groups = _id_array(_per_series(g.to_numpy()[order], starts, "group", group_col, ids,
                                       fname))
    return X, lengths, labels, groups, ids


def _wide(df, fname, id_col, label_col, group_col, steps, nums):
    if not steps:
        raise SeqeqError(f"{fname} has no value columns besides id/label/group",
                         "Wide format needs one column per time step")
    M = np.stack([nums[c] for c in steps], axis=1)  # (N, T)
    present = ~np.isnan(M)
    lengths = np.where(present.any(axis=1), M.shape[1] - np.argmax(present[:, ::-1], axis=1), 0)
    ids = _id_array(df[id_col]) if id_col is not None else np.arange(len(df), dtype=np.int64)
    if id_col is not None:
        _check_missing(df[id_col], "series id", id_col, fname)
        dup = df[id_col].duplicated()
        if dup.any():
            raise SeqeqError(
                f"series id {_show(ids[dup.to_numpy()][0])} appears on several rows of {fname}, "
                "which is read as wide format (one row per series)",
                f"Give each row its own id, or pass {opt('layout', 'long')} with a time column",
            )
    labels = groups = None
    if label_col is not None and df[label_col].notna().any():
        _check_missing(df[label_col], "label", label_col, fname)
        labels = _canonical_labels(df[label_col])
    if group_col is not None:
        _check_missing(df[group_col], "group", group_col, fname)
        groups = _id_array(df[group_col])
    return M[:, :, None], lengths.astype(np.int64), labels, groups, ids


def _nested(df, fname, id_col, label_col, group_col, list_cols):
    special = (id_col, label_col, group_col)
    others = [c for c in df.columns if c not in list_cols and c not in special]
    if others:
        raise SeqeqError(
            f"column(s) {', '.join(repr(c) for c in others[:5])} of nested file {fname} are "
            "neither list "
            "(channel) columns nor id/label/group",
            "Drop them, or name them with id_col/label_col/group_col",
        )
    if not list_cols:
        raise SeqeqError(f"{fname} has no list columns to read as channels",
                         "Nested format stores each channel as a list column")
    ids = _id_array(df[id_col]) if id_col is not None else np.arange(len(df), dtype=np.int64)
    if id_col is not None:
        _check_missing(df[id_col], "series id", id_col, fname)
    series, channel_names, widths = [], [], {}
    for i in range(len(df)):
        parts = []
        for c in list_cols:
            cell = df[c].iat[i]
            if cell is None or (not _is_list_cell(cell) and pd.isna(cell)):
                raise SeqeqError(
                    f"series {_show(ids[i])} of {fname} has no values in channel {c!r}",
                    "Every series needs every channel; fill or drop it")
            if not _is_list_cell(cell):
                raise SeqeqError(f"column {c!r} of {fname} mixes lists and scalars "
                                 f"(series {_show(ids[i])} holds {str(cell)[:30]!r})",
                                 "Store every cell of a channel column as a list")
            try:
                a = np.asarray(list(cell) if not isinstance(cell, np.ndarray) else cell)
                if a.dtype == object:  # ragged inner lists: arrays of arrays
                    inner = {len(x) if _is_list_cell(x) else -1 for x in a}
                    if len(inner) > 1:
                        raise SeqeqError(
                            f"mixed channel counts in column {c!r} of {fname}: series "
                            f"{_show(ids[i])} has steps with {sorted(inner)} values",
                            "Give every step of every series the same number of channels",
                        )
                    a = np.stack([np.asarray(x) for x in a]) if len(a) else a
                a = a.astype(np.float64)
            except SeqeqError:
                raise
            except (ValueError, TypeError):
                raise SeqeqError(f"channel column {c!r} of {fname} holds non-numeric values "
                                 f"(series {_show(ids[i])})", "Store numbers in the list columns"
                                 ) from None
            if a.ndim == 1:
                a = a[:, None]
            if a.ndim != 2:
                raise SeqeqError(f"column {c!r} of {fname} is nested {a.ndim} levels deep",
                                 "Use lists of numbers (one channel) or lists of lists (T, C)")
            w = widths.setdefault(c, a.shape[1])
            if a.shape[1] != w and len(a):
                raise SeqeqError(
                    f"mixed channel counts in column {c!r} of {fname}: series {_show(ids[i])} has "
                    f"{a.shape[1]} channels, earlier series {w}",
                    "Give every series the same channels",
                )
            parts.append(a)
        lens = {len(p) for p in parts}
        if len(lens) > 1:
            raise SeqeqError(
                f"the channels of series {_show(ids[i])} in {fname} have different lengths "
                f"({', '.join(f'{c}: {len(p)}' for c, p in zip(list_cols, parts, strict=True))})",
                "Every channel of a series needs one value per time step",
            )
        if lens == {0}:
            raise SeqeqError(f"series {_show(ids[i])} of {fname} has length 0",
                             "Drop empty series from the file")
        series.append(np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0])
    for c in list_cols:
        w = widths.get(c, 1)
        channel_names.extend([c] if w == 1 else [f"{c}_{j}" for j in range(w)])
    lengths = np.array([len(s) for s in series], dtype=np.int64)
    X = np.zeros((len(series), int(lengths.max()), len(channel_names)), dtype=np.float64)
    for i, s in enumerate(series):
        X[i, : len(s)] = s
    labels = groups = None
    if label_col is not None and df[label_col].notna().any():
        _check_missing(df[label_col], "label", label_col, fname)
        labels = _canonical_labels(df[label_col])
    if group_col is not None:
        _check_missing(df[group_col], "group", group_col, fname)
        groups = _id_array(df[group_col])
    return X, lengths, labels, groups, ids, channel_names


# ---- public API ----------------------------------------------------------------------------
def from_dataframe(
    df: pd.DataFrame,
    *,
    layout: str | None = None,
    id_col: str | None = None,
    time_col: str | None = None,
    label_col: str | None = None,
    group_col: str | None = None,
    nan: str = "reject",
    require_labels: bool = True,
    class_names: Sequence[str] | None = None,
    name: str = "data",
    decimal: str | None = None,
    delimiter: str | None = None,
) -> SeqData:
    """Build a :class:`SeqData` from an in-memory table (same rules as :func:`load_file`).

    ``decimal``: the decimal mark of numbers stored as text ("." or ","; None: detected, see
    :func:`_numbers`); ``delimiter``: the CSV delimiter the table was read with, if any."""
    fname = name
    if nan not in _NAN_POLICIES:
        raise SeqeqError(f"unknown NaN policy {nan!r}", f"Use {opt('nan', 'reject')} or "
                         f"{opt('nan', 'fill')}")
    if decimal not in (None, ".", ","):
        raise SeqeqError(f"unknown decimal mark {decimal!r}", f"Use {opt('decimal', '.')} or "
                         f"{opt('decimal', ',')}")
    if layout is not None and layout not in _LAYOUTS:
        raise SeqeqError(f"unknown layout {layout!r}", "Use layout='long', 'wide' or 'nested'")
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    if df.columns.duplicated().any():
        dup = df.columns[df.columns.duplicated()][0]
        raise SeqeqError(f"column {dup!r} appears twice in {fname}", "Rename one of them")
    if len(df.columns) == 0:
        raise SeqeqError(f"{fname} has no columns", "Give a table with a header row")
    if len(df) == 0:
        raise SeqeqError(f"{fname} has a header ({_columns_text(df.columns, 6)}) but no data rows",
                         "Add rows, one per time step (long) or per series (wide/nested)")
    list_cols = _list_columns(df)
    taken: set[str] = set()
    cols = {}
    for key, given, names, role, arg in (
        ("label", label_col, LABEL_NAMES, "label", "label_col"),
        ("id", id_col, ID_NAMES, "series id", "id_col"),
        ("group", group_col, GROUP_NAMES, "group", "group_col"),
        ("time", time_col, TIME_NAMES, "time", "time_col"),
    ):
        cols[key] = _resolve(df, given, names, role, arg, taken | set(list_cols))
        if cols[key] is not None:
            if cols[key] in taken:
                raise SeqeqError(f"column {cols[key]!r} is given two roles",
                                 "Pass distinct id_col, time_col, label_col and group_col")
            taken.add(cols[key])
    lab, idc, grp, tim = cols["label"], cols["id"], cols["group"], cols["time"]
    for c in (lab, idc, grp):  # ' s1' and 's1 ' are the id s1, as they read
        if c is None:
            continue
        if pd.api.types.is_object_dtype(df[c]):  # (mixed types: strip the text only)
            df[c] = df[c].map(lambda v: v.strip() if isinstance(v, str) else v)
        elif pd.api.types.is_string_dtype(df[c]):
            df[c] = df[c].str.strip()
    notes = {}
    if lab is not None and not require_labels and df[lab].isna().any():
        # labels are optional here (e.g. predicting): an incomplete label column is ignored
        notes["ignored_label_column"] = lab
        df, lab = df.drop(columns=[lab]), None
    if lab is None and require_labels:
        hint = _suggest("label", [c for c in df.columns if c not in taken], LABEL_NAMES)
        raise SeqeqError(
            f"no label column in {fname} (looked for {', '.join(LABEL_NAMES[:4])}, ...; columns: "
            f"{_columns_text(df.columns)})",
            (f"Did you mean {hint}? " if hint else "")
            + f"Pass {opt('label_col', placeholder='NAME')}",
        )
    if layout is None:
        if list_cols:
            layout = "nested"
        elif tim is not None or (idc is not None and df[idc].duplicated().any()):
            layout = "long"
        else:
            layout = "wide"
    rest = [c for c in df.columns if c not in taken]
    if layout != "nested" and list_cols:
        raise SeqeqError(f"{fname} has list columns ({_columns_text(list_cols, 5)}) but is read "
                         f"as {layout} format",
                         f"Pass {opt('layout', 'nested')} or flatten the lists")
    if layout == "long":
        if idc is not None and rest:  # (no id or channel: _long says which)
            nums, notes["decimal"] = _numbers(df, rest, fname, decimal, delimiter)
        else:
            nums = {}
        X, lengths, labels, groups, ids = _long(df, fname, idc, tim, lab, grp, rest, nums)
        channel_names = rest
    elif layout == "wide":
        if tim is not None and time_col is not None:
            raise SeqeqError("time_col does not apply to wide format (columns are the time steps)",
                             f"Drop {opt('time_col')}, or pass {opt('layout', 'long')}")
        steps = rest + ([tim] if tim is not None else [])
        steps = [c for c in df.columns if c in steps]
        nums, notes["decimal"] = _numbers(df, steps, fname, decimal, delimiter)
        X, lengths, labels, groups, ids = _wide(df, fname, idc, lab, grp, steps, nums)
        channel_names = ["value"]
    else:
        if tim is not None and time_col is not None:
            raise SeqeqError("time_col does not apply to nested format (list order is time order)",
                             "Drop time_col")
        X, lengths, labels, groups, ids, channel_names = _nested(
            df, fname, idc, lab, grp, [c for c in df.columns if c in list_cols and c not in taken])
    empty = np.flatnonzero(lengths == 0)
    if len(empty):
        raise SeqeqError(
            f"series {_show(ids[empty[0]])} of {fname} has length 0 ({len(empty)} empty series)",
            "Drop empty series (rows with no values) from the file",
        )
    X = _apply_nan_policy(X, lengths, nan, ids, channel_names, fname)
    X = X[:, : int(lengths.max())]  # no padding column that no series reaches
    if labels is None:
        if require_labels:
            raise SeqeqError(f"label column {lab!r} of {fname} is empty",
                             f"Fill in the labels or pass {opt('label_col')} another column")
        y, classes = None, [str(c) for c in class_names] if class_names is not None else []
    else:
        y, classes = _encode_labels(labels, ids, lab, fname, class_names,
                                    min_classes=2 if require_labels else 1)
    meta = {"layout": layout, "columns": {"id": idc, "time": tim, "label": lab, "group": grp},
            "nan_policy": nan, **notes}
    return SeqData(X=X, lengths=lengths, y=y, class_names=classes, channel_names=channel_names,
                   ids=ids, groups=groups, name=name, meta=meta)


def load_file(
    path: str | Path,
    *,
    fmt: str | None = None,
    layout: str | None = None,
    id_col: str | None = None,
    time_col: str | None = None,
    label_col: str | None = None,
    group_col: str | None = None,
    nan: str = "reject",
    require_labels: bool = True,
    class_names: Sequence[str] | None = None,
    decimal: str | None = None,
) -> SeqData:
    """Read a CSV or Parquet file of labelled series (layout long, wide or nested).

    ``nan``: ``"reject"`` (default) fails on any NaN/inf inside a series; ``"fill"`` forward- then
    back-fills within each series and channel, then zero. ``require_labels=False`` reads files
    without labels (``y`` is then ``None``). ``class_names``: the training classes, to encode a
    test file's labels the same way (unknown labels fail, naming them). ``decimal``: the
    decimal mark of numbers written as text, "." or "," (None: detected; a file whose numbers
    read two ways, such as only "1,234" in a ';'-delimited file, is refused).
    """
    from .._io import check_input_file

    path = check_input_file(path, "file")
    kind = _detect_format(path, fmt)
    if path.stat().st_size == 0:
        raise SeqeqError(f"{path.name} is empty (0 bytes)", "Give a file with a header and rows")
    if kind == "archive":
        data = _read_archive_file(path, nan, require_labels, class_names)
        data.meta.update({"source": str(path), "format": path.suffix.lower().lstrip(".")})
        return data
    if kind == "csv":
        df, info = _read_csv(path, {"id": id_col, "label": label_col, "group": group_col},
                             decimal)
    else:
        df, info = _read_parquet(path)
    if len(df.columns) == 1 and kind == "csv" and re.search(r"[;:\t| ]", str(df.columns[0])):
        raise SeqeqError(
            f"{path.name} has a single column {str(df.columns[0])[:60]!r}: the delimiter was not "
            "recognised",
            "Separate fields with ',', ';', tab or '|' and give a header row",
        )
    dropped = []
    if len(df.columns) > 1 and re.fullmatch(r"Unnamed: 0(\.\d+)?", str(df.columns[0])):
        dropped = [df.columns[0]]  # a pandas index written by to_csv(index=True): not a channel
    # a delimiter closing every line makes a nameless column with no value: not a channel
    dropped += [c for c in df.columns[1:] if re.fullmatch(r"Unnamed: \d+(\.\d+)?", str(c))
                and df[c].isna().all()]
    df = df.drop(columns=dropped)
    data = from_dataframe(
        df, layout=layout, id_col=id_col, time_col=time_col, label_col=label_col,
        group_col=group_col, nan=nan, require_labels=require_labels, class_names=class_names,
        name=path.name, decimal=decimal, delimiter=info.get("delimiter"),
    )
    data.name = path.stem
    data.meta.update({"source": str(path), "format": kind, **info})
    if dropped:
        data.meta["dropped_columns"] = dropped
    return data


def align_test(train: SeqData, test: SeqData) -> SeqData:
    """``test`` with its channels in the training order and its labels encoded as in ``train``.

    Fails (naming both lists) when the channels differ, and names any test label the training data
    does not have.
    """
    if test.channel_names != train.channel_names:
        if sorted(test.channel_names) != sorted(train.channel_names):
            missing = [c for c in train.channel_names if c not in test.channel_names]
            extra = [c for c in test.channel_names if c not in train.channel_names]
            raise SeqeqError(
                f"test channels [{_columns_text(test.channel_names, 20)}] differ from training "
                f"channels [{_columns_text(train.channel_names, 20)}] (missing: "
                f"{missing or 'none'}, extra: {extra or 'none'})",
                "Give the test file the same channel columns as the training file",
            )
        order = [test.channel_names.index(c) for c in train.channel_names]
        test = replace(test, X=np.asarray(test.X)[:, :, order],
                       channel_names=list(train.channel_names), meta=dict(test.meta))
    if test.y is None:
        return replace(test, class_names=list(train.class_names), meta=dict(test.meta))
    labels = np.array([test.class_names[k] for k in test.y], dtype=object)
    y, classes = _encode_labels(labels, test.ids if test.ids is not None else
                                np.arange(test.n_series), "label", test.name, train.class_names)
    return replace(test, y=y, class_names=classes, meta=dict(test.meta))


# ---- writing -------------------------------------------------------------------------------
def _check_names(data: SeqData, reserved: set[str]) -> None:
    clash = [c for c in data.channel_names if c in reserved]
    if clash:
        raise SeqeqError(f"channel name(s) {clash} clash with the id/time/label/group columns",
                         "Rename those channels before saving")


def save_file(data: SeqData, path: str | Path, layout: str = "long", *, fmt: str | None = None
              ) -> Path:
    """Write ``data`` as CSV or Parquet in ``layout`` long, wide (univariate only) or nested
    (Parquet only). Columns: ``series_id``, ``label`` (when labelled), ``group`` (when set), then
    ``time`` + channels (long), ``t0..`` (wide) or one list column per channel (nested)."""
    path = Path(path)
    kind = _detect_format(path, fmt)
    if layout not in _LAYOUTS:
        raise SeqeqError(f"unknown layout {layout!r}", "Use layout='long', 'wide' or 'nested'")
    X = np.asarray(data.X, dtype=np.float64)
    N = data.n_series
    ids = data.ids if data.ids is not None else np.arange(N)
    head = {"series_id": ids}
    if data.y is not None:
        head["label"] = np.array(data.class_names, dtype=object)[data.y]
    if data.groups is not None:
        head["group"] = data.groups
    _check_names(data, {"series_id", "label", "group", "time"})
    if layout == "long":
        rep = data.lengths
        cols = {k: np.repeat(np.asarray(v), rep) for k, v in head.items()}
        cols["time"] = np.concatenate([np.arange(n) for n in rep]) if N else np.zeros(0, int)
        inside = np.arange(data.max_len)[None, :] < rep[:, None]
        vals = X[inside]  # (sum lengths, C)
        for j, c in enumerate(data.channel_names):
            cols[c] = vals[:, j]
        df = pd.DataFrame(cols)
    elif layout == "wide":
        if data.n_channels != 1:
            raise SeqeqError(f"wide format holds one channel, the data has {data.n_channels}",
                             "Use layout='long' or 'nested'")
        M = np.where(np.arange(data.max_len)[None, :] < data.lengths[:, None], X[:, :, 0], np.nan)
        df = pd.concat([pd.DataFrame(head),
                        pd.DataFrame(M, columns=[f"t{k}" for k in range(data.max_len)])], axis=1)
    else:
        if kind != "parquet":
            raise SeqeqError("nested format needs Parquet (CSV cannot hold lists)",
                             "Save to a .parquet path")
        df = pd.DataFrame(head)
        for j, c in enumerate(data.channel_names):
            df[c] = [X[i, : data.lengths[i], j] for i in range(N)]
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        buf = io.StringIO()
        df.to_csv(buf, index=False, sep="\t" if path.name.lower().endswith(".tsv") else ",")
        path.write_text(buf.getvalue(), encoding="utf-8")
    else:
        df.to_parquet(path, index=False)
    return path
