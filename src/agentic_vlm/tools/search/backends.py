"""Search backends: the offline local index (the default) and four web APIs, behind one interface.

A backend answers ``await backend.search(query, k)`` with at most ``k`` :class:`SearchResult`, best first, or raises
:class:`SearchError` saying what failed. Web backends speak their API's real request and JSON answer; each takes a
``base_url`` (to point it at a proxy, or at a test server) and an :class:`HttpPolicy` (timeouts, retries, limits).

``make_search_backend(name, **options)`` builds one from flat options, as a YAML config gives them.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import os
from pathlib import Path
from typing import Any

from .http import HttpPolicy, RetryingHttpClient
from .local_index import LocalIndex
from .results import SearchError, SearchResult


class SearchBackend(abc.ABC):
    name: str

    @property
    def cache_namespace(self) -> str:
        """What the search cache keys this backend's results by: two backends with the same namespace must give the
        same results for the same query."""
        return self.name

    @abc.abstractmethod
    async def search(self, query: str, k: int) -> list[SearchResult]:
        """At most ``k`` results for ``query``, best first; raises :class:`SearchError` when the search fails."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once, on the loop the backend was used on."""


# --------------------------------------------------------------------------------------------------------- local

class LocalBackend(SearchBackend):
    """BM25 over a JSONL passage corpus (see :mod:`.local_index`), fully offline.

    The index is loaded (or built and cached under ``index_dir``) when the backend is made, so that a missing or
    malformed corpus stops the run at start rather than turning every search into an error.

    Searches that arrive together (every trajectory of a turn searching at once) are answered as one batch, in one
    worker thread: scoring stays off the event loop, and the batch pays for one thread hand-off instead of one each.
    """

    name = "local"

    def __init__(self, corpus_path: str | Path, index_dir: str | Path | None = None, k1: float = 1.5, b: float = 0.75):
        self.index = LocalIndex.load_or_build(corpus_path, index_dir, k1=k1, b=b)
        self._waiting: list[tuple[str, int, asyncio.Future]] = []
        self._batches: set[asyncio.Task] = set()  # referenced until done: the loop keeps only weak references

    @property
    def cache_namespace(self) -> str:
        return f"local:{self.index.fingerprint}"

    async def search(self, query: str, k: int) -> list[SearchResult]:
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self._waiting.append((query, k, answer))
        if len(self._waiting) == 1:
            batch = loop.create_task(self._answer_waiting())
            self._batches.add(batch)
            batch.add_done_callback(self._batches.discard)
        return await answer

    async def _answer_waiting(self) -> None:
        # One turn of the loop lets the other searches dispatched in this turn join the batch.
        await asyncio.sleep(0)
        waiting, self._waiting = self._waiting, []
        queries = [query for query, _, _ in waiting]
        try:
            ranked = await asyncio.to_thread(self.index.search, queries, max(k for _, k, _ in waiting))
        except Exception as error:  # handed to every caller of the batch, whose tool call reports it
            for _, _, answer in waiting:
                if not answer.done():
                    answer.set_exception(error)
            return
        for (_, k, answer), passages in zip(waiting, ranked, strict=True):
            if not answer.done():  # a caller that timed out has cancelled its future
                answer.set_result([SearchResult(p.title, p.text, p.id) for p, _ in passages[:k]])


# ----------------------------------------------------------------------------------------------------------- web

def _api_key(api_key: str | None, variable: str, backend: str) -> str:
    api_key = api_key or os.environ.get(variable)
    if not api_key:
        raise ValueError(f"the {backend} search backend needs an API key: set {variable} or pass api_key")
    return api_key


def _result_items(payload: Any, *path: str) -> list[dict]:
    """The list of result objects at ``path`` in an API's answer; an absent list means no results."""
    node = payload
    for key in path:
        if not isinstance(node, dict):
            raise SearchError(f"unexpected answer: expected an object holding {'.'.join(path)!r}, got {node!r:.100}")
        if node.get(key) is None:
            return []
        node = node[key]
    if not isinstance(node, list):
        raise SearchError(f"unexpected answer: {'.'.join(path)!r} is not a list")
    return [item for item in node if isinstance(item, dict)]


class WebBackend(SearchBackend):
    """What the web backends share: a base URL and a retrying HTTP client. Subclasses send one request and parse."""

    default_base_url: str

    def __init__(self, base_url: str | None, policy: HttpPolicy):
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.http = RetryingHttpClient(policy)

    async def search(self, query: str, k: int) -> list[SearchResult]:
        try:
            return (await self._search(query, k))[:k]
        except SearchError as error:
            raise SearchError(f"{self.name} search failed: {error}") from None

    @abc.abstractmethod
    async def _search(self, query: str, k: int) -> list[SearchResult]: ...

    async def aclose(self) -> None:
        await self.http.aclose()


