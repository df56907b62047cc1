"""The ``hermes`` protocol: the model calls tools the way its chat template taught it.

Tools are described by JSON schema (:meth:`Tool.function_schema`) and listed by the model's own chat template in its
system turn. The model calls them inside ``<tool_call>...</tool_call>``, one block per call and several per turn if it
likes, in its family's format (``families.ModelFamily.tool_call_format``)::

    <tool_call>
    {"name": "zoom", "arguments": {"bbox_2d": [10, 20, 110, 120]}}
    </tool_call>

(Qwen2.5-VL, Qwen3-VL), or, for Qwen3.5::

    <tool_call>
    <function=zoom>
    <parameter=bbox_2d>
    [10, 20, 110, 120]
    </parameter>
    </function>
    </tool_call>

A turn runs to the model's end of turn. The calls of a turn run concurrently; their results come back in order as
``tool`` messages, which the template writes as ``<tool_response>`` blocks (images included). A call that cannot run
(malformed JSON, an unknown tool, arguments that do not fit the schema) gets a result saying why; the turn's other
calls still run. A turn without a call is the answer: the text inside ``<answer>...</answer>`` if the model wrote the
tags, else all it wrote after its reasoning. Reasoning (``<think>...</think>``, Qwen3.5) is never parsed for calls.
Qwen2.5-VL's stock template cannot render tools, so its family's tool template (``templates/qwen2_5_vl_tools.jinja``)
is used with this protocol.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..families import ModelFamily, chat_template, get_family
from ..tools.base import Observation, Tool
from .base import Action, Protocol, closed_blocks

# Names stop at "<" too, so that a run of unclosed "<function=" is scanned once, not once per occurrence.
_FUNCTION = re.compile(r"<function=([^<>\n]+)>")
_PARAMETER_OPENING = re.compile(r"<parameter=([^<>\n]+)>\n")
_PARAMETER_CLOSING = "\n</parameter>"
_JSON_TYPES = {"string": str, "number": (int, float), "integer": int, "boolean": bool, "array": list, "object": dict}


def _visible(text: str) -> str:
    """What the model wrote after its reasoning (the whole text when it wrote no ``</think>``)."""
    return text.rsplit("</think>", 1)[-1]


class HermesProtocol(Protocol):
    """Args:
        family: The model family (its tool-call format and templates).
        max_calls_per_turn: Calls of one turn that run; a degenerate turn that writes thousands of blocks would
            otherwise start thousands of tool calls (and cost seconds to parse). The rest get one result saying so.
    """

    name = "hermes"

    def __init__(self, family: ModelFamily | str, max_calls_per_turn: int = 8):
        if max_calls_per_turn < 1:
            raise ValueError(f"max_calls_per_turn must be at least 1, got {max_calls_per_turn}")
        self.family = get_family(family) if isinstance(family, str) else family
        self.max_calls_per_turn = max_calls_per_turn

    def system_prompt(self, tools: list[Tool]) -> str:
        if not tools:  # the baseline without tools (agentic-vlm eval's pass without tools)
            return "You answer questions about images. Put the final answer inside <answer> and </answer>."
        return (
            "You answer questions about images. Call the tools when they help you see better or find facts; each "
            "result comes back to you. When you know the answer, reply without a tool call and put the final answer "
            "inside <answer> and </answer>."
        )

    def chat_template_kwargs(self, tools: list[Tool]) -> dict:
        kwargs: dict[str, Any] = {"tools": [tool.function_schema() for tool in tools]}
        if self.family.tool_chat_template is not None:  # the stock template cannot list tools
            kwargs["chat_template"] = chat_template(self.family, tools=True)
        return kwargs

    def stop_strings(self, tools: list[Tool]) -> list[str]:
        return []  # a turn may hold several calls: it ends with the model's end of turn

    # ------------------------------------------------------------------------------------------------------ actions
    def parse_action(self, text: str, tools: list[Tool]) -> Action:
        visible = _visible(text)
        blocks = _blocks(visible, "tool_call")
        if not blocks:
            if "<tool_call>" in visible:
                return Action.invalid("Invalid tool call: <tool_call> was not closed with </tool_call>.")
            answer = self.extract_answer(text)
            if answer is None:
                return Action.invalid("The turn has neither a tool call nor an answer.")
            return Action(kind="answer", argument=answer)
        calls = [self._parse_call(block.strip(), tools) for block in blocks[: self.max_calls_per_turn]]
        if len(blocks) > self.max_calls_per_turn:
            calls.append(Action.invalid(f"Only {self.max_calls_per_turn} tool calls of a turn run; the other "
                                        f"{len(blocks) - self.max_calls_per_turn} were not run."))
        return Action.several(calls)

    def _parse_call(self, block: str, tools: list[Tool]) -> Action:
        if self.family.tool_call_format == "xml_parameters":
            function = _FUNCTION.search(block)
            if function is None:
                return Action.invalid(f"Invalid tool call {_excerpt(block)}: write <function=NAME> and one "
                                      "<parameter=KEY> block per argument inside <tool_call>.")
            return _bind(function.group(1).strip(), {key.strip(): _parameter_value(value)
                                                     for key, value in _parameters(block)}, tools)
        try:
            call = json.loads(block)
        except json.JSONDecodeError as error:
            return Action.invalid(f"Invalid tool call {_excerpt(block)}: not valid JSON ({error.msg} at character "
                                  f"{error.pos}).")
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return Action.invalid(f'Invalid tool call {_excerpt(block)}: write {{"name": ..., "arguments": {{...}}}}.')
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):  # some models write the arguments object as a JSON string
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                return Action.invalid(f"Invalid arguments for {call['name']}: {_excerpt(arguments)} is not a JSON "
                                      "object.", name=call["name"])
        return _bind(call["name"], arguments, tools)

    # -------------------------------------------------------------------------------------------------- observations
    def observation_message(self, observation: Observation, tool_name: str) -> list[dict]:
        return [
            {"role": "tool", "content": [{"type": "text", "text": result.text}, *({"type": "image"} for _ in result.images)]}
            for result in (observation.parts or [observation])
        ]

    # ------------------------------------------------------------------------------------------------------ answers
    def extract_answer(self, text: str) -> str | None:
        visible = _visible(text)
        if "<tool_call>" in visible:
            return None
        answers = _blocks(visible, "answer")
        answer = answers[-1] if answers else visible
        return answer.strip() or None

    def turn_is_well_formed(self, text: str, tools: list[Tool], is_last: bool) -> bool:
        action = self.parse_action(text, tools)
        visible = _visible(text)
        if is_last:
            return action.kind == "answer" and len(_blocks(visible, "answer")) == 1
        # Calls only, every one of them usable, and nothing after the last (the format asks for no suffix).
        return (action.kind == "tool" and all(call.kind == "tool" for call in action.tool_calls)
                and visible.rstrip().endswith("</tool_call>"))


def _blocks(text: str, tag: str) -> list[str]:
    return [body for _, body in closed_blocks(text, [tag])]


def _parameters(block: str) -> list[tuple[str, str]]:
    """``(key, value)`` of each ``<parameter=KEY>\\nVALUE\\n</parameter>`` in ``block``, in linear time."""
    found, position = [], 0
    while (opening := _PARAMETER_OPENING.search(block, position)) is not None:
        closing = block.find(_PARAMETER_CLOSING, opening.end())
        if closing < 0:  # nor after any later opening
            break
        found.append((opening.group(1), block[opening.end() : closing]))
        position = closing + len(_PARAMETER_CLOSING)
    return found


def _excerpt(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _parameter_value(text: str) -> Any:
    """A Qwen3.5 parameter's value: JSON when it parses (numbers, lists), else the text as written."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _bind(name: str, arguments: Any, tools: list[Tool]) -> Action:
    """The call of tool ``name`` with ``arguments``, or why it cannot run."""
    tool = next((tool for tool in tools if tool.name == name), None)
    if tool is None:
        return Action.invalid(f"There is no tool named {name!r}; the tools are {', '.join(t.name for t in tools)}.",
                              name=name)
    error = _schema_error(arguments, tool.parameters)
    if error is not None:
        return Action.invalid(f"Invalid arguments for {name}: {error}.", name=name)
    properties = tool.parameters["properties"]
    if len(properties) == 1:
        value = arguments[next(iter(properties))]
        return Action(kind="tool", name=name, argument=value if isinstance(value, str) else json.dumps(value))
    return Action(kind="tool", name=name, argument=json.dumps(arguments))


