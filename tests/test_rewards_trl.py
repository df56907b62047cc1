"""Format and shaping scores, and the TRL reward functions built by name from the registry."""

import pytest
from PIL import Image

from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.rewards import REWARD_FACTORIES, build_reward_funcs
from agentic_vlm.rewards.format import per_turn_format_score, strict_format_score, well_formed_turns
from agentic_vlm.rewards.shaping import invalid_action_count, invalid_action_penalty, tool_use_bonus
from agentic_vlm.rewards.trajectory import solution_turns
from agentic_vlm.tools import ZoomTool

PROTOCOL = ArftProtocol()
TOOLS = [ZoomTool()]

ZOOM_TURN = "<think>The square is small.</think>\n<zoom>[0, 0, 74, 74]</zoom>"


def answer_turn(text: str) -> str:
    return f"<think>I can see it now.</think>\n<answer>{text}</answer>"


def trajectory(*turns: str, tool_error: str | None = None) -> list[dict]:
    """Messages as our trainer passes them: a tool observation after every turn but the last."""
    messages = []
    for index, text in enumerate(turns):
        messages.append({"role": "assistant", "content": text})
        if index < len(turns) - 1:
            action = PROTOCOL.parse_action(text, TOOLS)
            name = action.name if action.kind == "tool" else ""
            error = tool_error if action.kind == "tool" else action.error
            messages.append({"role": "tool", "name": name, "content": "...", "error": error, "num_images": 1})
    return messages


def call(reward, completions, **columns):
    """Call a reward the way TRL's GRPOTrainer does."""
    logged = {}
    rewards = reward(
        prompts=[[{"role": "user", "content": "q"}]] * len(completions),
        completions=completions,
        completion_ids=[[1, 2, 3]] * len(completions),
        trainer_state=None,
        log_extra=lambda column, values: None,
        log_metric=logged.__setitem__,
        **columns,
    )
    assert len(rewards) == len(completions)
    return rewards


# format


def test_well_formed_turns():
    turns = [ZOOM_TURN, answer_turn("red")]
    assert well_formed_turns(turns, PROTOCOL, TOOLS) == [True, True]
    assert strict_format_score(turns, PROTOCOL, TOOLS) == 1.0
    assert per_turn_format_score(turns, PROTOCOL, TOOLS) == 1.0


@pytest.mark.parametrize(
    ("turns", "strict", "per_turn"),
    [
        ([], 0.0, 0.0),
        ([answer_turn("red")], 1.0, 1.0),
        (["<zoom>[0, 0, 74, 74]</zoom>", answer_turn("red")], 0.0, 0.5),  # no thinking first
        ([ZOOM_TURN, "<think>done</think> red"], 0.0, 0.5),  # no answer tag at the end
        ([ZOOM_TURN, ZOOM_TURN], 0.0, 0.5),  # cut off by the turn limit: no answer
        ([ZOOM_TURN + "<answer>red</answer>", answer_turn("red")], 0.0, 0.5),  # two actions in one turn
        ([ZOOM_TURN, ZOOM_TURN, "<think>x</think><answer>red", answer_turn("red")], 0.0, 0.75),  # unclosed answer
        (["<think>ok</think><answer>红色</answer>"], 1.0, 1.0),  # unicode answer
    ],
)
def test_format_scores(turns, strict, per_turn):
    assert strict_format_score(turns, PROTOCOL, TOOLS) == strict
    assert per_turn_format_score(turns, PROTOCOL, TOOLS) == per_turn


def test_format_reward_strict_and_per_turn():
    completions = [
        trajectory(ZOOM_TURN, answer_turn("red")),
        trajectory("<zoom>[1, 1, 9, 9]</zoom>", answer_turn("red")),
    ]
    (strict,) = build_reward_funcs(["format"], PROTOCOL, TOOLS)
    (per_turn,) = build_reward_funcs(["format"], PROTOCOL, TOOLS, {"format": {"per_turn": True}})
    assert call(strict, completions) == [1.0, 0.0]
    assert call(per_turn, completions) == [1.0, 0.5]


# shaping


def test_invalid_actions():
    turns = [ZOOM_TURN, "<think>hmm</think> no action", "<think>x</think><search>q</search>", answer_turn("red")]
    assert invalid_action_count(turns, PROTOCOL, TOOLS) == 2  # no action; a tool that does not exist
    assert invalid_action_penalty(turns, PROTOCOL, TOOLS) == -2.0
    assert invalid_action_penalty([ZOOM_TURN, answer_turn("red")], PROTOCOL, TOOLS) == 0.0


def test_tool_use_bonus_only_for_a_right_answer():
    assert tool_use_bonus(True, 1) == 1.0
    assert tool_use_bonus(True, 0) == 0.0
    assert tool_use_bonus(False, 3) == 0.0


