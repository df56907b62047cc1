"""The offline search backend end to end: a real BM25 index built from a JSONL corpus, cached on disk, searched."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from pathlib import Path

import pytest

from agentic_vlm.tools.base import ToolContext
from agentic_vlm.tools.search import LocalBackend, LocalIndex, SearchResult, SearchTool, format_results, local_index

PASSAGES = [
    {"id": "otter", "title": "River otter", "text": "The river otter hunts fish in cold streams and builds dens."},
    {"id": "lamp", "title": "Brass lamp", "text": "A brass lamp burns oil; its wick is trimmed every evening."},
    {"id": "bridge", "title": "Kestrel Bridge", "text": "Kestrel Bridge spans the Ulm river and opened in 1887."},
    {"id": "glass", "title": "Glassblowing", "text": "Glassblowers shape molten glass with a blowpipe and tongs."},
    {"id": "ulm", "title": "Ulm river", "text": "The Ulm river rises in the hills and flows past Kestrel Bridge."},
]


def write_corpus(path: Path, passages=PASSAGES) -> Path:
    path.write_text("".join(json.dumps(passage) + "\n" for passage in passages))
    return path


def test_the_relevant_passage_ranks_first(tmp_path):
    index = LocalIndex.load_or_build(write_corpus(tmp_path / "corpus.jsonl"), tmp_path / "index")
    ranked = index.search(["when did Kestrel Bridge open", "otter dens", "molten glass tongs"], k=3)
    assert [[passage.id for passage, _ in results][0] for results in ranked] == ["bridge", "otter", "glass"]
    scores = [score for _, score in ranked[0]]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0


def test_only_matching_passages_are_returned(tmp_path):
    index = LocalIndex.load_or_build(write_corpus(tmp_path / "corpus.jsonl"), tmp_path / "index")
    [ulm, stopwords, unknown] = index.search(["Ulm", "the of and is", "zyxwv"], k=10)
    assert {passage.id for passage, _ in ulm} == {"bridge", "ulm"}
    assert stopwords == [] and unknown == []


def test_the_index_is_built_once_and_rebuilt_when_the_corpus_changes(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    first = LocalIndex.load_or_build(corpus, tmp_path / "index")
    [cached] = list((tmp_path / "index").iterdir())
    assert cached.name == f"corpus-{first.fingerprint}"

    def no_build(*args, **kwargs):
        raise AssertionError("the cached index should have been read")

    with monkeypatch.context() as patch:
        patch.setattr(local_index, "_build", no_build)
        again = LocalIndex.load_or_build(corpus, tmp_path / "index")
    assert again.fingerprint == first.fingerprint
    assert again.search(["brass lamp"], 1)[0][0][0].id == "lamp"

    write_corpus(corpus, PASSAGES + [{"id": "new", "title": "Brass band", "text": "A brass band plays."}])
    changed = LocalIndex.load_or_build(corpus, tmp_path / "index")
    assert changed.fingerprint != first.fingerprint
    assert len(list((tmp_path / "index").iterdir())) == 2
    assert changed.search(["brass band"], 1)[0][0][0].id == "new"
    # Other BM25 settings are another index too.
    assert LocalIndex.load_or_build(corpus, tmp_path / "index", k1=1.2).fingerprint != changed.fingerprint


def _build_and_search(corpus: Path, index_dir: Path, answers) -> None:
    index = LocalIndex.load_or_build(corpus, index_dir)
    answers.put(index.search(["Kestrel Bridge 1887"], 1)[0][0][0].id)


def test_processes_building_the_same_index_at_once_agree(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", PASSAGES * 200)
    # Forked, the builders start at once, without paying for imports that would spread them out in time.
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    builders = [context.Process(target=_build_and_search, args=(corpus, tmp_path / "index", answers))
                for _ in range(3)]
    for builder in builders:
        builder.start()
    for builder in builders:
        builder.join(timeout=60)
    assert [builder.exitcode for builder in builders] == [0, 0, 0]
    assert [answers.get(timeout=1) for _ in builders] == ["bridge"] * 3
    # One index in place, and no staging directory left behind.
    assert len(list((tmp_path / "index").iterdir())) == 1


def test_a_malformed_corpus_is_refused_with_its_line(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": 1, "text": "fine"}\n{"id": 2, "title": "no text"}\n')
    with pytest.raises(ValueError, match=r"corpus.jsonl, line 2: expected an object with a string field 'text'"):
        LocalIndex.load_or_build(corpus, tmp_path / "index")
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        LocalIndex.load_or_build(tmp_path / "missing.jsonl", tmp_path / "index")


def test_search_tool_over_the_local_index(tmp_path):
    backend = LocalBackend(write_corpus(tmp_path / "corpus.jsonl"), index_dir=tmp_path / "index")
    tool = SearchTool(backend, top_k=2, max_snippet_chars=40)

    async def main():
        try:
            return await asyncio.gather(tool("Kestrel Bridge", ToolContext("a")), tool("zyxwv", ToolContext("b")))
        finally:
            await tool.aclose()

    found, nothing = asyncio.run(main())
    assert found.ok and nothing.ok
    assert found.text == (
        "1. Kestrel Bridge\nKestrel Bridge spans the Ulm river and…\n\n"
        "2. Ulm river\nThe Ulm river rises in the hills and…"
    )
    assert nothing.text == 'No results found for "zyxwv".'


def test_searches_arriving_together_are_answered_as_one_batch(tmp_path):
    passages = [{"id": f"p{i}", "title": f"Entity{i}", "text": f"Entity{i} is known for fact{i}."} for i in range(300)]
    backend = LocalBackend(write_corpus(tmp_path / "corpus.jsonl", passages), index_dir=tmp_path / "index")
    batches = []
    search = backend.index.search

    def recording_search(queries, k):
        batches.append(len(queries))
        return search(queries, k)

    backend.index.search = recording_search
    tool = SearchTool(backend, top_k=1)
    order = list(range(0, 300, 3))

    async def main():
        return await asyncio.gather(*(tool(f"fact{i}", ToolContext(str(i))) for i in order))

    observations = asyncio.run(main())
    # Every trajectory gets the passage for its own query, though all were scored together.
    assert [observation.text for observation in observations] == [
        f"1. Entity{i}\nEntity{i} is known for fact{i}." for i in order
    ]
    assert batches == [len(order)]


def test_shipped_corpus_answers_with_the_default_tool_settings(tmp_path):
    corpus = Path(__file__).parents[1] / "data" / "search" / "corpus.jsonl"
    tool = SearchTool("local", backend_options={"corpus_path": corpus, "index_dir": tmp_path})
    row = json.loads((corpus.parent / "test.jsonl").read_text().splitlines()[0])

    async def main():
        return [await tool(hop["query"], ToolContext("t")) for hop in row["hops"]]

    last = asyncio.run(main())[-1]
    assert last.ok
    assert row["answer"] in last.text.split("\n\n")[0]


def test_format_results_cuts_a_first_result_longer_than_the_limit():
    long = SearchResult("Long", "word " * 100, "x")
    assert format_results([long, long], max_snippet_chars=1000, max_total_chars=30) == "1. Long\nword word word word…"
