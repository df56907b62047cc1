"""Checks of a dataset given in Python (a notebook's own ``Dataset``), which no loader of ours has read.

Files are checked as they are read (:mod:`agentic_vlm.data.records`): fields, images and all.
"""

from __future__ import annotations

from datasets import Dataset

from ..rewards.answers import as_truth_list
from .records import DatasetFormatError


def check_answers(dataset, source: str, column: str = "answer") -> None:
    """Raise :class:`DatasetFormatError` naming the row if an ``answer`` cell is not one the rewards can read (a
    string, a number, a list of them, SQuAD's ``{"text": [...]}`` or ``None``; see
    :func:`~agentic_vlm.rewards.answers.as_truth_list`), so that it fails before training, not at its batch."""
    if not isinstance(dataset, Dataset) or column not in dataset.column_names:
        return
    for index, cell in enumerate(dataset[column]):
        try:
            as_truth_list(cell)
        except ValueError as error:
            raise DatasetFormatError(f"{source}, row {index + 1}: field {column!r}: {error}") from None
