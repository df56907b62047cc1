"""The Visual-ARFT tag protocol (the default).

Each assistant turn is ``<think>reasoning</think>`` followed by exactly one action: a tool action
``<NAME>argument</NAME>`` where NAME is a tool's name (``<search>query</search>``, ``<code>python</code>``,
``<zoom>[x1, y1, x2, y2]</zoom>``) or the final ``<answer>text</answer>``. Generation stops right after a tool action's
closing tag; the observation comes back as a user turn wrapped in ``<information>...</information>``. The answer turn
ends with the end-of-turn token, like any chat reply.
"""

from __future__ import annotations

import re

from ..tools.base import Observation, Tool
from .base import Action, Protocol, closed_blocks

ANSWER_TAG = "answer"
_TAG = re.compile(r"<([a-z_][a-z0-9_]*)>", re.IGNORECASE)


class ArftProtocol(Protocol):
    name = "arft"

    def __init__(self, observation_tag: str = "information"):
        self.observation_tag = observation_tag

    def system_prompt(self, tools: list[Tool]) -> str:
        if not tools:  # the baseline without tools (agentic-vlm eval's pass without tools): no word of tools
            return ("You answer questions about images.\n"
                    f"First reason inside <think> and </think>, then write <{ANSWER_TAG}>your final answer</{ANSWER_TAG}>.")
        tool_lines = "\n".join(f"- <{tool.name}>{tool.description}</{tool.name}>" for tool in tools)
        return (
            "You answer questions about images and may use tools to do it.\n"
            "In every turn, first reason inside <think> and </think>, then write exactly one action:\n"
            f"{tool_lines}\n"
            f"- <{ANSWER_TAG}>your final answer</{ANSWER_TAG}>: ends the conversation.\n"
            f"After a tool action you receive its result inside <{self.observation_tag}> and "
            f"</{self.observation_tag}>, then you continue with a new turn."
        )

    def stop_strings(self, tools: list[Tool]) -> list[str]:
        return [f"</{tool.name}>" for tool in tools]

    def parse_action(self, text: str, tools: list[Tool]) -> Action:
        names = [tool.name for tool in tools] + [ANSWER_TAG]
        actions = closed_blocks(text, names)
        if actions:
            name, argument = actions[0][0], actions[0][1].strip()
            if name == ANSWER_TAG:
                return Action(kind="answer", argument=argument)
            return Action(kind="tool", name=name, argument=argument)
        return Action.invalid(self._explain_missing_action(text, names))

    def _explain_missing_action(self, text: str, names: list[str]) -> str:
        usage = ", ".join(f"<{name}>...</{name}>" for name in names)
        for tag in _TAG.findall(text):
            if tag in names:
                return f"Invalid action: <{tag}> was not closed with </{tag}>. Use one of {usage}."
        unknown = [tag for tag in _TAG.findall(text) if tag != "think"]
        if unknown:
            return f"Invalid action: <{unknown[0]}> is not an available action. Use one of {usage}."
        return f"Invalid action: the turn ended without an action. End every turn with one of {usage}."

    def observation_message(self, observation: Observation, tool_name: str) -> dict:
        open_tag, close_tag = f"<{self.observation_tag}>", f"</{self.observation_tag}>"
        content = [{"type": "text", "text": open_tag}]
        content += [{"type": "image"} for _ in observation.images]
        content.append({"type": "text", "text": f"{observation.text}{close_tag}"})
        return {"role": "user", "content": content}

    def extract_answer(self, text: str) -> str | None:
        answers = closed_blocks(text, [ANSWER_TAG])
        return answers[-1][1].strip() if answers else None

    def turn_is_well_formed(self, text: str, tools: list[Tool], is_last: bool) -> bool:
        names = [ANSWER_TAG] if is_last else [tool.name for tool in tools]
        alternatives = "|".join(re.escape(name) for name in names)
        pattern = (
            r"\s*<think>(?:(?!</?think>).)+</think>\s*"
            rf"<({alternatives})>(?:(?!</?\1>).)+</\1>\s*"
        )
        if re.fullmatch(pattern, text, flags=re.DOTALL) is None:
            return False
        # exactly one action: no other action tag anywhere in the turn
        all_names = [tool.name for tool in tools] + [ANSWER_TAG]
        return len(closed_blocks(text, all_names)) == 1
