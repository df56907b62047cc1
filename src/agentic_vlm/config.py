"""Configuration of the agentic GRPO trainer: everything of TRL's ``GRPOConfig`` plus turns, protocol, tools, rewards."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig


@dataclass
class AgenticGRPOConfig(GRPOConfig):
    r"""
    Configuration for [`AgenticGRPOTrainer`]. Every field of TRL's [`~trl.GRPOConfig`] applies unchanged; in
    particular ``max_completion_length`` bounds all the tokens after the prompt, the model's and the observations'
    together, and ``temperature``, ``top_p``, ``top_k``, ``min_p`` and ``repetition_penalty`` are used at every turn.

    Parameters:
        > Turns

        max_turns (`int`, *optional*, defaults to `4`):
            Assistant turns per trajectory, the answer turn included. A trajectory that still calls a tool in its
            last turn ends there without an answer.
        protocol (`str`, *optional*, defaults to `"arft"`):
            How actions and observations are written; a name from `agentic_vlm.protocols.PROTOCOLS`.
        system_prompt (`str` or `None`, *optional*, defaults to `None`):
            Replaces the protocol's system prompt (which lists the tools). A dataset prompt that starts with its own
            system message keeps it.

        > Tools

        tools (`list[str]`, *optional*, defaults to `["zoom"]`):
            Tools built by name for the command line and recipes (see `agentic_vlm.tools.build_tools`). Ignored when
            tools are passed to the trainer directly.
        tool_kwargs (`dict[str, dict]`, *optional*):
            Keyword arguments of each tool's constructor, by tool name, e.g. `{"code": {"timeout": 10}}`.
        tool_timeout (`float`, *optional*, defaults to `60.0`):
            Seconds one tool call may take; a slower call becomes a timeout observation.
        max_images_per_observation (`int`, *optional*, defaults to `4`):
            Images kept from one tool result; further images are dropped with a note to the model.

        > Rewards

        reward_funcs (`list[str]`, *optional*, defaults to `["accuracy", "format"]`):
            Reward functions built by name for the command line and recipes (see
            `agentic_vlm.rewards.build_reward_funcs`); weighted by TRL's `reward_weights`. Ignored when reward
            functions are passed to the trainer directly.
        reward_kwargs (`dict[str, dict]`, *optional*):
            Options of each reward function, by name.

        > Logging

        log_trajectories_steps (`int`, *optional*, defaults to `10`):
            Write some trajectories, turn by turn with their rewards, to `<output_dir>/trajectories.jsonl` every
            this many optimizer steps (0 disables it).
        num_trajectories_to_log (`int`, *optional*, defaults to `4`):
            Trajectories written each time.
    """

    max_turns: int = field(default=4, metadata={"help": "Assistant turns per trajectory, the answer turn included."})
    protocol: str = field(default="arft", metadata={"help": "How actions and observations are written."})
    system_prompt: str | None = field(default=None, metadata={"help": "Replaces the protocol's system prompt."})
    tools: list[str] = field(default_factory=lambda: ["zoom"], metadata={"help": "Tools to build by name."})
    tool_kwargs: dict[str, Any] | str | None = field(
        default=None, metadata={"help": "Constructor arguments of each tool, by name (a dict, or JSON on the CLI)."}
    )
    tool_timeout: float = field(default=60.0, metadata={"help": "Seconds one tool call may take."})
    max_images_per_observation: int = field(default=4, metadata={"help": "Images kept from one tool result."})
    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy", "format"], metadata={"help": "Reward functions to build by name."}
    )
    reward_kwargs: dict[str, Any] | str | None = field(
        default=None, metadata={"help": "Options of each reward function, by name (a dict, or JSON on the CLI)."}
    )
    log_trajectories_steps: int = field(default=10, metadata={"help": "Write trajectories every N steps (0: never)."})
    num_trajectories_to_log: int = field(default=4, metadata={"help": "Trajectories written each time."})

    def __post_init__(self):
        # Before TrainingArguments' own checks, which fail on a missing package without naming our extra.
        for module, extra, needed in (("deepspeed", "deepspeed", bool(self.deepspeed)), ("vllm", "vllm", self.use_vllm)):
            if needed and importlib.util.find_spec(module) is None:
                raise ImportError(f"this configuration needs {module}; install it with: pip install 'agentic-vlm[{extra}]'")
        super().__post_init__()
        self.tool_kwargs = _as_dict(self.tool_kwargs, "tool_kwargs")
        self.reward_kwargs = _as_dict(self.reward_kwargs, "reward_kwargs")
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {self.max_turns}")
        if self.tool_timeout <= 0:
            raise ValueError(f"tool_timeout must be positive, got {self.tool_timeout}")


def _as_dict(value: dict | str | None, name: str) -> dict:
    """Dict fields come as dicts from YAML and Python, and as JSON strings from the command line."""
    if value is None:
        return {}
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"{name} must be a JSON object, got {value!r}: {error.msg}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a mapping of name to options, got {type(value).__name__}")
    return value
