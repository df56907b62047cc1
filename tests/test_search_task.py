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


# ------------------------------------------------------------------------------------ the tiny variant (CPU recipe)

TINY = Path(__file__).parents[1] / "data" / "search-tiny"


def tiny_rows(split: str, directory: Path = TINY) -> list[dict]:
    return [json.loads(line) for line in (directory / f"{split}.jsonl").read_text().splitlines()]


def test_shipped_tiny_data_is_what_make_data_writes(tmp_path):
    from agentic_vlm.cli import main

    main(["make-data", "search", str(tmp_path), "--variant", "tiny"])
    for name in ("corpus.jsonl", "train.jsonl", "test.jsonl"):
        assert (TINY / name).read_bytes() == (tmp_path / name).read_bytes(), name
    images = sorted(path.name for path in (TINY / "images").iterdir())
    assert images == sorted(path.name for path in (tmp_path / "images").iterdir())
    assert all((TINY / "images" / n).read_bytes() == (tmp_path / "images" / n).read_bytes() for n in images)
    assert sum(path.stat().st_size for path in TINY.rglob("*") if path.is_file()) < 1_500_000
    assert (len(tiny_rows("train")), len(tiny_rows("test"))) == (256, 64)


def test_tiny_rows_are_deterministic_by_seed(tmp_path):
    write_search_dataset(tmp_path / "a", num_train=20, num_test=8, seed=1, variant="tiny")
    write_search_dataset(tmp_path / "b", num_train=20, num_test=8, seed=1, variant="tiny")
    assert tiny_rows("train", tmp_path / "a") == tiny_rows("train", tmp_path / "b")
    assert tiny_rows("train", tmp_path / "a") != tiny_rows("train")[:20]  # seed 0
    with pytest.raises(ValueError, match="unknown search task variant 'small'"):
        write_search_dataset(tmp_path / "c", variant="small")
    with pytest.raises(ValueError, match="the tiny world has 272 training questions"):
        write_search_dataset(tmp_path / "d", num_train=300, variant="tiny")


def test_tiny_flag_image_shows_the_colours_the_question_names():
    from PIL import Image

    from agentic_vlm.data.search_task import COLORS

    for row in tiny_rows("train")[:40] + tiny_rows("test"):
        first, second, pattern = row["hops"][0]["query"].split()[:3]
        assert f"has {first} and {second} {pattern} bands" in row["question"], row["id"]
        image = Image.open(TINY / row["images"][0]).convert("RGB")
        width, height = image.size
        # Near a corner, clear of the emblem and the border: the first band is top or left, the second bottom or right.
        assert image.getpixel((5, 5)) == COLORS[first], row["id"]
        assert image.getpixel((width - 6, height - 6)) == COLORS[second], row["id"]
        top_right, bottom_left = (first, second) if pattern == "horizontal" else (second, first)
        assert image.getpixel((width - 6, 5)) == COLORS[top_right], row["id"]
        assert image.getpixel((5, height - 6)) == COLORS[bottom_left], row["id"]


def test_tiny_reference_search_live_shows_the_answer(tmp_path):
    """The reference solution run through the real search tool: its one query's observation (top_k 1, as the CPU
    recipe) is the passage about that country and fact, and it ends with the answer, for the model to copy."""
    import asyncio

    from agentic_vlm.tools.base import ToolContext

    protocol = ArftProtocol()
    tool = SearchTool("local", backend_options={"corpus_path": TINY / "corpus.jsonl", "index_dir": tmp_path}, top_k=1)
    for row in tiny_rows("train") + tiny_rows("test"):
        search, final = row["solution"]
        assert protocol.turn_is_well_formed(search, [tool], is_last=False), row["id"]
        assert protocol.turn_is_well_formed(final, [tool], is_last=True), row["id"]
        assert protocol.extract_answer(final) == row["answer"]
        observation = asyncio.run(tool(protocol.parse_action(search, [tool]).argument, ToolContext(row["id"])))
        title = row["hops"][0]["passage_id"].split("-", 1)[1].capitalize()
        assert observation.text.startswith(f"1. {title}\n"), (row["id"], observation.text)
        assert observation.text.endswith(f"Its {row['kind'].removeprefix('tiny-')} number {row['answer']}."), \
            (row["id"], observation.text)


def test_tiny_answers_are_not_in_the_prompt_and_cannot_be_remembered():
    """Without searching, the answer is a guess: it is not in the question, test flags are never asked about in
    training, and the best guess from the training answers (the commonest answer of the fact) is rarely right."""
    from collections import Counter

    train, test = tiny_rows("train"), tiny_rows("test")
    for row in train + test:
        assert row["answer"] not in row["question"].lower(), row["id"]

    def flag(row):
        return frozenset(row["hops"][0]["query"].split()[:-1])

    assert not {flag(row) for row in train} & {flag(row) for row in test}
    commonest = {kind: Counter(r["answer"] for r in train if r["kind"] == kind).most_common(1)[0][0]
                 for kind in ("tiny-islands", "tiny-rivers")}
    guessed = sum(row["answer"] == commonest[row["kind"]] for row in test) / len(test)
    assert guessed < 0.25
    assert {row["kind"] for row in test} == {"tiny-islands", "tiny-rivers"}
