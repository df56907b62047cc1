"""Datasets: the task-file loader and the offline synthetic generators."""

from .jsonl import DatasetFormatError, load_jsonl_dataset

__all__ = ["DatasetFormatError", "load_jsonl_dataset"]
