"""Tool-use shaping: a bonus for a right answer reached with a tool, a penalty for invalid actions.

Off by default: shaping changes what the policy optimises, so each term is a separately named reward that a recipe
adds with an explicit weight.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..protocols.base import Protocol
from ..tools.base import Tool


def tool_use_bonus(answer_is_right: bool, successful_tool_calls: int) -> float:
    """1.0 when the answer is right and at least one tool ran successfully, else 0.0.

    Only a right answer earns it, so the policy is never paid for calling tools for their own sake.
    """
    return float(answer_is_right and successful_tool_calls > 0)


def invalid_action_count(turns: Sequence[str], protocol: Protocol, tools: list[Tool]) -> int:
    """How many turns hold no usable action (no closed action tag, or an unknown tool)."""
    return sum(1 for text in turns if protocol.parse_action(text, tools).kind == "invalid")


def invalid_action_penalty(turns: Sequence[str], protocol: Protocol, tools: list[Tool]) -> float:
    """Minus the number of invalid actions: each one costs the same, whatever the trajectory's length."""
    return -float(invalid_action_count(turns, protocol, tools))