def _schema_error(arguments: Any, schema: dict) -> str | None:
    """What is wrong with ``arguments`` for the object ``schema`` (types, required and unknown keys, array lengths),
    or ``None``. The subset of JSON schema that tool parameters use."""
    if not isinstance(arguments, dict):
        return f"the arguments must be a JSON object, got {type(arguments).__name__}"
    properties = schema.get("properties", {})
    unknown = sorted(set(arguments) - set(properties))
    if unknown:
        return f"unknown argument {unknown[0]!r} (expected {', '.join(properties)})"
    missing = [key for key in schema.get("required", []) if key not in arguments]
    if missing:
        return f"missing the required argument {missing[0]!r}"
    for key, value in arguments.items():
        error = _value_error(value, properties[key])
        if error is not None:
            return f"{key!r} {error}"
    return None


def _value_error(value: Any, schema: dict) -> str | None:
    expected = schema.get("type")
    wanted = _JSON_TYPES.get(expected)
    if wanted is not None and (not isinstance(value, wanted) or (isinstance(value, bool) and expected != "boolean")):
        return f"must be of type {expected}, got {json.dumps(value)[:40]}"
    if expected == "array":
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            return f"must have {schema.get('minItems')} to {schema.get('maxItems')} items, got {len(value)}"
        for item in value:
            error = _value_error(item, schema.get("items", {}))
            if error is not None:
                return f"items {error}"
    return None
