"""The VTool-R1 protocol: THOUGHT, ACTION with a Python block, OBSERVATION, FINAL ANSWER."""

import pytest
from PIL import Image

from agentic_vlm.protocols import VtoolProtocol, get_protocol
from agentic_vlm.protocols.vtool import CLOSING_FENCE
from agentic_vlm.tools import Observation, Tool, ZoomTool
from agentic_vlm.tools.refocus import RefocusCodeTool, editing


class DescribedCodeTool(Tool):
    """Stands in for the code tool: the protocol only reads its name and description."""

    name = "code"
    description = RefocusCodeTool.description

    async def __call__(self, argument, context):
        raise AssertionError("not called")


TOOLS = [DescribedCodeTool()]
ACTION_TURN = (
    "THOUGHT 0: I need the Sales column.\nACTION 0:\n```python\n"
    'image_2 = focus_on_columns_with_mask(image_1, ["Year", "Sales"], columns_bbox)\ndisplay(image_2)\n```\n'
)
ANSWER_TURN = "THOUGHT 1: The marked value is 42.\nFINAL ANSWER: 42"


@pytest.fixture
def protocol():
    return get_protocol("vtool")


def test_an_action_is_the_python_block_for_the_code_tool(protocol):
    action = protocol.parse_action(ACTION_TURN, TOOLS)
    assert (action.kind, action.name) == ("tool", "code")
    assert action.argument == (
        'image_2 = focus_on_columns_with_mask(image_1, ["Year", "Sales"], columns_bbox)\ndisplay(image_2)'
    )


def test_a_block_closed_by_the_end_of_turn_still_runs(protocol):
    action = protocol.parse_action("THOUGHT: x\nACTION:\n```py\nprint(1)\n```", TOOLS)
    assert (action.kind, action.argument) == ("tool", "print(1)")


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (ANSWER_TURN, "42"),
        ("THOUGHT 2: two of them.\nFINAL ANSWER: Oslo || Rome\n", "Oslo || Rome"),
        ("THOUGHT 1: a decimal.\nFINAL ANSWER: 6.95.", "6.95"),
        ("THOUGHT 1: a city.\nFINAL ANSWER: St. Louis", "St. Louis"),
        # VTool-R1's checkpoints answer this way
        ("ANSWER: Josh won 3 games. FINAL ANSWER: 3. TERMINATE", "3"),
        ("FINAL ANSWER: 12\nI hope this helps.", "12"),
    ],
)
def test_final_answers(protocol, text, answer):
    action = protocol.parse_action(text, TOOLS)
    assert (action.kind, action.argument) == ("answer", answer)
    assert protocol.extract_answer(text) == answer


def test_no_answer(protocol):
    assert protocol.extract_answer(ACTION_TURN) is None
    assert protocol.extract_answer("FINAL ANSWER:   \n") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("THOUGHT 0: x\nACTION 0:\n```python\nimage_2 = focus_on", "the ```python block was not closed with ```"),
        ("THOUGHT 0: x\nACTION 0:\n```\n", "a code block must open with ```python"),
        ("THOUGHT 0: x\nACTION 0:\n```js\nalert(1)\n```\n", "a code block must open with ```python"),
        ("THOUGHT 0: x\nACTION 0:\n```python\n\n```\n", "the ```python block is empty"),
        ("THOUGHT 0: x\nFINAL ANSWER:", "FINAL ANSWER: is not followed by an answer"),
        ("THOUGHT 0: just thinking", "the turn ended without an action"),
        ("", "the turn ended without an action"),
    ],
)
def test_invalid_actions_explain_themselves(protocol, text, message):
    action = protocol.parse_action(text, TOOLS)
    assert action.kind == "invalid"
    assert message in action.error


def test_code_without_a_code_tool_is_invalid(protocol):
    action = protocol.parse_action(ACTION_TURN, [ZoomTool()])
    assert action.kind == "invalid" and "no code can run" in action.error


