"""seqeq's own error type.

A :class:`SeqeqError` is a problem with what the user gave us (data, flags, files). The CLI turns
it into one line on stderr and exit code 2, with no traceback. Its message names the problem and,
where there is one, the fix.
"""

from __future__ import annotations

__all__ = ["SeqeqError"]


class SeqeqError(Exception):
    """A user-facing error: bad input, bad flags, a missing file. Exit code 2."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem}. {fix}")
