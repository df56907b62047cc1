import pytest

from agentic_vlm.protocols import ArftProtocol, get_protocol
from agentic_vlm.tools import Observation, ZoomTool


@pytest.fixture
def protocol():
    return ArftProtocol()


TOOLS = [ZoomTool()]


def test_parses_tool_action_and_answer(protocol):
    action = protocol.parse_action("<think>look</think>\n<zoom> [1, 2, 3, 4] </zoom>", TOOLS)
    assert (action.kind, action.name, action.argument) == ("tool", "zoom", "[1, 2, 3, 4]")
    action = protocol.parse_action("<think>done</think><answer>blue</answer>", TOOLS)
    assert (action.kind, action.argument) == ("answer", "blue")


def test_first_action_wins(protocol):
    action = protocol.parse_action("<zoom>[0,0,5,5]</zoom><answer>red</answer>", TOOLS)
    assert action.kind == "tool"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<think>x</think><zoom>[1, 2, 3, 4]", "<zoom> was not closed with </zoom>"),
        ("<think>x</think><search>cats</search>", "<search> is not an available action"),
        ("<think>just thinking</think>", "the turn ended without an action"),
        ("", "the turn ended without an action"),
    ],
)
def test_invalid_actions_explain_themselves(protocol, text, message):
    action = protocol.parse_action(text, TOOLS)
    assert action.kind == "invalid"
    assert message in action.error
    assert "<zoom>...</zoom>" in action.error and "<answer>...</answer>" in action.error


def test_stop_strings_are_the_tool_closing_tags(protocol):
    assert protocol.stop_strings(TOOLS) == ["</zoom>"]  # the answer turn ends with the end-of-turn token


@pytest.mark.parametrize(
    ("text", "is_last", "expected"),
    [
        ("<think>a</think>\n<zoom>[1,2,3,4]</zoom>", False, True),
        ("<think>a</think>\n<answer>red</answer>\n", True, True),
        ("<think>a</think>\n<answer>red</answer>", False, False),  # an answer before the last turn
        ("<think>a</think>\n<zoom>[1,2,3,4]</zoom>", True, False),  # no answer at the end
        ("<zoom>[1,2,3,4]</zoom>", False, False),  # no think
        ("<think>a</think> trailing <answer>red</answer>", True, False),  # text between think and action
        ("<think>a</think><answer>red</answer><answer>blue</answer>", True, False),  # two actions
        ("<think></think><answer>red</answer>", True, False),  # empty think
        ("<think>a</think><answer>red</answer> and more", True, False),
    ],
)
def test_turn_format(protocol, text, is_last, expected):
    assert protocol.turn_is_well_formed(text, TOOLS, is_last=is_last) is expected


def test_extract_answer_takes_the_last_one(protocol):
    assert protocol.extract_answer("<answer> a </answer> then <answer>b</answer>") == "b"
    assert protocol.extract_answer("<think>no answer</think>") is None


def test_observation_message_places_one_image_part_per_image(protocol, zoom_example):
    observation = Observation(text="Zoomed.", images=[zoom_example["image"], zoom_example["image"]])
    message = protocol.observation_message(observation, "zoom")
    assert message["role"] == "user"
    assert [part["type"] for part in message["content"]] == ["text", "image", "image", "text"]
    assert message["content"][0]["text"] == "<information>"
    assert message["content"][-1]["text"] == "Zoomed.</information>"


def test_system_prompt_lists_every_tool_and_the_answer(protocol):
    prompt = protocol.system_prompt(TOOLS)
    assert "<zoom>" in prompt and "<answer>" in prompt and "<think>" in prompt


@pytest.mark.parametrize("name", ["arft", "hermes", "vtool"])
def test_the_prompt_without_tools_says_nothing_of_tools(name):
    """The baseline of eval's pass without tools: a prompt that names tools would draw tool calls that fail."""
    prompt = get_protocol(name, family="qwen2.5-vl").system_prompt([])
    assert "tool" not in prompt.lower() and "<zoom>" not in prompt and "python" not in prompt.lower()
    assert "answer" in prompt.lower()


def test_unknown_protocol_name():
    with pytest.raises(ValueError, match="unknown protocol 'nope'"):
        get_protocol("nope")
