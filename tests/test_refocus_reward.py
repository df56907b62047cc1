"""The rule-based ReFOCUS reward: numbers by relative error, labels by normalised match, `||` parts one by one."""

import pytest

from agentic_vlm.protocols import VtoolProtocol
from agentic_vlm.rewards import build_reward_funcs


def completion(answer_line: str) -> list[dict]:
    return [
        {"role": "assistant", "content": "THOUGHT 0: look.\nACTION 0:\n```python\ndisplay(image_1)\n```\n"},
        {"role": "tool", "name": "code", "content": "ok", "error": None, "num_images": 1},
        {"role": "assistant", "content": f"THOUGHT 1: done.\n{answer_line}"},
    ]


def score(answer_lines: list[str], truths: list, **options) -> list:
    (reward,) = build_reward_funcs(["refocus_accuracy"], VtoolProtocol(), [], {"refocus_accuracy": options})
    return reward(prompts=[None] * len(truths), completions=[completion(line) for line in answer_lines], answer=truths)


def test_numbers_score_by_relative_error():
    rewards = score(["FINAL ANSWER: 42", "FINAL ANSWER: 40", "FINAL ANSWER: 1,000", "FINAL ANSWER: -42"],
                    [["42"], ["50"], ["1000"], ["42"]])
    assert rewards == [1.0, pytest.approx(0.8), 1.0, 0.0]


def test_tolerance_scheme_is_all_or_nothing():
    rewards = score(["FINAL ANSWER: 48", "FINAL ANSWER: 40"], [["50"], ["50"]], scheme="tolerance", rel_tol=0.05)
    assert rewards == [1.0, 0.0]


def test_labels_score_by_normalised_exact_match():
    rewards = score(["FINAL ANSWER: the otters.", "FINAL ANSWER: Otter"], [["Otters"], ["Otters"]])
    assert rewards == [1.0, 0.0]


def test_items_are_matched_in_any_order_and_missing_ones_cost():
    rewards = score(["FINAL ANSWER: Rome || Oslo", "FINAL ANSWER: Oslo", "FINAL ANSWER: 10 || Oslo"],
                    [["Oslo || Rome"], ["Oslo||Rome"], ["Oslo || 8"]])
    assert rewards == [1.0, 0.5, pytest.approx(0.9)]


def test_the_best_of_the_acceptable_answers_counts():
    assert score(["FINAL ANSWER: 7"], [["seven", "7"]]) == [1.0]


def test_no_answer_scores_zero_and_no_truth_is_none():
    assert score(["I think it is 42", "FINAL ANSWER: 42"], [["42"], []]) == [0.0, None]


def test_unknown_scheme():
    with pytest.raises(ValueError, match="unknown numeric scheme"):
        score(["FINAL ANSWER: 1"], [["1"]], scheme="exact")
