"""Answer normalisation and string scores: SQuAD-style exact match and token F1.

An answer with no token left after normalisation (empty, only punctuation, only articles) scores 0 against anything:
a non-answer never earns credit, even against a degenerate reference.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Literal

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCTUATION = frozenset(string.punctuation)

F1Variant = Literal["multiset", "set"]


def _is_punctuation(char: str) -> bool:
    # SQuAD drops ASCII punctuation (which includes symbols such as $ and %); Unicode punctuation ("“", "—", "。")
    # is dropped too so that typography does not decide a match.
    return char in _ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")


def normalize_answer(text: str) -> str:
    """NFKC, casefold, drop punctuation and the articles a/an/the, collapse whitespace (SQuAD's normalisation).

    NFKC folds compatibility forms (full-width digits, ligatures) and casefold is Unicode's lowercase; both are
    no-ops on ASCII, where this is exactly SQuAD's ``normalize_answer``.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(char for char in text if not _is_punctuation(char))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def exact_match_score(prediction: str, truth: str) -> float:
    """1.0 if the normalised strings are equal and not empty, else 0.0."""
    normalized = normalize_answer(prediction)
    return float(bool(normalized) and normalized == normalize_answer(truth))


def token_f1_score(prediction: str, truth: str, variant: F1Variant = "multiset") -> float:
    """Harmonic mean of token precision and recall after normalisation.

    ``"multiset"`` counts repeated tokens (SQuAD's F1). ``"set"`` counts each distinct token once, as Visual-ARFT
    does; Visual-ARFT divides the distinct shared tokens by the token counts with repeats, which scores an answer
    with a repeated word below 1 against itself, so here both sides are sets.
    """
    predicted, expected = answer_tokens(prediction), answer_tokens(truth)
    if not predicted or not expected:
        return 0.0
    if variant == "multiset":
        shared = sum((Counter(predicted) & Counter(expected)).values())
        n_predicted, n_expected = len(predicted), len(expected)
    elif variant == "set":
        shared = len(set(predicted) & set(expected))
        n_predicted, n_expected = len(set(predicted)), len(set(expected))
    else:
        raise ValueError(f"unknown F1 variant {variant!r}; use 'multiset' or 'set'")
    if shared == 0:
        return 0.0
    precision, recall = shared / n_predicted, shared / n_expected
    return 2 * precision * recall / (precision + recall)
