"""Format scores: does a trajectory follow its protocol in every turn, and end with an answer?

What a well-formed turn is belongs to the protocol (:meth:`Protocol.turn_is_well_formed`); for the ARFT tags it is
``<think>...</think>`` then exactly one closed action, and the last turn's action must be the answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..protocols.base import Protocol
from ..tools.base import Tool


def well_formed_turns(turns: Sequence[str], protocol: Protocol, tools: list[Tool]) -> list[bool]:
    """For each turn, whether it follows the protocol; the last turn must be an answer turn."""
    last = len(turns) - 1
    return [protocol.turn_is_well_formed(text, tools, is_last=index == last) for index, text in enumerate(turns)]


def strict_format_score(turns: Sequence[str], protocol: Protocol, tools: list[Tool]) -> float:
    """1.0 when every turn is well formed and the last one answers, else 0.0."""
    return float(bool(turns) and all(well_formed_turns(turns, protocol, tools)))


def per_turn_format_score(turns: Sequence[str], protocol: Protocol, tools: list[Tool]) -> float:
    """The fraction of well-formed turns: partial credit that still separates one slip from a broken trajectory.

    A trajectory cut off before its answer loses its last turn (that turn is judged as a final turn).
    """
    return sum(well_formed_turns(turns, protocol, tools)) / len(turns) if turns else 0.0