def test_shaping_rewards_through_the_registry():
    bonus, penalty = build_reward_funcs(["tool_use_bonus", "invalid_action_penalty"], PROTOCOL, TOOLS)
    completions = [
        trajectory(ZOOM_TURN, answer_turn("red")),  # right, with a tool
        trajectory(answer_turn("red")),  # right, without a tool
        trajectory(ZOOM_TURN, answer_turn("blue")),  # wrong, with a tool
        trajectory(ZOOM_TURN, answer_turn("red"), tool_error="zoom: the box has no area"),  # the tool failed
        trajectory("<think>hm</think>", ZOOM_TURN, answer_turn("red")),  # one invalid turn
    ]
    answers = ["red"] * 5
    assert call(bonus, completions, answer=answers) == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert call(penalty, completions, answer=answers) == [0.0, 0.0, 0.0, 0.0, -1.0]
    assert call(bonus, completions[:1], answer=[None]) == [None]


# answers


def test_accuracy_reward():
    (accuracy,) = build_reward_funcs(["accuracy"], PROTOCOL, TOOLS)
    completions = [
        trajectory(ZOOM_TURN, answer_turn("Red.")),
        trajectory(answer_turn("blue")),
        trajectory(ZOOM_TURN),  # no answer
        trajectory(answer_turn("")),  # empty answer
        trajectory(answer_turn("1,234.0 kg")),
        trajectory(answer_turn("Paris || Oslo")),
        trajectory(answer_turn("anything")),
    ]
    answers = ["red", ["green", "blue"], "red", "red", 1234, "Oslo||Rome", None]  # a number cell is one answer
    assert accuracy.__name__ == "accuracy"
    assert call(accuracy, completions, answer=answers) == [1.0, 1.0, 0.0, 0.0, 1.0, 0.5, None]


def test_answer_is_read_from_the_model_not_the_reference():
    (accuracy,) = build_reward_funcs(["accuracy"], PROTOCOL, TOOLS)
    # the reference text appears in the thinking and in an observation, but the answer is wrong
    completion = trajectory("<think>maybe red</think><zoom>[0, 0, 9, 9]</zoom>", answer_turn("blue"))
    completion[1]["content"] = "red"
    assert call(accuracy, [completion], answer=["red"]) == [0.0]


def test_exact_match_f1_and_numeric_rewards():
    em, f1, f1_set, numeric, linear = (
        build_reward_funcs(["exact_match"], PROTOCOL, TOOLS)
        + build_reward_funcs(["f1"], PROTOCOL, TOOLS)
        + build_reward_funcs(["f1"], PROTOCOL, TOOLS, {"f1": {"variant": "set"}})
        + build_reward_funcs(["numeric"], PROTOCOL, TOOLS)
        + build_reward_funcs(["numeric"], PROTOCOL, TOOLS, {"numeric": {"scheme": "linear"}})
    )
    completions = [trajectory(answer_turn("red red car")), trajectory(answer_turn("$90")), trajectory(ZOOM_TURN)]
    answers = ["red car car", ["ninety", "100"], "5"]
    assert [em.__name__, f1.__name__, numeric.__name__] == ["exact_match", "f1", "numeric"]
    assert call(em, completions, answer=answers) == [0.0, 0.0, 0.0]
    assert call(f1, completions, answer=answers) == [pytest.approx(2 / 3), 0.0, 0.0]
    # Visual-ARFT's: 2 distinct shared tokens over 3 tokens each side
    assert call(f1_set, completions, answer=answers) == [pytest.approx(2 / 3), 0.0, 0.0]
    # the first row's truth is not a number: not applicable; $90 against 100 is 10% off
    assert call(numeric, completions, answer=answers) == [None, 0.0, 0.0]
    assert call(linear, completions, answer=answers) == [None, pytest.approx(0.9), 0.0]


# boxes


def test_iou_reward():
    (iou,) = build_reward_funcs(["iou"], PROTOCOL, TOOLS)
    completions = [
        trajectory(answer_turn("[0, 0, 10, 10]")),
        trajectory(answer_turn('[{"bbox_2d": [0, 0, 10, 10]}, {"bbox_2d": [50, 50, 60, 60]}]')),
        trajectory(answer_turn("I could not find it")),
        trajectory(answer_turn("[5, 5, 5, 10]")),  # degenerate
        trajectory(ZOOM_TURN),  # no answer
        trajectory(answer_turn("[0, 0, 10, 10]")),
    ]
    boxes = [[0, 0, 10, 10], [[0, 0, 10, 10]], [[0, 0, 10, 10]], [0, 0, 10, 10], [0, 0, 10, 10], None]
    assert call(iou, completions, boxes=boxes) == [1.0, 0.5, 0.0, 0.0, 0.0, None]
    assert call(iou, completions[:1], box=[[5, 5, 15, 15]]) == [pytest.approx(1 / 7)]


