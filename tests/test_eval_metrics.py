"""Evaluation figures on scripted trajectories (see tests/scripted_eval.py for the hand-checked table): items without
an answer count as wrong, figures per split and per type, records with the whole trajectory, and resuming."""

import asyncio
import json
from pathlib import Path

import pytest
from scripted_eval import MAX_TURNS, ScriptedEvaluation, write_task_file

from agentic_vlm.eval import read_run, reward_table, score_item, summary_path
from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.rewards import build_reward_funcs
from agentic_vlm.tools import ZoomTool


@pytest.fixture
def scripted(tiny_model_dir, zoom_data_dir, tmp_path):
    task_file = write_task_file(tmp_path / "tasks.jsonl", Path(zoom_data_dir) / "images" / "zoom-test-00000.png")
    return ScriptedEvaluation(tiny_model_dir, task_file)


async def turns_taken(prompts, completions, **kwargs):
    """An async reward, as the LLM judge is: the engine's caller must await it."""
    await asyncio.sleep(0)
    return [float(sum(message["role"] == "assistant" for message in completion)) for completion in completions]


def test_figures_count_unanswered_items_as_wrong_overall_and_per_group(scripted, tmp_path):
    summary = scripted.run(tmp_path / "run.jsonl")
    overall = summary["overall"]
    assert overall["count"] == 5
    assert overall["answered"] == pytest.approx(4 / 5)
    assert overall["exact_match"] == pytest.approx(2 / 5)  # not 2/4: item d gave no answer and still counts
    assert overall["f1"] == pytest.approx((2 + 2 / 3) / 5)
    assert overall["turns"] == pytest.approx((2 + 1 + 2 + 3 + 2) / 5)
    assert overall["tool_calls"] == pytest.approx(5 / 5)  # a, c, e once; d twice (its last turn is not run)
    assert overall["tool_errors"] == pytest.approx(1 / 5)  # e's box is outside the image
    easy, hard = summary["by_split"]["easy"], summary["by_split"]["hard"]
    assert (easy["count"], easy["exact_match"], easy["f1"]) == (3, pytest.approx(2 / 3), pytest.approx(8 / 9))
    assert (hard["count"], hard["exact_match"], hard["f1"], hard["answered"]) == (2, 0.0, 0.0, 0.5)
    by_type = summary["by_type"]
    assert set(by_type) == {"blur", "rotation90+dark", "noise"}  # a list of degradations is one group
    assert by_type["blur"]["f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert by_type["rotation90+dark"]["exact_match"] == pytest.approx(1 / 2)
    assert json.loads(summary_path(tmp_path / "run.jsonl").read_text()) == summary


def test_records_hold_item_prediction_scores_rewards_and_the_trajectory(scripted, tmp_path):
    output = tmp_path / "run.jsonl"
    protocol, tools = ArftProtocol(), [ZoomTool()]
    [format_reward] = build_reward_funcs(["format"], protocol, tools)
    scripted.run(output, reward_funcs=[format_reward, turns_taken])
    records = {record["id"]: record for record in read_run(output)}
    a, d, e = records["a"], records["d"], records["e"]
    assert a["question"] == "What colour is item a?" and a["answer"] == ["red"]
    assert (a["prediction"], a["correct"], a["scores"]) == ("red", True, {"exact_match": 1.0, "f1": 1.0})
    assert a["rewards"] == {"format": 1.0, "turns_taken": 2.0}
    assert (a["split"], a["type"]) == ("easy", ["blur"])
    assert [turn["action"] for turn in a["turns"]] == ["tool", "answer"]
    [zoomed] = a["turns"][0]["images"]
    assert (output.parent / zoomed).is_file()  # saved beside the run, named relative to it
    assert Path(a["input_images"][0]).is_file()
    assert (d["prediction"], d["correct"], d["stop_reason"], d["num_turns"]) == (None, False, "max_turns", MAX_TURNS)
    assert d["scores"] == {"exact_match": 0.0, "f1": 0.0}
    assert e["turns"][0]["error"] is not None and "no area" in e["turns"][0]["observation"]
    assert records["c"]["scores"]["f1"] == pytest.approx(2 / 3)


def test_rerunning_skips_written_items_and_redoes_an_interrupted_line(scripted, tmp_path):
    output = tmp_path / "run.jsonl"
    first = scripted.run(output, limit=2)
    assert first["overall"]["count"] == 2 and scripted.played == ["a", "b"]
    with open(output, "a") as file:  # a run killed while writing item c
        file.write('{"id": "c", "question": "What col')
    scripted.played.clear()
    summary = scripted.run(output)
    assert scripted.played == ["c", "d", "e"]
    assert [record["id"] for record in read_run(output)] == ["a", "b", "c", "d", "e"]
    assert summary["overall"]["count"] == 5 and summary["overall"]["exact_match"] == pytest.approx(2 / 5)
    scripted.played.clear()
    scripted.run(output)  # nothing left to do
    assert scripted.played == [] and len(read_run(output)) == 5


def test_a_run_of_another_dataset_is_not_resumed(scripted, tmp_path):
    output = tmp_path / "run.jsonl"
    output.write_text(json.dumps({"id": "zoom-test-00000"}) + "\n")
    with pytest.raises(ValueError, match="holds items that are not in tasks"):
        scripted.run(output)


@pytest.mark.parametrize(
    ("prediction", "truths", "expected"),
    [
        ("navy", ["blue", "navy"], {"exact_match": 1.0, "f1": 1.0, "f1_set": 1.0, "accuracy": 1.0}),
        ("the Thames", "River Thames", {"exact_match": 0.0, "f1": pytest.approx(2 / 3), "f1_set": pytest.approx(2 / 3),
                                        "accuracy": 0.0}),
        ("1,234.0", "1234", {"exact_match": 0.0, "f1": 0.0, "f1_set": 0.0, "accuracy": 1.0}),
        # MAT's F1 counts distinct shared tokens over all tokens: "blue" twice is 1 shared of 2 predicted
        ("blue blue", "blue sky", {"exact_match": 0.0, "f1": 0.5, "f1_set": 0.5, "accuracy": 0.0}),
        ("blue blue", "blue blue sky", {"exact_match": 0.0, "f1": 0.8, "f1_set": 0.4, "accuracy": 0.0}),
        ("Paris || Rome", ["Rome || Paris"], {"exact_match": 1.0, "f1": 1.0, "f1_set": 1.0, "accuracy": 1.0}),
        (None, "anything", {"exact_match": 0.0, "f1": 0.0, "f1_set": 0.0, "accuracy": 0.0}),
    ],
)
def test_item_scores_are_the_best_over_ground_truths(prediction, truths, expected):
    assert score_item(prediction, truths, list(expected)) == expected


def test_async_rewards_also_run_from_a_thread_that_runs_an_event_loop():
    """In a notebook, the caller's thread already runs an event loop; an async reward must still be awaited."""

    class OneTurn:
        def completion_messages(self):
            return [{"role": "assistant", "content": "<answer>red</answer>"}]

    rows = [{"prompt": [{"role": "user", "content": "?"}], "answer": "red"}] * 2

    async def from_a_notebook_cell():
        return reward_table([turns_taken], rows, [OneTurn(), OneTurn()])

    assert asyncio.run(from_a_notebook_cell()) == [{"turns_taken": 1.0}, {"turns_taken": 1.0}]
