"""Evaluation: the training rollout engine over a benchmark, its metrics, and a viewer for the trajectories."""

from .benchmarks import DATASET_FORMATS, SHIPPED_TASKS, Benchmark, DatasetFormat, load_benchmark
from .metrics import ITEM_METRICS, score_item, summarize
from .runner import (
    evaluate,
    load_for_inference,
    no_tools_path,
    read_run,
    reward_table,
    rollout_dataset,
    summary_path,
    write_summary,
)
from .viewer import write_html

__all__ = [
    "DATASET_FORMATS",
    "ITEM_METRICS",
    "SHIPPED_TASKS",
    "Benchmark",
    "DatasetFormat",
    "evaluate",
    "load_benchmark",
    "load_for_inference",
    "no_tools_path",
    "read_run",
    "reward_table",
    "rollout_dataset",
    "score_item",
    "summarize",
    "summary_path",
    "write_summary",
    "write_html",
]
