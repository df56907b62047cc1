"""Benchmark metrics: each item's scores, and their means over a run, overall and per group (split, type...).

An item scores its final answer against its ground truths, the best over them (:mod:`agentic_vlm.rewards.answers`
does the scoring, as for the rewards). An item whose trajectory ended without an answer scores 0 and stays in every
mean: dropping it, as the reference evaluation of MAT does, would reward a model for giving up on hard items.

Metrics by name:

- ``accuracy``: 1 when the answer is right, numbers compared by value ("1,234.0" is "1234"), text by exact match;
- ``exact_match``: SQuAD-normalised exact match;
- ``f1``: SQuAD token F1;
- ``f1_set``: the F1 of Visual-ARFT's MAT evaluation, distinct shared tokens over the token counts (see
  :func:`agentic_vlm.rewards.text.token_f1_score`);
- ``refocus``: VTool-R1's rule-based ReFOCUS score (numbers by relative error, labels by exact match, list items
  one by one);
- ``choice``: multiple choice (V* Bench, HR-Bench), for truths ``[letter, option text]``: 1 when the answer is the
  right option's text, or else picks the right letter ("B", "(B)", "B. red", "The answer is B").

Parts written with ``||`` are scored one by one, except by ``choice``.

Tool use: every summary counts tool calls per item and the fraction of items that made one. Given a run of the same
items without tools (``agentic-vlm eval`` makes one after each run with tools), :func:`tool_use` compares the two item
by item.
"""

from __future__ import annotations

import re
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
from ..rewards.text import exact_match_score

ItemMetric = Callable[[str, list[str]], float]

# A letter alone or first and marked as one ("B", "(B)", "B. red", "B: red"; not "I think" or "A red car"), or
# after "answer is", "option" or "choice" anywhere.
_LEADING_LETTER = re.compile(r"\s*\(?([A-Z])(?:[).:]|\s*$)")
_NAMED_LETTER = re.compile(r"\b(?:answer|option|choice)(?: is)?:?[ \t]*\(?([A-Z])\b", re.IGNORECASE)


def chosen_letter(prediction: str) -> str | None:
    """The option letter a multiple-choice answer picks, or ``None`` if it names none."""
    match = _LEADING_LETTER.match(prediction) or _NAMED_LETTER.search(prediction)
    return match.group(1) if match else None


def choice_score(prediction: str, truths: list[str]) -> float:
    """1.0 if ``prediction`` picks the right option: its text (``truths[1:]``, normalised exact match), else its
    letter (``truths[0]``)."""
    if not truths:
        return 0.0
    if any(exact_match_score(prediction, text) for text in truths[1:]):
        return 1.0
    return float(chosen_letter(prediction) == truths[0].strip().upper())

ITEM_METRICS: dict[str, ItemMetric] = {
    "accuracy": lambda prediction, truths: score_answer(prediction, truths, is_correct_item),
    "exact_match": exact_match,
    "f1": token_f1,
    "f1_set": partial(token_f1, variant="set"),
    "refocus": lambda prediction, truths: score_answer(prediction, truths, refocus_item_score),
    "choice": choice_score,
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
    figures["tool_call_rate"] = _mean([_called_a_tool(record) for record in records])
    figures["tool_errors"] = _mean([turn["error"] is not None for turn in calls]) if calls else None
    return figures


def _mean(values: list) -> float:
    return sum(values) / len(values)


def _called_a_tool(record: dict) -> bool:
    return any(turn["action"] == "tool" for turn in record["turns"])


def tool_use(records: Iterable[dict], without_tools: Iterable[dict], metric: str) -> dict:
    """How tools changed the results: ``records`` (a run with tools) against ``without_tools`` (the same items run
    without, by id), on ``metric``, an item being right when it scores 1.

    Returns ``items`` (the ids in both runs), ``accuracy_with_tools`` and ``accuracy_without_tools`` over them,
    ``tool_gain`` (the fraction right with tools and wrong without), ``tool_harm`` (right without, wrong with) and
    ``tool_call_rate`` (the fraction of items that called a tool, with tools).
    """
    baseline = {record["id"]: record for record in without_tools}
    pairs = [(record, baseline[record["id"]]) for record in records if record["id"] in baseline]
    if not pairs:
        raise ValueError("the run without tools has none of this run's items (compared by id)")
    if any(metric not in run["scores"] for run in pairs[0]):
        raise ValueError(f"both runs must be scored with the metric {metric!r}")
    right = [(record["scores"][metric] == 1.0, other["scores"][metric] == 1.0) for record, other in pairs]
    return {
        "metric": metric,
        "items": len(pairs),
        "accuracy_with_tools": _mean([with_tools for with_tools, _ in right]),
        "accuracy_without_tools": _mean([without for _, without in right]),
        "tool_gain": _mean([with_tools and not without for with_tools, without in right]),
        "tool_harm": _mean([without and not with_tools for with_tools, without in right]),
        "tool_call_rate": _mean([_called_a_tool(record) for record, _ in pairs]),
    }
