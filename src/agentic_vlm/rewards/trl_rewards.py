"""Reward functions with TRL's signature, built from a protocol.

Each factory returns a function ``f(prompts, completions, **kwargs) -> list[float | None]``. ``completions[i]`` is
the trajectory as messages: ``{"role": "assistant", "content": str}`` for each model turn and
``{"role": "tool", "name": str, "content": str, "error": str | None, "num_images": int}`` for each observation.
Dataset columns (``answer`` ...) arrive as keyword arguments, one value per completion.
"""

from __future__ import annotations

from collections.abc import Callable

from ..protocols.base import Protocol
from ..tools.base import Tool
from .text import exact_match

RewardFunc = Callable[..., list[float | None]]


def assistant_turns(completion: list[dict]) -> list[str]:
    return [message["content"] for message in completion if message["role"] == "assistant"]


def make_accuracy_reward(protocol: Protocol, tools: list[Tool]) -> RewardFunc:
    """1.0 when the final answer matches a ground truth of the ``answer`` column (normalised exact match)."""

    def accuracy(completions: list[list[dict]], answer: list, **kwargs) -> list[float | None]:
        rewards = []
        for completion, truth in zip(completions, answer, strict=True):
            turns = assistant_turns(completion)
            prediction = protocol.extract_answer(turns[-1]) if turns else None
            rewards.append(0.0 if prediction is None else exact_match(prediction, truth))
        return rewards

    return accuracy


def make_format_reward(protocol: Protocol, tools: list[Tool]) -> RewardFunc:
    """1.0 when every turn follows the protocol and the last one answers, else 0.0."""

    def format(completions: list[list[dict]], **kwargs) -> list[float | None]:  # noqa: A001 - the metric's name
        rewards = []
        for completion in completions:
            turns = assistant_turns(completion)
            well_formed = bool(turns) and all(
                protocol.turn_is_well_formed(text, tools, is_last=index == len(turns) - 1)
                for index, text in enumerate(turns)
            )
            rewards.append(float(well_formed))
        return rewards

    return format


REWARD_FACTORIES: dict[str, Callable[[Protocol, list[Tool]], RewardFunc]] = {
    "accuracy": make_accuracy_reward,
    "format": make_format_reward,
}


def build_reward_funcs(names: list[str], protocol: Protocol, tools: list[Tool]) -> list[RewardFunc]:
    unknown = [name for name in names if name not in REWARD_FACTORIES]
    if unknown:
        raise ValueError(f"unknown reward function(s) {unknown}; available: {sorted(REWARD_FACTORIES)}")
    return [REWARD_FACTORIES[name](protocol, tools) for name in names]
