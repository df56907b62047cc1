"""The shipped search task (data/search): reproducible from its generator, loadable, and answerable by searching."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest

from agentic_vlm.data.jsonl import load_jsonl_dataset
from agentic_vlm.data.search_task import write_search_dataset
from agentic_vlm.protocols.arft import ArftProtocol
from agentic_vlm.tools.search import LocalIndex, SearchTool

SHIPPED = Path(__file__).parents[1] / "data" / "search"


def rows(split: str) -> list[dict]:
    return [json.loads(line) for line in (SHIPPED / f"{split}.jsonl").read_text().splitlines()]


def test_shipped_data_is_what_the_generator_writes(tmp_path):
    write_search_dataset(tmp_path)
    comparison = filecmp.dircmp(SHIPPED, tmp_path)
    assert sorted(comparison.common) == ["corpus.jsonl", "images", "test.jsonl", "train.jsonl"]
    assert not comparison.left_only and not comparison.right_only
    for name in ("corpus.jsonl", "train.jsonl", "test.jsonl"):
        assert (SHIPPED / name).read_bytes() == (tmp_path / name).read_bytes(), name
    images = sorted(path.name for path in (SHIPPED / "images").iterdir())
    assert images == sorted(path.name for path in (tmp_path / "images").iterdir())
    assert all((SHIPPED / "images" / n).read_bytes() == (tmp_path / "images" / n).read_bytes() for n in images)


def test_shipped_data_is_small():
    total = sum(path.stat().st_size for path in SHIPPED.rglob("*") if path.is_file())
    assert total < 2_000_000
    assert 200 <= len((SHIPPED / "corpus.jsonl").read_text().splitlines()) <= 1000


@pytest.mark.parametrize("split", ["train", "test"])
def test_rows_load_as_prompts_with_their_image(split):
    dataset = load_jsonl_dataset(SHIPPED / f"{split}.jsonl")
    assert len(dataset) == len(rows(split))
    first = dataset[0]
    assert first["prompt"][0]["role"] == "user" and first["answer"]
    assert len(first["images"]) == 1 and first["images"][0].size in {(180, 120), (240, 120)}


def test_no_test_question_is_a_training_question():
    def asked(split):
        return {(row["images"][0], row["question"]) for row in rows(split)}

    assert not asked("train") & asked("test")


def test_reference_solutions_follow_the_protocol_and_search_the_hops(tmp_path):
    protocol = ArftProtocol()
    tools = [SearchTool("local", backend_options={"corpus_path": SHIPPED / "corpus.jsonl", "index_dir": tmp_path})]
    for row in rows("train") + rows("test"):
        *searches, final = row["solution"]
        assert all(protocol.turn_is_well_formed(turn, tools, is_last=False) for turn in searches), row["id"]
        assert protocol.turn_is_well_formed(final, tools, is_last=True), row["id"]
        assert protocol.extract_answer(final) == row["answer"]
        assert [protocol.parse_action(turn, tools).argument for turn in searches] == [h["query"] for h in row["hops"]]
        assert 1 <= len(row["hops"]) <= 2


def test_every_hop_finds_its_passage_first_and_the_last_one_holds_the_answer(tmp_path):
    index = LocalIndex.load_or_build(SHIPPED / "corpus.jsonl", tmp_path)
    for row in rows("train") + rows("test"):
        found = [index.search([hop["query"]], k=3)[0] for hop in row["hops"]]
        assert [results[0][0].id for results in found] == [hop["passage_id"] for hop in row["hops"]], row["id"]
        assert row["answer"] in found[-1][0][0].text, row["id"]
