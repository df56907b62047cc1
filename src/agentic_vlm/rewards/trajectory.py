"""Reading a trajectory as our trainer hands it to reward functions.

A trajectory is a list of messages: ``{"role": "assistant", "content": str}`` for each model turn (its text, special
tokens removed) and ``{"role": "tool", "name": str, "content": str, "error": str | None, "num_images": int}`` for
each observation (``name`` is "" and ``error`` is set for an invalid action).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..protocols.base import Protocol
from ..tools.base import Tool


def assistant_turns(completion: list[dict]) -> list[str]:
    """The model's text of each turn, in order. A ``None`` content is an empty turn; a list of content parts is the
    text of its text parts, joined."""
    return [message_text(message["content"]) for message in completion if message["role"] == "assistant"]


def message_text(content: str | list[dict] | None) -> str:
    """The text of a chat message's ``content``: a string, ``None`` (no text), or parts ``{"type": "text", ...}``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        return "".join(part.get("text") or "" for part in content if part.get("type") == "text")
    raise ValueError(f"a message's content must be a string, None or a list of parts, got {type(content).__name__}")


def final_answer(completion: list[dict], protocol: Protocol) -> str | None:
    """The answer written in the last model turn, or ``None`` when the trajectory ended without one."""
    turns = assistant_turns(completion)
    return protocol.extract_answer(turns[-1]) if turns else None


def successful_tool_calls(completion: list[dict]) -> int:
    """How many observations came from a tool that ran without error."""
    return sum(
        1 for message in completion if message["role"] == "tool" and message.get("name") and not message.get("error")
    )


def tool_arguments(turns: Sequence[str], protocol: Protocol, tools: list[Tool], tool_name: str) -> list[str]:
    """The arguments of the ``tool_name`` calls written in ``turns``, in order (several per turn with ``hermes``)."""
    calls = (call for text in turns for call in protocol.parse_action(text, tools).tool_calls)
    return [call.argument for call in calls if call.kind == "tool" and call.name == tool_name]


def solution_turns(solution: str | Sequence[str], protocol: Protocol, tools: list[Tool]) -> list[str]:
    """A reference solution's turns: a list is one string per turn; a string is cut after each action's closing
    tag, where generation would have stopped."""
    if not isinstance(solution, str):
        return list(solution)
    stops = "|".join(re.escape(stop) for stop in protocol.stop_strings(tools))
    pieces = re.split(f"({stops})", solution)
    return ["".join(pieces[start : start + 2]) for start in range(0, len(pieces), 2)]
