"""Answer normalisation and string scores (SQuAD-style)."""

from __future__ import annotations

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, ground_truths: str | list[str]) -> float:
    """1.0 if the normalised prediction equals any normalised ground truth, else 0.0."""
    if isinstance(ground_truths, str):
        ground_truths = [ground_truths]
    normalized = normalize_answer(prediction)
    return float(any(normalized == normalize_answer(truth) for truth in ground_truths))
