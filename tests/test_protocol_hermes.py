"""The hermes protocol against each family's real chat template: the template lists the tools and writes the tool
results, and the calls the template itself writes for an assistant message parse back to the same calls."""

import json

import pytest
from PIL import Image
from transformers import AutoProcessor

from agentic_vlm.families import TINY_FAMILIES, chat_template, get_family
from agentic_vlm.protocols import HermesProtocol, get_protocol
from agentic_vlm.tools import Observation, ZoomTool
from agentic_vlm.tools.search import SearchTool


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    corpus.write_text(json.dumps({"title": "Oslo", "text": "Oslo is the capital of Norway."}) + "\n")
    return [ZoomTool(), SearchTool(backend="local", backend_options={"corpus_path": str(corpus)})]


def render(processor, protocol, tools, messages, **kwargs):
    kwargs = {**protocol.chat_template_kwargs(tools), **kwargs}
    return processor.apply_chat_template(messages, tokenize=False, **kwargs)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_template_lists_tools_and_writes_results_with_images(family, tiny_model_dirs, tools):
    processor = AutoProcessor.from_pretrained(tiny_model_dirs[family])
    protocol = HermesProtocol(family)
    result = Observation(text="The box enlarged.", images=[Image.new("RGB", (56, 56))])
    messages = [
        {"role": "system", "content": protocol.system_prompt(tools)},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color?"}]},
        {"role": "assistant", "content": "Let me look."},
        *protocol.observation_message(Observation.combined([result, Observation.failure("no such page")]), "zoom"),
    ]
    text = render(processor, protocol, tools, messages, add_generation_prompt=True)
    assert '"name": "zoom"' in text and '"bbox_2d"' in text and '"name": "search"' in text
    assert "<answer>" in text  # the protocol's instructions sit beside the template's tool list
    # Both results, in order, in one user turn; the image's placeholder inside the first.
    first = text.index("<tool_response>\nThe box enlarged.<|vision_start|><|image_pad|><|vision_end|>\n</tool_response>")
    second = text.index("<tool_response>\nno such page\n</tool_response>")
    assert first < second and text.count("<|im_start|>user") == 2
    assert text.endswith("<|im_start|>assistant\n" + ("<think>\n" if family == "qwen3.5" else ""))


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_calls_the_template_writes_parse_back(family, tiny_model_dirs, tools):
    processor = AutoProcessor.from_pretrained(tiny_model_dirs[family])
    protocol = HermesProtocol(family)
    calls = [{"type": "function", "function": {"name": "zoom", "arguments": {"bbox_2d": [10, 20, 110, 120.5]}}},
             {"type": "function", "function": {"name": "search", "arguments": {"query": "capital of Norway"}}}]
    messages = [{"role": "user", "content": "Where?"},
                {"role": "assistant", "content": "I will check.", "tool_calls": calls}]
    text = render(processor, protocol, tools, messages)
    turn = text[text.rindex("<|im_start|>assistant\n") + len("<|im_start|>assistant\n"): text.rindex("<|im_end|>")]
    action = protocol.parse_action(turn, tools)
    assert [(call.kind, call.name, call.argument) for call in action.tool_calls] == [
        ("tool", "zoom", "[10, 20, 110, 120.5]"), ("tool", "search", "capital of Norway")]
    assert protocol.turn_is_well_formed(turn, tools, is_last=False)
    assert protocol.extract_answer(turn) is None


def test_qwen2_5_vl_tool_template_matches_the_stock_one_without_tools():
    family = get_family("qwen2.5-vl")
    from jinja2 import Environment

    conversations = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello."}, {"role": "user", "content": [{"type": "text", "text": "?"}]}],
    ]
    environment = Environment()
    stock = environment.from_string(chat_template(family))
    ours = environment.from_string(chat_template(family, tools=True))
    for messages in conversations:
        for generation_prompt in (False, True):
            assert ours.render(messages=messages, add_generation_prompt=generation_prompt) == stock.render(
                messages=messages, add_generation_prompt=generation_prompt)


def test_qwen3_5_thinking_and_non_thinking_templates(tiny_model_dirs, tools):
    processor = AutoProcessor.from_pretrained(tiny_model_dirs["qwen3.5"])
    protocol = HermesProtocol("qwen3.5")
    messages = [{"role": "user", "content": "Where?"}]
    assert render(processor, protocol, tools, messages, add_generation_prompt=True).endswith("<think>\n")
    off = render(processor, protocol, tools, messages, add_generation_prompt=True, enable_thinking=False)
    assert off.endswith("<think>\n\n</think>\n\n")
    import importlib.resources

    nothink = (importlib.resources.files("trl") / "chat_templates" / "qwen3_5_nothink.jinja").read_text()
    assert render(processor, protocol, tools, messages, add_generation_prompt=True,
                  chat_template=nothink).endswith("<think>\n\n</think>\n\n")
    # Calls written while reasoning are not calls; the answer follows the reasoning.
    turn = 'Maybe <tool_call>\n<function=zoom>\n</function>\n</tool_call>?\n</think>\n\n<answer>Oslo</answer>'
    action = protocol.parse_action(turn, tools)
    assert (action.kind, action.argument) == ("answer", "Oslo")
    assert protocol.turn_is_well_formed(turn, tools, is_last=True)