class SerperBackend(WebBackend):
    """Google results through Serper: ``POST /search`` with ``X-API-KEY`` and ``{"q", "num"}``, answering
    ``{"organic": [{"title", "link", "snippet"}]}``. The key comes from ``SERPER_API_KEY`` if not given."""

    name = "serper"
    default_base_url = "https://google.serper.dev"

    def __init__(self, api_key: str | None = None, base_url: str | None = None, policy: HttpPolicy = HttpPolicy()):
        super().__init__(base_url, policy)
        self.api_key = _api_key(api_key, "SERPER_API_KEY", self.name)

    async def _search(self, query: str, k: int) -> list[SearchResult]:
        payload = await self.http.request_json(
            "POST", f"{self.base_url}/search", json={"q": query, "num": k}, headers={"X-API-KEY": self.api_key}
        )
        return [SearchResult.from_web(i.get("title"), i.get("snippet"), i.get("link"))
                for i in _result_items(payload, "organic")]


class SerpApiBackend(WebBackend):
    """Google results through SerpApi: ``GET /search.json?engine=google&q=...&api_key=...``, answering
    ``{"organic_results": [{"title", "link", "snippet"}]}``, or ``{"error": ...}``, which for a query Google has
    nothing for says so in ``search_information.organic_results_state``. The key comes from ``SERPAPI_API_KEY``."""

    name = "serpapi"
    default_base_url = "https://serpapi.com"

    def __init__(self, api_key: str | None = None, base_url: str | None = None, policy: HttpPolicy = HttpPolicy()):
        super().__init__(base_url, policy)
        self.api_key = _api_key(api_key, "SERPAPI_API_KEY", self.name)

    async def _search(self, query: str, k: int) -> list[SearchResult]:
        payload = await self.http.request_json(
            "GET", f"{self.base_url}/search.json", params={"engine": "google", "q": query, "api_key": self.api_key}
        )
        if isinstance(payload, dict) and "error" in payload and "organic_results" not in payload:
            state = (payload.get("search_information") or {}).get("organic_results_state")
            if state == "Fully empty":
                return []
            raise SearchError(f"the API answered with an error: {payload['error']}")
        return [SearchResult.from_web(i.get("title"), i.get("snippet"), i.get("link"))
                for i in _result_items(payload, "organic_results")]


class BraveBackend(WebBackend):
    """Brave Search: ``GET /res/v1/web/search?q=...&count=...`` with ``X-Subscription-Token``, answering
    ``{"web": {"results": [{"title", "url", "description"}]}}``. The key comes from ``BRAVE_API_KEY``."""

    name = "brave"
    default_base_url = "https://api.search.brave.com"
    max_count = 20  # the API refuses a larger count

    def __init__(self, api_key: str | None = None, base_url: str | None = None, policy: HttpPolicy = HttpPolicy()):
        super().__init__(base_url, policy)
        self.api_key = _api_key(api_key, "BRAVE_API_KEY", self.name)

    async def _search(self, query: str, k: int) -> list[SearchResult]:
        payload = await self.http.request_json(
            "GET", f"{self.base_url}/res/v1/web/search",
            params={"q": query, "count": min(k, self.max_count)},
            headers={"X-Subscription-Token": self.api_key, "Accept": "application/json"},
        )
        return [SearchResult.from_web(i.get("title"), i.get("description"), i.get("url"))
                for i in _result_items(payload, "web", "results")]


class SearxngBackend(WebBackend):
    """A self-hosted SearXNG: ``GET {base_url}/search?q=...&format=json``, answering
    ``{"results": [{"title", "url", "content"}]}``. The instance must list ``json`` in ``search.formats`` of its
    settings, or it answers 403."""

    name = "searxng"

    def __init__(self, base_url: str, policy: HttpPolicy = HttpPolicy()):
        if not base_url:
            raise ValueError("the searxng search backend needs the base_url of a SearXNG instance")
        super().__init__(base_url, policy)

    @property
    def cache_namespace(self) -> str:
        # Each instance has its own engines and settings, so its own results.
        return f"{self.name}:{self.base_url}"

    async def _search(self, query: str, k: int) -> list[SearchResult]:
        payload = await self.http.request_json(
            "GET", f"{self.base_url}/search", params={"q": query, "format": "json"}
        )
        return [SearchResult.from_web(i.get("title"), i.get("content"), i.get("url"))
                for i in _result_items(payload, "results")]


BACKENDS: dict[str, type[SearchBackend]] = {
    backend.name: backend
    for backend in (LocalBackend, SerperBackend, SerpApiBackend, BraveBackend, SearxngBackend)
}
_POLICY_FIELDS = {field.name for field in dataclasses.fields(HttpPolicy)}


def make_search_backend(name: str, **options: Any) -> SearchBackend:
    """The backend called ``name`` (``local``, ``serper``, ``serpapi``, ``brave``, ``searxng``), from flat options.

    Options named like :class:`HttpPolicy`'s fields (``timeout_s``, ``max_attempts``, ``requests_per_second``...)
    make the web backends' policy; the rest go to the backend's constructor (``corpus_path``, ``api_key``,
    ``base_url``...).
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown search backend {name!r}; choose one of {sorted(BACKENDS)}")
    backend_class = BACKENDS[name]
    if issubclass(backend_class, WebBackend):
        policy = HttpPolicy(**{key: options.pop(key) for key in list(options) if key in _POLICY_FIELDS})
        return backend_class(policy=policy, **options)
    return backend_class(**options)
