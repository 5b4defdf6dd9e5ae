"""Loaders for user files (CSV/Parquet) and for the built-in benchmarks.

Never imports torch: the ONNX predict path reads data through this package without it.
"""

from ._dataset import SeqData, concat, grouped_split, pad_series, stratified_split
from ._lazy import LazySeries, NoisePadded
from .benchmarks import (
    BenchmarkInfo,
    list_benchmarks,
    load_benchmark,
    resolve_data_dir,
    verify_file,
)
from .files import align_test, from_dataframe, load_file, save_file, sort_class_names

__all__ = [
    "SeqData",
    "concat",
    "grouped_split",
    "pad_series",
    "stratified_split",
    "LazySeries",
    "NoisePadded",
    "BenchmarkInfo",
    "list_benchmarks",
    "load_benchmark",
    "resolve_data_dir",
    "verify_file",
    "align_test",
    "from_dataframe",
    "load_file",
    "save_file",
    "sort_class_names",
]
