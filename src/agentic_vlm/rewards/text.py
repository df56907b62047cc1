"""Answer normalisation and string scores: SQuAD-style exact match and token F1.

On English text these are the SQuAD v1.1 official script's scores. Two things differ from it, as in Visual-ARFT's
evaluation of MAT, so that the same rules serve Chinese answers and answers that are only an option letter:

- Text with a Chinese character loses its spaces ("软件 工程" is "软件工程") but keeps its articles and its other
  whitespace (a line break stays, as in MAT's evaluation); when either answer has a Chinese character, F1 counts the
  characters of both (a space of the other answer is a character too), not words.
- Two answers that both normalise to nothing ("A" against "A": "a" is an article; "!!!" against "!!!") are compared
  with their articles, or their punctuation if that is all they have, instead of as two empty strings: "(A)"
  matches "A" but "." and "the" do not (MAT's evaluation counts them equal). An empty answer never scores.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Literal

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCTUATION = frozenset(string.punctuation)
# The range Visual-ARFT's MAT evaluation takes for Chinese: CJK Unified Ideographs.
_CHINESE = re.compile("[\u4e00-\u9fff]")

F1Variant = Literal["multiset", "set"]


# Unicode's stream-safe limit (UAX #15): more combining marks in a row than this are dropped before NFKC, whose
# canonical reordering in CPython takes time quadratic in the length of a run of marks.
MAX_COMBINING_RUN = 30


def _is_punctuation(char: str) -> bool:
    # SQuAD drops ASCII punctuation (which includes symbols such as $ and %); Unicode punctuation ("“", "—", "。")
    # is dropped too so that typography does not decide a match.
    return char in _ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")


def nfkc(text: str) -> str:
    """NFKC of ``text``, in time linear in its length: runs of combining marks are cut to ``MAX_COMBINING_RUN``."""
    marks = "".join(char for char in set(text) if unicodedata.combining(char))
    if marks:
        text = re.sub(f"([{re.escape(marks)}]{{{MAX_COMBINING_RUN}}})[{re.escape(marks)}]+", r"\1", text)
    return unicodedata.normalize("NFKC", text)


def _fold(text: str) -> str:
    return nfkc(text).casefold()


def _drop_punctuation(text: str) -> str:
    return text.translate({ord(char): None for char in set(text) if _is_punctuation(char)})


def has_chinese(text: str) -> bool:
    return _CHINESE.search(text) is not None


def normalize_answer(text: str) -> str:
    """NFKC, casefold, drop punctuation and the articles a/an/the, collapse whitespace (SQuAD's normalisation);
    text with a Chinese character keeps its articles and loses all its whitespace.

    NFKC folds compatibility forms (full-width digits, ligatures) and casefold is Unicode's lowercase; both are
    no-ops on ASCII, where this is exactly SQuAD's ``normalize_answer``.
    """
    text = _drop_punctuation(_fold(text))
    if has_chinese(text):
        return text.replace(" ", "")
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match_score(prediction: str, truth: str) -> float:
    """1.0 if the normalised strings are equal and not empty (or both empty and equal as written), else 0.0."""
    return _exact_match(prediction, truth, normalize_answer(prediction), normalize_answer(truth))


def _exact_match(prediction: str, truth: str, normalized_prediction: str, normalized_truth: str) -> float:
    if not normalized_prediction and not normalized_truth:
        written = _written_form(prediction)
        return float(bool(written) and written == _written_form(truth))
    return float(normalized_prediction == normalized_truth)


def _written_form(text: str) -> str:
    """An answer that normalises to nothing, as compared instead: articles kept ("(A)" is "a"), and punctuation too
    when there is nothing else ("!!!")."""
    folded = _fold(text)
    return " ".join((_drop_punctuation(folded).strip() or folded).split())


def token_f1_score(prediction: str, truth: str, variant: F1Variant = "multiset") -> float:
    """Harmonic mean of token precision and recall after normalisation (tokens: words, or characters when an answer
    has a Chinese character); 1.0 on an exact match.

    ``"multiset"`` counts repeated tokens (SQuAD's F1). ``"set"`` is Visual-ARFT's: the number of distinct shared
    tokens over each side's token count with repeats, so repeating a word costs precision. A side without tokens
    scores as exact match does.
    """
    if variant not in ("multiset", "set"):
        raise ValueError(f"unknown F1 variant {variant!r}; use 'multiset' or 'set'")
    predicted, expected = normalize_answer(prediction), normalize_answer(truth)
    if _exact_match(prediction, truth, predicted, expected):
        return 1.0
    if has_chinese(predicted) or has_chinese(expected):
        predicted, expected = list(predicted), list(expected)
    else:
        predicted, expected = predicted.split(), expected.split()
    if not predicted or not expected:
        return 0.0
    if variant == "multiset":
        shared = sum((Counter(predicted) & Counter(expected)).values())
    else:
        shared = len(set(predicted) & set(expected))
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(expected)
    return 2 * precision * recall / (precision + recall)
