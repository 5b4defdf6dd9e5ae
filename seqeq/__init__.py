"""seqeq: AutoML for sequence classification with small, stable recurrent cells."""

__version__ = "0.1.0"

from .errors import SeqeqError  # noqa: E402

__all__ = ["SeqeqError", "__version__"]
