"""Safe file output: every artifact is written to a temporary file and renamed into place, so a
crash never leaves a half-written file where a good one was."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json"]


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _file_mode(path: Path) -> int:
    """An existing file keeps its permissions; a new one gets the usual 0666 & ~umask (mkstemp
    alone would leave every artifact readable by its owner only)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, renamed over
    ``path`` only once complete and on disk: a crash at any point leaves either the old file or
    the new one, never a mix (and at most a stray ``.<name>.*.tmp`` beside it)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), _file_mode(path))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise


def write_error(path: Path, e: OSError):
    """The :class:`~seqeq.errors.WriteError` for a file that could not be written: which file,
    why, and that the file as it was (if any) is untouched."""
    from .errors import WriteError

    return WriteError(f"could not write {path} ({e.strerror or e})",
                      "Nothing written before was changed; free space on that disk (or give a "
                      "writable place) and run the command again")


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default)
    atomic_write_text(path, text + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def check_input_file(path: str | Path, what: str = "file", fix: str = "Check the path") -> Path:
    """``path`` as a readable regular file, or a :class:`~seqeq.errors.SeqeqError` naming the
    real cause: missing (with the closest name in its folder), a symbolic link that loops or
    points nowhere, a folder, a special file, or no permission to read it."""
    import difflib
    import errno

    from .errors import SeqeqError

    path = Path(path)
    try:
        st = path.stat()  # follows symbolic links
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SeqeqError(f"{what} {str(path)!r} is a symbolic link that loops (following it "
                             "leads back to itself)", "Point the link at the real file") from None
        if e.errno == errno.ENOENT and path.is_symlink():
            raise SeqeqError(f"{what} {str(path)!r} is a symbolic link to "
                             f"{os.readlink(path)!r}, which does not exist",
                             "Point the link at the real file") from None
        if e.errno == errno.ENOENT:
            hint = ""
            try:
                names = [p.name for p in path.parent.iterdir() if p.name != path.name]
                close = difflib.get_close_matches(path.name, names, n=1)
                hint = f"Did you mean {close[0]!r}? " if close else ""
            except OSError:
                pass
            raise SeqeqError(f"{what} {str(path)!r} does not exist", hint + fix) from None
        if e.errno == errno.EACCES:
            raise SeqeqError(f"cannot read {what} {str(path)!r} (permission denied)",
                             "Give yourself read access to it and to its folders") from None
        if e.errno == errno.ENOTDIR:
            raise SeqeqError(f"{what} {str(path)!r} does not exist (a part of its path is a "
                             "file, not a folder)", fix) from None
        raise SeqeqError(f"cannot open {what} {str(path)!r} ({e.strerror or e})", fix) from None
    if stat.S_ISDIR(st.st_mode):
        raise SeqeqError(f"{what} {str(path)!r} is a folder, not a file", fix)
    if not stat.S_ISREG(st.st_mode):
        raise SeqeqError(f"{what} {str(path)!r} is not a regular file (a pipe, socket or device)",
                         "Save the data to a file first")
    if not os.access(path, os.R_OK):
        raise SeqeqError(f"cannot read {what} {str(path)!r} (permission denied)",
                         "Give yourself read access to it")
    return path
