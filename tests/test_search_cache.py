"""The search cache: record a run against a real (loopback) API, replay it exactly with no network."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket

import pytest
from search_api_server import API_KEY, FakeSearchApi

from agentic_vlm.tools.base import ToolContext
from agentic_vlm.tools.search import SearchCache, SearchResult, SearchTool, make_search_backend, normalize_query

FAST = {"timeout_s": 0.25, "max_attempts": 2, "backoff_initial_s": 0.01, "requests_per_second": None}


def serper_tool(base_url: str, cache: str, cache_path, top_k: int = 3) -> SearchTool:
    backend = make_search_backend("serper", api_key=API_KEY, base_url=base_url, **FAST)
    return SearchTool(backend, top_k=top_k, cache=cache, cache_path=cache_path)


def run_in_order(tool: SearchTool, queries: list[str]) -> list:
    async def main():
        try:
            return [await tool(query, ToolContext("t")) for query in queries]
        finally:
            await tool.aclose()

    return asyncio.run(main())


def unreachable_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_read_write_records_and_answers_repeats_from_the_cache(tmp_path):
    cache_path = tmp_path / "search.sqlite"
    with FakeSearchApi("serper") as api:
        first, repeat, other = run_in_order(
            serper_tool(api.base_url, "read_write", cache_path),
            ["Amber  Lighthouse", "amber lighthouse", "blue harbour"],
        )
        # The same query, normalised, asks the API once; another k is another entry.
        assert [request.query for request in api.requests] == ["Amber Lighthouse", "blue harbour"]
        [more] = run_in_order(serper_tool(api.base_url, "read_write", cache_path, top_k=5), ["amber lighthouse"])
        assert len(api.requests) == 3
    assert first.ok and repeat.text == first.text and other.ok
    assert more.text.count("\n\n") == 4


def test_replay_reproduces_a_recorded_run_without_network(tmp_path):
    cache_path = tmp_path / "search.sqlite"
    queries = ["amber lighthouse", "blue harbour", "copper mine"]
    with FakeSearchApi("serper") as api:
        recorded = run_in_order(serper_tool(api.base_url, "read_write", cache_path), queries)
    # The API is gone: replay must not need it.
    replayed = run_in_order(serper_tool(unreachable_url(), "replay", cache_path), queries + ["  AMBER lighthouse "])
    assert [o.text for o in replayed] == [o.text for o in recorded] + [recorded[0].text]
    assert all(observation.ok for observation in replayed)


def test_replay_of_a_query_never_recorded_is_a_clear_error(tmp_path):
    cache_path = tmp_path / "search.sqlite"
    with FakeSearchApi("serper") as api:
        run_in_order(serper_tool(api.base_url, "read_write", cache_path), ["amber lighthouse"])
    with FakeSearchApi("serper") as api:
        [missing] = run_in_order(serper_tool(api.base_url, "replay", cache_path), ["violet canyon"])
        assert api.requests == []  # replay never asks the backend, even when it is reachable
    assert not missing.ok
    assert 'has no results for the query "violet canyon"' in missing.text
    assert str(cache_path) in missing.text and "backend serper" in missing.text
    assert len(SearchCache(cache_path, "replay")) == 1


def test_a_failed_search_is_not_recorded(tmp_path):
    cache_path = tmp_path / "search.sqlite"
    with FakeSearchApi("serper") as api:
        api.faults = ["500", "500"]
        failed, retried = run_in_order(serper_tool(api.base_url, "read_write", cache_path), ["amber", "amber"])
    assert not failed.ok and retried.ok
    assert len(SearchCache(cache_path, "replay")) == 1


def test_cache_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="needs a cache_path"):
        serper_tool("http://127.0.0.1:1", "read_write", None)
    with pytest.raises(ValueError, match="cache must be one of"):
        serper_tool("http://127.0.0.1:1", "record", tmp_path / "c.sqlite")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        serper_tool("http://127.0.0.1:1", "replay", tmp_path / "never-recorded.sqlite")


def test_query_normalisation():
    assert normalize_query("  Amber\tLIGHTHOUSE \n") == "amber lighthouse"
    assert normalize_query("Ｃａｆé") == normalize_query("café")


def _write_entries(cache_path, writer: int) -> None:
    cache = SearchCache(cache_path, "read_write")
    for i in range(60):
        cache.put("serper", f"writer {writer} query {i}", 3, [SearchResult(f"title {i}", "snippet")])


def test_processes_writing_at_once_lose_nothing(tmp_path):
    cache_path = tmp_path / "shared.sqlite"
    SearchCache(cache_path, "read_write").close()  # the file exists before the writers race
    # Forked, the writers start at once, without paying for imports that would spread them out in time.
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write_entries, args=(cache_path, n)) for n in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
    assert [writer.exitcode for writer in writers] == [0, 0, 0]
    cache = SearchCache(cache_path, "replay")
    assert len(cache) == 180
    assert cache.get("serper", "writer 2 query 59", 3) == [SearchResult("title 59", "snippet")]


def test_two_searxng_instances_keep_separate_entries(tmp_path):
    # Each SearXNG instance has its own engines and settings: one's results must not answer for the other.
    cache_path = tmp_path / "search.sqlite"

    def searxng_tool(base_url: str) -> SearchTool:
        backend = make_search_backend("searxng", base_url=base_url, **FAST)
        return SearchTool(backend, top_k=3, cache="read_write", cache_path=cache_path)

    with FakeSearchApi("searxng") as first, FakeSearchApi("searxng") as second:
        run_in_order(searxng_tool(first.base_url), ["amber lighthouse"])
        run_in_order(searxng_tool(second.base_url), ["amber lighthouse"])
        run_in_order(searxng_tool(first.base_url), ["amber lighthouse"])
        assert [len(first.requests), len(second.requests)] == [1, 1]