@pytest.mark.parametrize(("family", "turn", "error"), [
    ("qwen3-vl", '<tool_call>\n{"name": "zoom", "arguments": {"bbox_2d": [1, 2, 3]\n</tool_call>', "not valid JSON"),
    ("qwen3-vl", '<tool_call>\n{"name": "crop", "arguments": {}}\n</tool_call>', "There is no tool named 'crop'"),
    ("qwen3-vl", '<tool_call>\n{"name": "zoom", "arguments": {"bbox_2d": [1, 2, 3]}}\n</tool_call>',
     "'bbox_2d' must have 4 to 4 items, got 3"),
    ("qwen3-vl", '<tool_call>\n{"name": "zoom", "arguments": {"box": [1, 2, 3, 4]}}\n</tool_call>',
     "unknown argument 'box'"),
    ("qwen3-vl", '<tool_call>\n{"name": "search", "arguments": {}}\n</tool_call>', "missing the required argument"),
    ("qwen3-vl", '<tool_call>\n{"name": "search", "arguments": {"query": 7}}\n</tool_call>', "must be of type string"),
    ("qwen3-vl", '<tool_call>\n["zoom"]\n</tool_call>', 'write {"name": ..., "arguments": {...}}'),
    ("qwen3-vl", '<tool_call>\n{"name": "zoom", "arguments": {"bbox_2d": [1, 2, 3, 4]}}', "was not closed"),
    ("qwen3.5", "<tool_call>\nzoom [1, 2, 3, 4]\n</tool_call>", "write <function=NAME>"),
    ("qwen3.5", "<tool_call>\n<function=zoom>\n<parameter=bbox_2d>\n[1, 2, true, 4]\n</parameter>\n</function>\n"
                "</tool_call>", "items must be of type number"),
])
def test_calls_that_cannot_run_say_why(family, turn, error, tools):
    action = HermesProtocol(family).parse_action(turn, tools)
    assert action.kind == "invalid" and error in action.error, action.error
    assert not HermesProtocol(family).turn_is_well_formed(turn, tools, is_last=False)


def test_one_bad_call_does_not_stop_the_others(tools):
    turn = ('<tool_call>\n{"name": "search", "arguments": {"query": "Oslo"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "zoom", "arguments": "[1, 2"}\n</tool_call>')
    action = HermesProtocol("qwen2.5-vl").parse_action(turn, tools)
    assert action.kind == "tool" and action.name == "search, zoom"
    assert [call.kind for call in action.tool_calls] == ["tool", "invalid"]
    assert "is not a JSON object" in action.tool_calls[1].error


def test_answers_and_protocol_construction(tools):
    protocol = HermesProtocol("qwen3-vl")
    assert protocol.extract_answer("It is <answer> red </answer>.") == "red"
    assert protocol.extract_answer("Red.") == "Red."
    assert protocol.parse_action("  ", tools).kind == "invalid"
    assert not protocol.turn_is_well_formed("Red.", tools, is_last=True)  # asked for the tags
    assert protocol.stop_strings(tools) == []
    with pytest.raises(ValueError, match="needs the model's family"):
        get_protocol("hermes")
    assert get_protocol("hermes", "qwen3.5").family.tool_call_format == "xml_parameters"


def test_rewards_read_every_call_of_a_turn(tools):
    from agentic_vlm.rewards.trajectory import tool_arguments

    calls = [{"name": "zoom", "arguments": {"bbox_2d": box}} for box in ([1, 2, 3, 4], [5, 6, 7, 8])]
    turn = "\n".join(f"<tool_call>\n{json.dumps(call)}\n</tool_call>" for call in calls)
    assert tool_arguments([turn], HermesProtocol("qwen3-vl"), tools, "zoom") == ["[1, 2, 3, 4]", "[5, 6, 7, 8]"]


def test_calls_past_the_limit_of_a_turn_do_not_run(tools):
    call = '<tool_call>\n{"name": "search", "arguments": {"query": "Oslo"}}\n</tool_call>\n'
    action = HermesProtocol("qwen2.5-vl", max_calls_per_turn=2).parse_action(call * 5, tools)
    assert [c.kind for c in action.tool_calls] == ["tool", "tool", "invalid"]
    assert "Only 2 tool calls of a turn run; the other 3 were not run." in action.tool_calls[2].error
    assert HermesProtocol("qwen2.5-vl").parse_action(call * 8, tools).tool_calls[-1].kind == "tool"
