"""Scoring a final answer against a row's ground truths: several acceptable answers, and multi-part answers.

A ground truth may be one string or a list of acceptable strings; the score is the best over them. An answer of
several parts is written with ``||`` between the parts ("Paris || Rome"); parts are matched one to one, in any
order, and the score is the matched total over the larger number of parts, so a missing part and an extra part
cost the same.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Literal

from .matching import matched_score
from .numeric import parse_number, relative_closeness, within_relative_tolerance
from .text import F1Variant, exact_match_score, token_f1_score

ITEM_SEPARATOR = "||"

ItemScore = Callable[[str, str], float]
NumericScheme = Literal["tolerance", "linear"]
RefocusMatch = Literal["exact", "normalized"]


def as_truth_list(ground_truth: str | float | Sequence[str | float] | dict | None) -> list[str]:
    """The acceptable answers of a dataset cell: a string (or a number) is one answer, a list several; ``None`` none;
    a dict is SQuAD's ``{"text": [...], ...}``, its ``text`` the answers. Anything else is a ``ValueError``."""
    if ground_truth is None:
        return []
    if isinstance(ground_truth, str | numbers.Number) and not isinstance(ground_truth, bool):
        return [str(ground_truth)]
    if isinstance(ground_truth, dict):
        if "text" not in ground_truth:
            raise ValueError(f"an answer given as a dict needs SQuAD's 'text' key (the answers), got {ground_truth!r}")
        return as_truth_list(ground_truth["text"])
    if isinstance(ground_truth, list | tuple) and all(
        truth is None or (isinstance(truth, str | numbers.Number) and not isinstance(truth, bool))
        for truth in ground_truth
    ):
        return [str(truth) for truth in ground_truth if truth is not None]
    raise ValueError(f"an answer must be a string, a number, a list of them or {{'text': [...]}}, got {ground_truth!r}")


def split_items(answer: str) -> list[str]:
    """The parts of an answer written with ``||`` between them; blank parts are dropped."""
    return [item.strip() for item in answer.split(ITEM_SEPARATOR) if item.strip()]


def score_answer(prediction: str, ground_truths: Sequence[str], item_score: ItemScore) -> float:
    """The best over ``ground_truths`` of the part-by-part score of ``prediction`` (0.0 if there is no truth)."""
    predicted_items = split_items(prediction)
    truth_items = [items for items in map(split_items, ground_truths) if items]
    if not predicted_items:
        return 0.0
    return max((matched_score(predicted_items, items, item_score) for items in truth_items), default=0.0)


def items_are_numeric(truth: str) -> bool:
    items = split_items(truth)
    return bool(items) and all(parse_number(item) is not None for item in items)


def is_correct_item(prediction: str, truth: str, rel_tol: float = 0.0) -> float:
    """1.0 if ``prediction`` is right: the same number (within ``rel_tol``) for a numeric truth, else normalised EM.

    Numbers are compared by value so that "1,234.50" matches "1234.5" and "3 kg" matches "3", which exact match
    after SQuAD normalisation gets wrong.
    """
    expected = parse_number(truth)
    if expected is None:
        return exact_match_score(prediction, truth)
    predicted = parse_number(prediction)
    if predicted is None:
        return 0.0
    return float(within_relative_tolerance(predicted, expected, rel_tol))


def numeric_item_score(
    prediction: str, truth: str, scheme: NumericScheme = "tolerance", rel_tol: float = 0.05
) -> float:
    """How close the number ``prediction`` is to the numeric ``truth``; 0.0 if ``prediction`` is not a number.

    ``"tolerance"``: 1.0 within ``rel_tol`` of the truth, else 0.0. ``"linear"``: VTool-R1's graded closeness.
    """
    expected, predicted = parse_number(truth), parse_number(prediction)
    if expected is None:
        raise ValueError(f"the ground truth {truth!r} is not a number")
    return 0.0 if predicted is None else _closeness(predicted, expected, scheme, rel_tol)


def _closeness(predicted: float, expected: float, scheme: NumericScheme, rel_tol: float) -> float:
    if scheme == "tolerance":
        return float(within_relative_tolerance(predicted, expected, rel_tol))
    if scheme == "linear":
        return relative_closeness(predicted, expected)
    raise ValueError(f"unknown numeric scheme {scheme!r}; use 'tolerance' or 'linear'")


def float_number(text: str) -> float | None:
    """The value of ``text`` if Python's ``float`` reads it (VTool-R1's ``is_number``: "42", " 4.5 ", "1e3"; not
    "1,000" or "45%"), else ``None``; "nan" and "inf" are not numbers here (VTool-R1 scores them NaN)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def refocus_item_score(
    prediction: str,
    truth: str,
    scheme: NumericScheme = "linear",
    rel_tol: float = 0.05,
    match: RefocusMatch = "exact",
) -> float:
    """VTool-R1's rule-based score of one part: a numeric truth by closeness (see :func:`numeric_item_score`; graded
    by default), any other truth by exact match.

    ``match="exact"`` is VTool-R1's ``refocus.py``: a part is a number when Python's ``float`` reads it, and a label
    must be written as the truth writes it (case and punctuation count; the parts come stripped of surrounding
    whitespace). ``match="normalized"`` is lenient: numbers as :func:`~.numeric.parse_number` reads them ("1,234",
    "45%", "$3"), labels by SQuAD-normalised exact match ("the otters." is "Otters").

    A label that is a number ("2019") is scored as a number, so under ``"linear"`` a near year earns most of the
    credit; ``scheme="tolerance"`` with ``rel_tol=0`` asks for the exact value instead.
    """
    if match not in ("exact", "normalized"):
        raise ValueError(f"unknown ReFOCUS match {match!r}; use 'exact' or 'normalized'")
    read_number = float_number if match == "exact" else parse_number
    expected = read_number(truth)
    if expected is None:
        if match == "normalized":
            return exact_match_score(prediction, truth)
        # The answer line lost its sentence-final period ("FINAL ANSWER: U.S." reads "U.S"): a truth that ends with
        # one is matched without it too.
        return float(prediction == truth or (truth.endswith(".") and prediction == truth[:-1]))
    predicted = read_number(prediction)
    return 0.0 if predicted is None else _closeness(predicted, expected, scheme, rel_tol)


def exact_match(prediction: str, ground_truths: str | Sequence[str]) -> float:
    """Normalised exact match, part by part, best over the ground truths."""
    return score_answer(prediction, as_truth_list(ground_truths), exact_match_score)


def token_f1(prediction: str, ground_truths: str | Sequence[str], variant: F1Variant = "multiset") -> float:
    """Token F1, part by part, best over the ground truths."""
    return score_answer(prediction, as_truth_list(ground_truths), lambda p, t: token_f1_score(p, t, variant))
