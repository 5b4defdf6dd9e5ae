"""Loaders for user files (CSV/Parquet) and for the built-in benchmarks."""

from ._dataset import SeqData, concat, grouped_split, pad_series, stratified_split

__all__ = ["SeqData", "concat", "grouped_split", "pad_series", "stratified_split"]
