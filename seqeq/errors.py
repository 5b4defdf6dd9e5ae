"""seqeq's own error types, and how a message names a setting.

A :class:`SeqeqError` is a problem with what the user gave us (data, flags, files). The CLI turns
it into one line on stderr and exit code 2, with no traceback. Its message names the problem and,
where there is one, the fix. It is a :class:`ValueError`, as scikit-learn and most Python callers
expect of bad input.

A :class:`WriteError` is a file that could not be written (a full disk, a read-only folder): it
says which file, that what was written before is intact, and how to carry on (exit code 1).

Messages name a setting the way the caller typed it: ``--budget-kb 20`` on the command line
(inside :func:`cli_names`), ``budget_kb=20`` through the Python API (:func:`opt`).
"""

from __future__ import annotations

import contextlib
import contextvars

__all__ = ["SeqeqError", "SeqeqTypeError", "WriteError", "Interrupted", "opt", "cli_names"]

_CLI = contextvars.ContextVar("seqeq_cli_names", default=False)
#: settings whose flag is not their parameter's name
_FLAGS = {"layout": "--format", "fmt": "--format", "test_path": "--test"}


class SeqeqError(ValueError):
    """A user-facing error: bad input, bad flags, a missing file. Exit code 2."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem}. {fix}")


class SeqeqTypeError(SeqeqError, TypeError):
    """Input of the wrong kind (a sparse matrix, objects that are not numbers): both a
    :class:`SeqeqError` and the ``TypeError`` Python callers expect. Exit code 2."""


class WriteError(SeqeqError, OSError):
    """A file of the run could not be written (disk full, permissions): both a
    :class:`SeqeqError` (one line, naming the file) and the ``OSError`` it is. Exit code 1."""

    exit_code = 1


class Interrupted(SeqeqError):
    """Ctrl-C before there was anything to hand back (no trial had finished): what was kept and
    how to resume. Exit code 130, as for any interruption."""

    exit_code = 130


def opt(name: str, value=None, *, placeholder: str | None = None) -> str:
    """A setting as the caller names it: ``--budget-kb`` / ``--budget-kb 20`` on the command line,
    ``budget_kb`` / ``budget_kb=20`` in Python (``value`` is shown as given; ``placeholder``,
    e.g. ``NAME``, is shown unquoted)."""
    flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
    if placeholder is not None:
        return f"{flag} {placeholder}" if _CLI.get() else f"{name}={placeholder}"
    if isinstance(value, bool) and _CLI.get():  # an on/off switch: --distill / --no-distill
        return flag if value else "--no-" + flag[2:]
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    if _CLI.get():
        return flag if value is None else f"{flag} {shown}"
    if value is None:
        return name
    return f"{name}={value!r}" if isinstance(value, str) else f"{name}={shown}"


@contextlib.contextmanager
def cli_names():
    """Within this block, :func:`opt` names settings as command-line flags."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)
