"""An offline BM25 index over a JSONL corpus of passages, built once with ``bm25s`` and cached on disk.

The corpus has one passage per line: ``{"id": ..., "title": ..., "text": ...}`` (``text`` is required; ``title``
and ``id`` are optional, the id defaults to the line number). Title and text are indexed together, so a query
that names a passage's subject finds it.

The cache directory holds one sub-directory per (corpus content, settings): editing the corpus or changing ``k1``
or ``b`` builds a new index instead of reading a stale one. A build writes to a temporary directory and renames it
into place, so processes that start together (one per GPU) never read a half-written index.

Queries are scored here rather than by ``bm25s.BM25.retrieve``: its numpy path accumulates scores with
``np.add.at``, which is far slower than one ``np.bincount`` over the postings of all query tokens, and it returns
documents that match no query token when fewer than ``k`` do.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

# Bumped when the way passages are indexed changes, so that old caches are not read.
_INDEX_FORMAT = 1


@dataclass(frozen=True)
class Passage:
    id: str
    title: str
    text: str


def default_index_dir() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "agentic_vlm" / "search_index"


def read_corpus(path: Path, data: bytes) -> list[Passage]:
    """Parse the JSONL corpus ``data`` read from ``path``; errors name the file, the line and the field."""
    passages = []
    for line_number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}, line {line_number}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise ValueError(f"{path}, line {line_number}: expected an object with a string field 'text'")
        title = row.get("title") or ""
        if not isinstance(title, str):
            raise ValueError(f"{path}, line {line_number}: field 'title' must be a string")
        passages.append(Passage(id=str(row.get("id", line_number)), title=title, text=row["text"]))
    if not passages:
        raise ValueError(f"{path}: the corpus has no passages")
    return passages


def tokenize(texts: list[str]) -> list[list[str]]:
    """The one tokenizer of passages and queries: lowercased words of two or more characters, English stopwords
    removed, no stemming."""
    return bm25s.tokenize(texts, lower=True, stopwords="en", return_ids=False, show_progress=False)


class LocalIndex:
    """BM25 (Lucene's variant) over passages. Use :meth:`load_or_build`; :meth:`search` takes a batch of queries."""

    def __init__(self, passages: list[Passage], retriever: bm25s.BM25, fingerprint: str):
        self.passages = passages
        self.fingerprint = fingerprint
        self._vocabulary: dict[str, int] = retriever.vocab_dict
        scores = retriever.scores
        # The index is a sparse token x passage matrix in CSC form: the passages holding token t, and t's BM25
        # contribution to each, are indices[indptr[t]:indptr[t+1]] and data[indptr[t]:indptr[t+1]].
        self._postings_start = scores["indptr"][:-1]
        self._postings_end = scores["indptr"][1:]
        self._passage_of_posting = scores["indices"]
        self._score_of_posting = scores["data"]
        if scores["num_docs"] != len(passages):
            raise ValueError(f"index {fingerprint} has {scores['num_docs']} passages, the corpus {len(passages)}")

    @classmethod
    def load_or_build(cls, corpus_path: str | Path, index_dir: str | Path | None = None, k1: float = 1.5,
                      b: float = 0.75) -> LocalIndex:
        """The index of ``corpus_path`` with BM25 parameters ``k1`` and ``b``: read from ``index_dir`` if an index
        of this corpus content and these settings is there, else built and saved there."""
        corpus_path = Path(corpus_path)
        if not corpus_path.is_file():
            raise FileNotFoundError(f"search corpus {corpus_path} does not exist")
        data = corpus_path.read_bytes()
        settings = {"format": _INDEX_FORMAT, "bm25s": bm25s.__version__, "k1": k1, "b": b}
        digest = hashlib.sha256(data)
        digest.update(json.dumps(settings, sort_keys=True).encode())
        fingerprint = digest.hexdigest()[:20]
        passages = read_corpus(corpus_path, data)
        index_path = Path(index_dir or default_index_dir()) / f"{corpus_path.stem}-{fingerprint}"
        if not index_path.is_dir():
            _build(passages, index_path, k1=k1, b=b)
        retriever = bm25s.BM25.load(index_path, load_corpus=False, show_progress=False)
        return cls(passages, retriever, fingerprint)

    def search(self, queries: list[str], k: int) -> list[list[tuple[Passage, float]]]:
        """The ``k`` best passages of each query with their scores, best first; only passages that share a token
        with the query, so a query of stopwords or unknown words finds nothing. Ties go to the earlier passage."""
        return [self._search_one(tokens, k) for tokens in tokenize(queries)]

    def _search_one(self, tokens: list[str], k: int) -> list[tuple[Passage, float]]:
        token_ids = [self._vocabulary[token] for token in tokens if token in self._vocabulary]
        if not token_ids or k < 1:
            return []
        ranges = [slice(self._postings_start[t], self._postings_end[t]) for t in token_ids]
        scores = np.bincount(
            np.concatenate([self._passage_of_posting[r] for r in ranges]),
            weights=np.concatenate([self._score_of_posting[r] for r in ranges]),
            minlength=len(self.passages),
        )
        k = min(k, len(scores))
        # Selecting the k smallest of the negated scores, not the k largest of the scores: numpy's introselect
        # is fast for a small k-th index and over ten times slower near the end of an array with many ties.
        negated = -scores
        best = np.argpartition(negated, k - 1)[:k]
        best = best[np.lexsort((best, negated[best]))]
        return [(self.passages[i], float(scores[i])) for i in best if scores[i] > 0]


def _build(passages: list[Passage], index_path: Path, k1: float, b: float) -> None:
    retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
    retriever.index(tokenize([f"{p.title}\n{p.text}" for p in passages]), show_progress=False)
    index_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{index_path.name}-", dir=index_path.parent))
    try:
        retriever.save(staging, show_progress=False)
        os.rename(staging, index_path)
    except OSError:
        # Another process renamed its build into place first: the same content, so use that one.
        if not index_path.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
