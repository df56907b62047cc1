"""The search tool: ``<search>query</search>`` -> the top results, numbered, each a title and a snippet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base import Observation, Tool, ToolContext
from .backends import SearchBackend, make_search_backend
from .cache import CACHE_MODES, SearchCache
from .results import SearchError, SearchResult


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary when one is near, marked with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def format_results(results: list[SearchResult], max_snippet_chars: int, max_total_chars: int) -> str:
    """The results as the model reads them: ``1. Title`` then the snippet on the next line, a blank line between
    results; each snippet cut to ``max_snippet_chars``. Results that do not fit whole in ``max_total_chars`` are left
    out, rather than shown as a fragment, except the first, which is cut to fit."""
    text = ""
    for number, result in enumerate(results, start=1):
        entry = f"{number}. {result.title or result.source or 'Untitled'}\n{truncate(result.snippet, max_snippet_chars)}"
        if not text:
            text = truncate(entry, max_total_chars)
        elif len(text) + 2 + len(entry) <= max_total_chars:
            text += "\n\n" + entry
        else:
            break
    return text


class SearchTool(Tool):
    """Look a query up with a search backend and show the top results.

    Args:
        backend: A :class:`SearchBackend`, or the name of one for :func:`make_search_backend` (``local`` by default,
            which needs ``corpus_path`` in ``backend_options``).
        backend_options: Options for :func:`make_search_backend` when ``backend`` is a name: ``corpus_path`` and
            ``index_dir`` for ``local``; ``api_key``, ``base_url`` and the fields of :class:`.http.HttpPolicy`
            (``timeout_s``, ``max_attempts``, ``max_concurrency``, ``requests_per_second``...) for the web APIs.
        top_k: Results shown per search.
        max_snippet_chars: Length limit of each result's snippet.
        max_total_chars: Length limit of the whole observation.
        max_query_chars: Longer queries are refused with an explanation rather than sent (paid APIs bill them, and
            a runaway generation is not a query).
        cache: ``off``, ``read_write`` (record results, answer repeats from the recording) or ``replay`` (answer
            only from the recording, never from the backend). See :mod:`.cache`.
        cache_path: The SQLite file of the recording; needed unless ``cache`` is ``off``.
    """

    name = "search"
    description = "a query: search for it and read the top results"
    parameters = {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "what to search for"}},
        "required": ["query"],
    }

    def __init__(
        self,
        backend: SearchBackend | str = "local",
        *,
        backend_options: dict[str, Any] | None = None,
        top_k: int = 3,
        max_snippet_chars: int = 300,
        max_total_chars: int = 1500,
        max_query_chars: int = 300,
        cache: str = "off",
        cache_path: str | Path | None = None,
    ):
        if isinstance(backend, str):
            backend = make_search_backend(backend, **(backend_options or {}))
        elif backend_options:
            raise ValueError("backend_options are for a backend given by name, not for a SearchBackend object")
        if min(top_k, max_snippet_chars, max_total_chars, max_query_chars) < 1:
            raise ValueError("top_k and the length limits must be positive")
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
        if cache != "off" and cache_path is None:
            raise ValueError(f"cache={cache!r} needs a cache_path")
        self.backend = backend
        self.top_k = top_k
        self.max_snippet_chars = max_snippet_chars
        self.max_total_chars = max_total_chars
        self.max_query_chars = max_query_chars
        self.cache = None if cache == "off" else SearchCache(cache_path, cache)

    async def __call__(self, argument: str, context: ToolContext) -> Observation:
        query = " ".join(argument.split())
        if not query:
            return Observation.failure("Search failed: the query is empty. Write what to look up between <search> "
                                       "and </search>.")
        if len(query) > self.max_query_chars:
            return Observation.failure(f"Search failed: the query is {len(query)} characters long; keep it under "
                                       f"{self.max_query_chars}.")
        namespace = self.backend.cache_namespace
        results = None if self.cache is None else await self.cache.aget(namespace, query, self.top_k)
        if results is None:
            if self.cache is not None and self.cache.replay_only:
                return Observation.failure(
                    f'Search failed: the replay-only cache {self.cache.path} has no results for the query "{query}" '
                    f"(backend {namespace}, top_k={self.top_k})."
                )
            try:
                results = await self.backend.search(query, self.top_k)
            except SearchError as error:
                return Observation.failure(f"Search failed: {error}")
            if self.cache is not None:
                await self.cache.aput(namespace, query, self.top_k, results)
        if not results:
            return Observation(text=f'No results found for "{query}".')
        return Observation(text=format_results(results, self.max_snippet_chars, self.max_total_chars))

    async def aclose(self) -> None:
        await self.backend.aclose()
        if self.cache is not None:
            self.cache.close()

    def __repr__(self) -> str:
        return f"SearchTool(backend={self.backend.cache_namespace!r}, top_k={self.top_k})"
