"""Datasets: the task-file loader, loaders for published formats, and the offline synthetic generators."""

from .jsonl import load_jsonl_dataset
from .mat import load_mat_coding, load_mat_search, load_mat_training
from .records import DatasetFormatError

__all__ = ["DatasetFormatError", "load_jsonl_dataset", "load_mat_coding", "load_mat_search", "load_mat_training"]