def test_iou_reward_normalised_coordinates_use_the_image_size():
    (iou,) = build_reward_funcs(["iou"], PROTOCOL, TOOLS, {"iou": {"coordinates": "norm1000"}})
    completions = [trajectory(answer_turn("[0, 0, 500, 500]"))]
    assert call(iou, completions, boxes=[[0, 0, 100, 50]], image_size=[[200, 100]]) == [1.0]
    assert call(iou, completions, boxes=[[0, 0, 100, 50]], image=[Image.new("RGB", (200, 100))]) == [1.0]
    with pytest.raises(ValueError, match="image size"):
        call(iou, completions, boxes=[[0, 0, 100, 50]])


def test_iou_reward_threshold():
    (iou,) = build_reward_funcs(["iou"], PROTOCOL, TOOLS, {"iou": {"iou_threshold": 0.5}})
    completions = [trajectory(answer_turn("[5, 5, 15, 15]")), trajectory(answer_turn("[0, 0, 10, 6]"))]
    assert call(iou, completions, box=[[0, 0, 10, 10]] * 2) == [0.0, pytest.approx(0.6)]


# registry


def test_registry_names_and_errors():
    assert {"accuracy", "format"} <= set(REWARD_FACTORIES)
    funcs = build_reward_funcs(["accuracy", "format", "iou", "tool_use_bonus"], PROTOCOL, TOOLS)
    assert [func.__name__ for func in funcs] == ["accuracy", "format", "iou", "tool_use_bonus"]
    with pytest.raises(ValueError, match="unknown reward"):
        build_reward_funcs(["accuracy", "bleu"], PROTOCOL, TOOLS)
    with pytest.raises(ValueError, match="not among the rewards"):
        build_reward_funcs(["accuracy"], PROTOCOL, TOOLS, {"format": {"per_turn": True}})
    with pytest.raises(TypeError, match="varient"):
        build_reward_funcs(["f1"], PROTOCOL, TOOLS, {"f1": {"varient": "set"}})
    with pytest.raises(ValueError, match="variant"):
        build_reward_funcs(["f1"], PROTOCOL, TOOLS, {"f1": {"variant": "bag"}})
    with pytest.raises(ValueError, match="search"):
        build_reward_funcs(["search_similarity"], PROTOCOL, TOOLS)  # no search tool to score


def test_solution_string_is_cut_into_turns_at_action_ends():
    solution = ZOOM_TURN + "\n" + answer_turn("red")
    assert solution_turns(solution, PROTOCOL, TOOLS) == [ZOOM_TURN, "\n" + answer_turn("red")]
    assert solution_turns([ZOOM_TURN], PROTOCOL, TOOLS) == [ZOOM_TURN]


# malformed completions and answers


def test_content_none_or_parts_is_read_as_text():
    # TRL and chat APIs hand over content as None (no text) or as a list of parts; both used to raise TypeError.
    accuracy, format_reward = build_reward_funcs(["accuracy", "format"], PROTOCOL, TOOLS)
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "<think>I see it.</think>"},
                                               {"type": "image"}, {"type": "text", "text": "<answer>red</answer>"}]}]
    empty = [{"role": "assistant", "content": None}]
    assert call(accuracy, [parts, empty], answer=["red", "red"]) == [1.0, 0.0]
    assert call(format_reward, [parts, empty]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="content must be a string, None or a list of parts, got int"):
        call(accuracy, [[{"role": "assistant", "content": 3}]], answer=["red"])


def test_squad_dict_answers_are_their_texts():
    accuracy, f1 = build_reward_funcs(["accuracy", "f1"], PROTOCOL, TOOLS)
    completions = [trajectory(answer_turn("Paris"))] * 2
    answers = [{"text": ["Rome", "Paris"], "answer_start": [0, 10]}, {"text": "Paris"}]
    assert call(accuracy, completions, answer=answers) == [1.0, 1.0]  # not the dict's first key
    assert call(f1, completions, answer=answers) == [1.0, 1.0]
    with pytest.raises(ValueError, match="needs SQuAD's 'text' key"):
        call(accuracy, completions[:1], answer=[{"answer": "Paris"}])
    with pytest.raises(ValueError, match="an answer must be a string, a number, a list of them"):
        call(accuracy, completions[:1], answer=[[["Paris"]]])


def test_trainer_refuses_unreadable_answers_before_training(tiny_model_dir):
    from datasets import Dataset

    from agentic_vlm import AgenticGRPOConfig, AgenticGRPOTrainer
    from agentic_vlm.data import DatasetFormatError

    args = AgenticGRPOConfig(output_dir="unused", use_cpu=True, report_to=[], per_device_train_batch_size=2,
                             num_generations=2)
    # a list of lists: each row's answers nested one level too deep
    rows = [{"prompt": [{"role": "user", "content": "q"}], "answer": answer} for answer in ([["red"]], [["blue"]])]
    with pytest.raises(DatasetFormatError, match=r"train_dataset, row 1: field 'answer': an answer must be a string"):
        AgenticGRPOTrainer(model=tiny_model_dir, args=args, train_dataset=Dataset.from_list(rows), tools=TOOLS,
                           protocol=PROTOCOL)
