"""Benchmark metrics: each item's scores, and their means over a run, overall and per group (split, type...).

An item scores its final answer against its ground truths, the best over them (:mod:`agentic_vlm.rewards.answers`
does the scoring, as for the rewards). An item whose trajectory ended without an answer scores 0 and stays in every
mean: dropping it, as the reference evaluation of MAT does, would reward a model for giving up on hard items.

Metrics by name:

- ``accuracy``: 1 when the answer is right, numbers compared by value ("1,234.0" is "1234"), text by exact match;
- ``exact_match``: SQuAD-normalised exact match;
- ``f1``: SQuAD token F1;
- ``f1_set``: the F1 of the MAT benchmark, which counts each distinct token once (see
  :func:`agentic_vlm.rewards.text.token_f1_score`).

Parts written with ``||`` are scored one by one for every metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial

from ..rewards.answers import (
    as_truth_list,
    exact_match,
    is_correct_item,
    refocus_item_score,
    score_answer,
    token_f1,
)

ItemMetric = Callable[[str, list[str]], float]

ITEM_METRICS: dict[str, ItemMetric] = {
    "accuracy": lambda prediction, truths: score_answer(prediction, truths, is_correct_item),
    "exact_match": exact_match,
    "f1": token_f1,
    "f1_set": partial(token_f1, variant="set"),
    "refocus": lambda prediction, truths: score_answer(prediction, truths, refocus_item_score),
}


def check_metric_names(names: Sequence[str]) -> None:
    unknown = [name for name in names if name not in ITEM_METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {unknown or names}; available: {sorted(ITEM_METRICS)}")


def score_item(prediction: str | None, ground_truth, names: Sequence[str]) -> dict[str, float]:
    """The item's score for each metric in ``names``; 0 for each when there is no prediction."""
    truths = as_truth_list(ground_truth)
    return {name: 0.0 if prediction is None else ITEM_METRICS[name](prediction, truths) for name in names}


def group_key(value) -> str:
    """A record's group under a column: a list (MAT-Coding's ``type``) is one group, its names joined by "+"."""
    return "+".join(map(str, value)) if isinstance(value, list) else str(value)


def summarize(records: Iterable[dict], names: Sequence[str], group_by: Sequence[str] = ()) -> dict:
    """Means of the metrics over ``records`` (eval records with ``scores`` and ``prediction``), overall and for
    each value of each column in ``group_by`` that the records have.

    Returns ``{"overall": figures, "by_<column>": {value: figures}}``; ``figures`` holds ``count``, the fraction
    ``answered``, the mean of each metric, the mean number of turns and tool calls, and the fraction of tool calls
    that failed (``None`` without calls).
    """
    records = list(records)
    if not records:
        raise ValueError("no records to summarize")
    summary = {"overall": _figures(records, names)}
    for column in group_by:
        groups: dict[str, list[dict]] = {}
        for record in records:
            if record.get(column) is not None:
                groups.setdefault(group_key(record[column]), []).append(record)
        if groups:
            summary[f"by_{column}"] = {key: _figures(groups[key], names) for key in sorted(groups)}
    return summary


def summary_rows(summary: dict) -> list[tuple[str, dict]]:
    """The figures of a summary as labelled rows: ``overall``, then ``column = value`` for each group."""
    return [("overall", summary["overall"])] + [
        (f"{key.removeprefix('by_')} = {value}", figures)
        for key, groups in summary.items() if key.startswith("by_") for value, figures in groups.items()
    ]


def _figures(records: list[dict], names: Sequence[str]) -> dict:
    count = len(records)
    calls = [turn for record in records for turn in record["turns"] if turn["action"] == "tool" and "observation" in turn]
    figures = {"count": count, "answered": _mean([record["prediction"] is not None for record in records])}
    figures |= {name: _mean([record["scores"][name] for record in records]) for name in names}
    figures["turns"] = _mean([record["num_turns"] for record in records])
    figures["tool_calls"] = len(calls) / count
    figures["tool_errors"] = _mean([turn["error"] is not None for turn in calls]) if calls else None
    return figures


def _mean(values: list) -> float:
    return sum(values) / len(values)