def test_generation_stops_at_the_closing_fence_only(protocol):
    (stop,) = protocol.stop_strings(TOOLS)
    assert stop == CLOSING_FENCE
    opening, closing = ACTION_TURN.index("```python\n"), ACTION_TURN.rindex("```")
    assert ACTION_TURN.find(stop) == closing and stop not in ACTION_TURN[opening:closing]


@pytest.mark.parametrize(
    ("text", "is_last", "expected"),
    [
        (ACTION_TURN, False, True),
        (ANSWER_TURN, True, True),
        ("THOUGHT: no numbers.\nFINAL ANSWER: 42\n", True, True),
        (ANSWER_TURN, False, False),  # an answer before the last turn
        (ACTION_TURN, True, False),  # no answer at the end
        ("ACTION 0:\n```python\nprint(1)\n```\n", False, False),  # no thought
        ("THOUGHT 0:\nACTION 0:\n```python\nprint(1)\n```\n", False, False),  # empty thought
        ("THOUGHT 0: x\nACTION 0:\n```python\n\n```\n", False, False),  # empty code
        (ACTION_TURN + "and more", False, False),
        (ACTION_TURN.replace("```\n", "```\n```python\nprint(2)\n```\n", 1), False, False),  # two blocks
        ("THOUGHT 0: x\nACTION 0:\n```python\nprint(1)\n```\nFINAL ANSWER: 1", False, False),
        ("THOUGHT 1: x\nFINAL ANSWER: 1\nFINAL ANSWER: 2", True, False),
        ("THOUGHT 1: x\nFINAL ANSWER: 42\n```python\nprint(1)\n```", True, False),
    ],
)
def test_turn_format(protocol, text, is_last, expected):
    assert protocol.turn_is_well_formed(text, TOOLS, is_last=is_last) is expected


def test_observation_shows_the_status_the_text_and_every_image(protocol):
    image = Image.new("RGB", (4, 4))
    shown = Observation(text="The images below are now image_2.", images=[image])
    success = protocol.observation_message(shown, "code")
    assert success["role"] == "user"
    assert success["content"] == [
        {"type": "text", "text": "OBSERVATION: Execution success.\nThe images below are now image_2."},
        {"type": "image"},
    ]
    failure = protocol.observation_message(Observation.failure("Error: unknown column 'Yaer'"), "code")
    assert failure["content"] == [
        {"type": "text", "text": "OBSERVATION: Execution failed.\nError: unknown column 'Yaer'"}
    ]
    invalid = protocol.observation_message(Observation.failure("Invalid action: ..."), "")
    assert invalid["content"] == [{"type": "text", "text": "OBSERVATION: Invalid action: ..."}]


def test_system_prompt_teaches_the_format_functions_and_variables(protocol):
    prompt = protocol.system_prompt(TOOLS)
    for words in ("THOUGHT", "ACTION", "```python", "OBSERVATION:", "FINAL ANSWER:", "||", "display("):
        assert words in prompt
    for name in (*editing.FUNCTION_NAMES, "image_1", "columns_bbox", "rows_bbox", "x_values_bbox", "y_values_bbox"):
        assert name in prompt
    # the example in the prompt is itself well formed
    example = prompt[prompt.index("THOUGHT 0:"):]
    action, answer = example.split("OBSERVATION: (the edited image)\n")
    assert protocol.turn_is_well_formed(action, TOOLS, is_last=False)
    assert protocol.turn_is_well_formed(answer, TOOLS, is_last=True)


def test_system_prompt_needs_the_code_tool(protocol):
    with pytest.raises(ValueError, match="tool named 'code'"):
        protocol.system_prompt([ZoomTool()])


def test_system_prompt_without_tools_asks_for_the_answer_only(protocol):
    prompt = protocol.system_prompt([])
    assert "THOUGHT 0:" in prompt and "FINAL ANSWER:" in prompt and "||" in prompt
    assert "ACTION" not in prompt and "```python" not in prompt
    assert protocol.parse_action("THOUGHT 0: I read 42.\nFINAL ANSWER: 42", []).argument == "42"


def test_registered_by_name():
    assert isinstance(get_protocol("vtool"), VtoolProtocol)
