"""The web search backends against a real HTTP server on 127.0.0.1 that speaks each API and injects faults."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from search_api_server import API_KEY, FLAVORS, FakeSearchApi, expected_titles

from agentic_vlm.tools.base import ToolContext
from agentic_vlm.tools.search import SearchTool, make_search_backend
from agentic_vlm.tools.search.http import parse_retry_after

# Small timings keep the suite fast; the logic under test is the same at any scale.
FAST = {"timeout_s": 0.25, "max_attempts": 3, "backoff_initial_s": 0.01, "backoff_max_s": 0.04,
        "requests_per_second": None}


def make_tool(flavor: str, base_url: str, top_k: int = 3, **policy) -> SearchTool:
    options = {**FAST, **policy, "base_url": base_url}
    if flavor != "searxng":
        options["api_key"] = API_KEY
    return SearchTool(make_search_backend(flavor, **options), top_k=top_k)


def run_searches(tool: SearchTool, queries: list[str]):
    """Search all ``queries`` concurrently on one event loop, as the rollout engine does, then close the tool."""

    async def main():
        try:
            return await asyncio.gather(*(tool(query, ToolContext(trajectory_id=str(i))) for i, query in
                                          enumerate(queries)))
        finally:
            await tool.aclose()

    return asyncio.run(main())


def expected_text(query: str, count: int) -> str:
    return "\n\n".join(
        f"{rank}. {title}\nSnippet {rank} about {query} & more."
        for rank, title in enumerate(expected_titles(query, count), start=1)
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_backend_speaks_its_api(flavor):
    with FakeSearchApi(flavor) as api:
        [observation] = run_searches(make_tool(flavor, api.base_url, top_k=3), ["violet river delta"])
    assert observation.ok, observation.error
    # Titles and snippets in rank order, the API's highlighting markup and entities turned into plain text.
    assert observation.text == expected_text("violet river delta", 3)
    assert [request.query for request in api.requests] == ["violet river delta"]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_no_results_is_said_plainly(flavor):
    with FakeSearchApi(flavor, results_per_query=0) as api:
        [observation] = run_searches(make_tool(flavor, api.base_url), ["zzqx unknown"])
    assert observation.ok
    assert observation.text == 'No results found for "zzqx unknown".'


@pytest.mark.parametrize("flavor", FLAVORS)
def test_every_fault_is_retried_and_the_search_still_succeeds(flavor):
    with FakeSearchApi(flavor, slow_s=0.6) as api:
        api.faults = ["slow", "429", "500", "malformed"]
        [observation] = run_searches(make_tool(flavor, api.base_url, max_attempts=5), ["amber lighthouse"])
    assert observation.ok, observation.error
    assert observation.text == expected_text("amber lighthouse", 3)
    assert [request.fault for request in api.requests] == ["slow", "429", "500", "malformed", None]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("slow", "no answer within 0.25 s"),
        ("429", "HTTP 429 Too Many Requests"),
        ("500", "HTTP 500 Internal Server Error"),
        ("malformed", "the answer was not valid JSON"),
    ],
)
def test_a_fault_that_persists_gives_an_error_observation(fault, reason):
    with FakeSearchApi("serper", slow_s=0.6) as api:
        api.faults = [fault] * 3
        [observation] = run_searches(make_tool("serper", api.base_url), ["amber lighthouse"])
    assert not observation.ok
    assert observation.error == observation.text
    assert observation.text.startswith("Search failed: serper search failed: gave up after 3 attempts (1: ")
    assert observation.text.count(reason) == 3
    assert len(api.requests) == 3


def test_connection_refused_gives_an_error_observation():
    tool = make_tool("brave", f"http://127.0.0.1:{closed_port()}", max_attempts=2)
    [observation] = run_searches(tool, ["amber lighthouse"])
    assert not observation.ok
    assert observation.text.startswith("Search failed: brave search failed: gave up after 2 attempts (1: ConnectError")


def test_connection_refused_is_retried_until_the_server_is_up():
    port = closed_port()
    servers = []
    starter = threading.Timer(0.3, lambda: servers.append(FakeSearchApi("searxng", port=port).__enter__()))
    starter.start()
    try:
        tool = make_tool("searxng", f"http://127.0.0.1:{port}", max_attempts=8, backoff_initial_s=0.05,
                         backoff_max_s=0.2)
        [observation] = run_searches(tool, ["amber lighthouse"])
    finally:
        starter.join()
        for server in servers:
            server.__exit__()
    assert observation.ok, observation.error
    assert observation.text == expected_text("amber lighthouse", 3)
    assert len(servers[0].requests) == 1


def test_retry_after_is_honoured():
    with FakeSearchApi("serpapi", retry_after="1") as api:
        api.faults = ["429"]
        [observation] = run_searches(make_tool("serpapi", api.base_url), ["amber lighthouse"])
    assert observation.ok, observation.error
    first, second = api.arrivals()
    # The backoff alone would wait at most 0.04 s; the server asked for 1 s.
    assert second - first >= 1.0


def test_a_retry_after_beyond_the_limit_fails_at_once():
    with FakeSearchApi("serper", retry_after="120") as api:
        api.faults = ["429"]
        [observation] = run_searches(make_tool("serper", api.base_url, max_retry_after_s=5), ["amber lighthouse"])
    assert not observation.ok
    assert "asked to retry after 120 s, longer than max_retry_after_s=5" in observation.text
    assert len(api.requests) == 1


@pytest.mark.parametrize("flavor", ["serper", "serpapi", "brave"])
def test_a_rejected_key_is_reported_without_retrying(flavor):
    with FakeSearchApi(flavor) as api:
        tool = SearchTool(make_search_backend(flavor, api_key="wrong-key", base_url=api.base_url, **FAST))
        [observation] = run_searches(tool, ["amber lighthouse"])
    assert not observation.ok
    assert observation.text.startswith(f"Search failed: {flavor} search failed: HTTP 40")
    assert len(api.requests) == 1


def test_a_missing_api_key_stops_the_run_at_configuration(monkeypatch):
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    with pytest.raises(ValueError, match="SERPER_API_KEY"):
        make_search_backend("serper")
    monkeypatch.setenv("SERPER_API_KEY", API_KEY)
    with FakeSearchApi("serper") as api:
        [observation] = run_searches(SearchTool(make_search_backend("serper", base_url=api.base_url)), ["x ray"])
    assert observation.ok, observation.error


@pytest.mark.parametrize("burst", [1, 3])
def test_rate_limit_spaces_requests(burst):
    rate = 10.0
    with FakeSearchApi("brave") as api:
        tool = make_tool("brave", api.base_url, requests_per_second=rate, burst=burst, max_concurrency=10)
        observations = run_searches(tool, [f"query {i}" for i in range(8)])
    assert all(observation.ok for observation in observations)
    arrivals = api.arrivals()
    # The first `burst` requests go at once; each later one waits for its token, 1/rate after the one before. The
    # spacing is measured from the first request that waited: the very first requests also pay for the client's
    # start, which shifts their arrival.
    assert arrivals[burst - 1] - arrivals[0] < 0.5 / rate
    for i in range(burst + 1, len(arrivals)):
        assert arrivals[i] - arrivals[burst] >= (i - burst) / rate * 0.9


@pytest.mark.parametrize("limit", [2, 6])
def test_concurrency_limit_bounds_requests_in_flight(limit):
    with FakeSearchApi("serper", delay_s=0.15) as api:
        tool = make_tool("serper", api.base_url, max_concurrency=limit)
        started = time.monotonic()
        observations = run_searches(tool, [f"query {i}" for i in range(6)])
        elapsed = time.monotonic() - started
    assert all(observation.ok for observation in observations)
    assert api.max_in_flight == limit
    assert elapsed >= 0.15 * 6 / limit


def test_each_search_gets_its_own_results_when_many_run_at_once():
    queries = [f"topic number {i}" for i in range(40)]
    with FakeSearchApi("searxng", delay_s=0.02) as api:
        observations = run_searches(make_tool("searxng", api.base_url, max_concurrency=8), queries)
    assert [observation.text for observation in observations] == [expected_text(q, 3) for q in queries]


def test_the_client_belongs_to_one_event_loop_until_closed():
    with FakeSearchApi("serper") as api:
        backend = make_search_backend("serper", api_key=API_KEY, base_url=api.base_url, **FAST)

        async def search_and_close(query: str):
            try:
                return await backend.search(query, 2)
            finally:
                await backend.aclose()

        # Closed on its loop, the backend may be used again on a new one...
        assert [result.title for result in asyncio.run(search_and_close("first"))] == expected_titles("first", 2)
        assert [result.title for result in asyncio.run(search_and_close("second"))] == expected_titles("second", 2)
        # ...but not from a second loop while the first one's connections are open.
        assert asyncio.run(backend.search("third", 2))
        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(backend.search("fourth", 2))


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    in_ten_seconds = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 10))
    assert 8.0 <= parse_retry_after(in_ten_seconds) <= 10.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0


def test_observation_respects_the_length_limits():
    with FakeSearchApi("brave") as api:
        backend = make_search_backend("brave", api_key=API_KEY, base_url=api.base_url, **FAST)
        tool = SearchTool(backend, top_k=5, max_snippet_chars=20, max_total_chars=100, max_query_chars=40)
        shown, refused = run_searches(tool, ["amber lighthouse", "a query far longer than the forty allowed"])
        assert len(api.requests) == 1  # the long query was never sent
    # Two results fit whole in 100 characters; the third is left out rather than cut.
    assert shown.text == "1. amber lighthouse result 1\nSnippet 1 about…\n\n2. amber lighthouse result 2\nSnippet 2 about…"
    assert not refused.ok
    assert refused.text == "Search failed: the query is 41 characters long; keep it under 40."
