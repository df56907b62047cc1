"""The protocol interface: how a model writes actions and how observations are written back to it.

The rollout engine knows nothing about tags. Each turn it asks the protocol where generation must stop
(:meth:`Protocol.stop_strings`), what action a turn's text contains (:meth:`Protocol.parse_action`) and how a tool's
observation is shown to the model (:meth:`Protocol.observation_message`); what the chat template needs besides the
messages comes from :meth:`Protocol.chat_template_kwargs` (the tool list, for protocols whose template renders it). Rewards ask it for the final answer
(:meth:`Protocol.extract_answer`) and whether a turn is well formed (:meth:`Protocol.turn_is_well_formed`).
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass
from typing import Literal

from ..tools.base import Observation, Tool


@dataclass(frozen=True)
class Action:
    """What the model asked for in one turn.

    ``kind`` is ``"tool"`` (run tool ``name`` on ``argument``), ``"answer"`` (the trajectory ends with ``argument`` as
    the answer) or ``"invalid"`` (the turn has no usable action; ``error`` says why, in words shown to the model).

    A turn that makes several tool calls at once (``hermes``) is one ``"tool"`` action whose ``calls`` are the single
    calls, in order: each a ``"tool"`` action, or an ``"invalid"`` one for a call that cannot run (its ``name`` is the
    tool the model named, if any); ``name`` lists the called tools' names.
    """

    kind: Literal["tool", "answer", "invalid"]
    name: str = ""
    argument: str = ""
    error: str = ""
    calls: tuple[Action, ...] = ()

    @classmethod
    def invalid(cls, error: str, name: str = "") -> Action:
        return cls(kind="invalid", name=name, error=error)

    @classmethod
    def several(cls, calls: list[Action]) -> Action:
        """The action of a turn that made ``calls`` (at least one)."""
        if len(calls) == 1:
            return calls[0]
        return cls(kind="tool", name=", ".join(call.name for call in calls), calls=tuple(calls))

    @property
    def tool_calls(self) -> tuple[Action, ...]:
        """The calls the engine runs for this action, in order: its several ``calls``, or the action itself."""
        return self.calls or (self,)


class Protocol(abc.ABC):
    """How actions and observations are written. Subclasses are small and stateless."""

    name: str

    @abc.abstractmethod
    def system_prompt(self, tools: list[Tool]) -> str:
        """The system message that teaches the model the protocol and lists ``tools``."""

    @abc.abstractmethod
    def stop_strings(self, tools: list[Tool]) -> list[str]:
        """Strings that end a turn: generation stops right after any of them (the closing tags of actions)."""

    @abc.abstractmethod
    def parse_action(self, text: str, tools: list[Tool]) -> Action:
        """The action of one turn's generated text (special tokens already removed)."""

    @abc.abstractmethod
    def observation_message(self, observation: Observation, tool_name: str) -> dict | list[dict]:
        """The chat message (or messages, one per call of a turn with several) that carries ``observation`` back.

        Content parts follow the transformers multimodal chat format: ``{"type": "text", "text": ...}`` and
        ``{"type": "image"}``, one image part per image of ``observation.images``, in order. Each message holds the
        text of its observation exactly once.
        """

    def chat_template_kwargs(self, tools: list[Tool]) -> dict:
        """Keyword arguments of ``apply_chat_template`` besides the messages (``tools``, a ``chat_template``)."""
        return {}

    @abc.abstractmethod
    def extract_answer(self, text: str) -> str | None:
        """The final answer written in ``text`` (the last assistant turn), or ``None`` if there is none."""

    @abc.abstractmethod
    def turn_is_well_formed(self, text: str, tools: list[Tool], is_last: bool) -> bool:
        """Whether one assistant turn follows the protocol exactly (used by the format reward)."""


def _opening_tag(names: list[str]) -> re.Pattern:
    alternatives = "|".join(re.escape(name) for name in names)
    return re.compile(rf"<({alternatives})>")


def closed_blocks(text: str, names: list[str]) -> list[tuple[str, str]]:
    """``(name, argument)`` of each ``<name>argument</name>`` in ``text``, left to right, none inside another.

    What ``re.findall(r"<(names)>(.*?)</\1>")`` finds, in linear time: the regex looks for a closing tag from every
    opening tag, which is quadratic in the number of unclosed tags. Here the next closing tag of each name is looked
    up once and kept while it lies ahead, so each stretch of text is searched once per name.
    """
    opening = _opening_tag(names)
    next_closing: dict[str, int] = {}  # name -> where its next closing tag starts, -1 if there is none
    actions, position = [], 0
    while (tag := opening.search(text, position)) is not None:
        name = tag.group(1)
        closing = next_closing.get(name)
        if closing is None or -1 < closing < tag.end():
            closing = next_closing[name] = text.find(f"</{name}>", tag.end())
        if closing == -1:
            position = tag.end()
            continue
        actions.append((name, text[tag.end() : closing]))
        position = closing + len(name) + 3
    return actions
