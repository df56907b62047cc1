"""Numeric answers: parsing ("1,234.5 kg", "$3", "45%", "−2e3") and closeness scores."""

from __future__ import annotations

import math
import re

from .text import nfkc

# One number, optionally signed and after a currency symbol, with optional thousands separators (groups of three
# digits), decimals and exponent, optionally followed by a percent sign and a unit or comment without digits.
# Text before the number is not allowed: "COVID-19" or "about 3" are not numeric answers.
# Possessive quantifiers (*+, ++) never give back what they matched: what follows each of them cannot start with
# what it matched, so they change no result, and they keep a long run of spaces or digits from being re-scanned
# once per character it could end at ("3", 16,000 spaces, "4" took seconds).
_NUMERIC_ANSWER = re.compile(
    r"""
    (?P<sign>[-+]?)\s*+
    [$€£¥₹]?\s*+
    (?P<inner_sign>[-+]?)
    (?P<digits>\d{1,3}(?:,\d{3})++(?:\.\d++)?|\d++(?:\.\d++)?|\.\d++)
    (?P<exponent>[eE][-+]?\d++)?
    \s*+%?
    (?P<suffix>[^\d]*+)
    """,
    re.VERBOSE,
)


def parse_number(text: str) -> float | None:
    """The value of an answer that is a single number, or ``None`` if it is not one.

    Currency and percent signs, thousands separators and a trailing unit are dropped ("45%" is 45, not 0.45: chart
    answers write percentages as numbers). A comma that does not separate groups of three digits makes the text
    ambiguous (a decimal comma?), so it is not read as a number.
    """
    text = nfkc(text).replace("\u2212", "-").strip().rstrip(".")
    match = _NUMERIC_ANSWER.fullmatch(text)
    if match is None or (match["sign"] and match["inner_sign"]):
        return None
    negative = "-" in (match["sign"] + match["inner_sign"])
    value = float(match["digits"].replace(",", "") + (match["exponent"] or ""))
    if not math.isfinite(value):
        return None
    return -value if negative else value


def within_relative_tolerance(prediction: float, truth: float, rel_tol: float) -> bool:
    """``|prediction - truth| <= rel_tol * |truth|`` (ChartQA's relaxed accuracy); a zero truth must be hit exactly."""
    return abs(prediction - truth) <= rel_tol * abs(truth)


def relative_closeness(prediction: float, truth: float) -> float:
    """VTool-R1's graded score ``1 - |a - b| / max(|a|, |b|)``, clipped to [0, 1].

    1 when equal, 0 when one is zero and the other is not, and 0 for opposite signs (the unclipped formula would go
    down to -1 there, a penalty for a wrong number that no wrong text answer receives).
    """
    if prediction == truth:
        return 1.0
    largest = max(abs(prediction), abs(truth))
    return max(0.0, 1.0 - abs(prediction - truth) / largest)
