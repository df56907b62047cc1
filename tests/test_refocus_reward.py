"""The rule-based ReFOCUS reward: numbers by relative error, labels by exact match, `||` parts one by one."""

import math

import pytest
from test_refocus_data import refocus_records, write_parquet

from agentic_vlm.data.refocus import load_refocus_parquet
from agentic_vlm.eval.metrics import score_item
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
    rewards = score(["FINAL ANSWER: 42", "FINAL ANSWER: 40", "FINAL ANSWER: 1000.0", "FINAL ANSWER: -42"],
                    [["42"], ["50"], ["1000"], ["42"]])
    assert rewards == [1.0, pytest.approx(0.8), 1.0, 0.0]


def test_tolerance_scheme_is_all_or_nothing():
    rewards = score(["FINAL ANSWER: 48", "FINAL ANSWER: 40"], [["50"], ["50"]], scheme="tolerance", rel_tol=0.05)
    assert rewards == [1.0, 0.0]


def test_labels_score_as_written_by_default():
    rewards = score(["FINAL ANSWER: Otters.", "FINAL ANSWER: otters", "FINAL ANSWER: the Otters"],
                    [["Otters"], ["Otters"], ["Otters"]])
    assert rewards == [1.0, 0.0, 0.0]


def test_normalized_match_reads_labels_and_numbers_leniently():
    answers = ["FINAL ANSWER: the otters.", "FINAL ANSWER: Otter", "FINAL ANSWER: 1,000", "FINAL ANSWER: 45%"]
    truths = [["Otters"], ["Otters"], ["1000"], ["45"]]
    assert score(answers, truths, match="normalized") == [1.0, 0.0, 1.0, 1.0]
    assert score(answers, truths) == [0.0, 0.0, 0.0, 0.0]


def test_items_are_matched_in_any_order_and_missing_ones_cost():
    rewards = score(["FINAL ANSWER: Rome || Oslo", "FINAL ANSWER: Oslo", "FINAL ANSWER: 10 || Oslo"],
                    [["Oslo || Rome"], ["Oslo||Rome"], ["Oslo || 8"]])
    assert rewards == [1.0, 0.5, pytest.approx(0.9)]


def test_the_best_of_the_acceptable_answers_counts():
    assert score(["FINAL ANSWER: 7"], [["seven", "7"]]) == [1.0]


def test_no_answer_scores_zero_and_no_truth_is_none():
    assert score(["I think it is 42", "FINAL ANSWER: 42"], [["42"], []]) == [0.0, None]


def test_unknown_scheme_or_match():
    with pytest.raises(ValueError, match="unknown numeric scheme"):
        score(["FINAL ANSWER: 1"], [["1"]], scheme="exact")
    with pytest.raises(ValueError, match="unknown ReFOCUS match 'lenient'; use 'exact' or 'normalized'"):
        score(["FINAL ANSWER: 1"], [["1"]], match="lenient")


# Cases computed by hand from VTool-R1's examples/reward_function/refocus.py (compute_score): the answer is what
# follows "FINAL ANSWER:" up to ". " or the end, split on "||"; the truth is split on "|||" into items that are all
# required; an answer item that Python's float() reads, against a truth item it reads too, earns
# 1 - |a - b| / max(|a|, |b|), any other item 1 if it equals a truth item as written (`answer == gt`); each answer
# item earns its best over the truth items, and the total is divided by the number of truth items. Where that credits
# an item twice, lets an extra item cost nothing, goes below 0 or to NaN, or depends on whitespace, the score here
# differs on purpose (README, "Benchmarks and metrics"); bench/reference_metrics.py --vtool-r1 runs the reference.
@pytest.mark.parametrize(
    ("answer_line", "reference_answer", "reference_score", "score_here"),
    [
        ("FINAL ANSWER: Oslo", "Oslo|||Rome", 0.5, 0.5),  # one item of two: not an alternative
        ("FINAL ANSWER: Oslo||Rome", "Oslo|||Rome", 1.0, 1.0),
        ("FINAL ANSWER: Rome||Oslo", "Oslo|||Rome", 1.0, 1.0),
        ("FINAL ANSWER: Oslo||Paris", "Oslo|||Rome", 0.5, 0.5),
        ("FINAL ANSWER: 12||30", "10|||30", (1 - 2 / 12 + 1) / 2, (1 - 2 / 12 + 1) / 2),
        ("FINAL ANSWER: 42.", "42", 1.0, 1.0),  # a sentence-final period is not part of the answer
        ("FINAL ANSWER: 42. TERMINATE", "42", 1.0, 1.0),  # VTool-R1's prompt ends answers so
        ("FINAL ANSWER: 42.0", "42", 1.0, 1.0),  # float() reads both
        ("FINAL ANSWER: U.S.", "U.S.", 1.0, 1.0),  # a label that ends with a period keeps it
        ("FINAL ANSWER: Oslo||U.S.", "Oslo|||U.S.", 1.0, 1.0),
        ("FINAL ANSWER: oslo", "Oslo", 0.0, 0.0),  # `answer == gt`: case counts
        ('FINAL ANSWER: "Oslo"', "Oslo", 0.0, 0.0),  # and punctuation
        ("FINAL ANSWER: 1,000", "1000", 0.0, 0.0),  # float("1,000") fails: compared as written
        ("FINAL ANSWER: 45%", "45", 0.0, 0.0),
        ("FINAL ANSWER: 45%", "45%", 1.0, 1.0),  # a truth float() cannot read is a label
        ("FINAL ANSWER: Oslo||Oslo", "Oslo|||Rome", 1.0, 0.5),  # on purpose: one right item is not two
        ("FINAL ANSWER: 10||11", "10|||30", (1 + 10 / 11) / 2, (1 + 11 / 30) / 2),  # on purpose: 10 is credited once
        ("FINAL ANSWER: Oslo||Rome||Paris", "Oslo|||Rome", 1.0, 2 / 3),  # on purpose: an extra item costs
        ("FINAL ANSWER: -5", "5", -1.0, 0.0),  # on purpose: 1 - 10/5 = -1 is clipped to 0
        ("FINAL ANSWER: nan", "5", math.nan, 0.0),  # on purpose: "nan" is not a number
        ("FINAL ANSWER: Oslo || Rome", "Oslo|||Rome", 0.0, 1.0),  # on purpose: "Oslo " is "Oslo" here
        ("FINAL ANSWER: 10 || 30", "10|||30", 1.0, 1.0),  # (float() ignores the spaces there too)
        ("FINAL ANSWER: Oslo TERMINATE", "Oslo", 0.0, 1.0),  # on purpose: TERMINATE is not part of the answer
    ],
)
def test_reproduces_vtool_refocus_score(tmp_path, answer_line, reference_answer, reference_score, score_here):
    records = refocus_records()[:1]
    records[0]["answer"] = reference_answer
    (truth,) = load_refocus_parquet(write_parquet(tmp_path / "one.parquet", records))["answer"]
    (reward,) = score([answer_line], [truth])
    assert reward == pytest.approx(score_here)


def test_refocus_metric_scores_as_the_reward_does():
    assert score_item("Rome||oslo", "Oslo || Rome", ["refocus"]) == {"refocus": 0.5}
    assert score_item("12", "10", ["refocus"]) == {"refocus": pytest.approx(1 - 2 / 12)}
    for answer, truth in [("Rome||oslo", "Oslo || Rome"), ("12", "10"), ("U.S.", "U.S."), ("45%", "45")]:
        (reward,) = score([f"FINAL ANSWER: {answer}"], [truth])
        assert score_item(answer, truth, ["refocus"]) == {"refocus": pytest.approx(reward)}
