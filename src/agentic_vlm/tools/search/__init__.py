"""The search tool and its backends: an offline BM25 index (the default), Serper, SerpApi, Brave and SearXNG.

Build a backend with ``make_search_backend(name, **options)`` and give it to ``SearchTool``, or let the tool build
it: ``SearchTool("local", backend_options={"corpus_path": "data/search/corpus.jsonl"})``.
"""

from .backends import (
    BACKENDS,
    BraveBackend,
    LocalBackend,
    SearchBackend,
    SearxngBackend,
    SerpApiBackend,
    SerperBackend,
    WebBackend,
    make_search_backend,
)
from .cache import SearchCache, normalize_query
from .http import HttpPolicy, RetryingHttpClient
from .local_index import LocalIndex, Passage
from .results import SearchError, SearchResult
from .tool import SearchTool, format_results

__all__ = [
    "BACKENDS",
    "BraveBackend",
    "HttpPolicy",
    "LocalBackend",
    "LocalIndex",
    "Passage",
    "RetryingHttpClient",
    "SearchBackend",
    "SearchCache",
    "SearchError",
    "SearchResult",
    "SearchTool",
    "SearxngBackend",
    "SerpApiBackend",
    "SerperBackend",
    "WebBackend",
    "format_results",
    "make_search_backend",
    "normalize_query",
]
