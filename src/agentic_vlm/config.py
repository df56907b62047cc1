"""Configuration of the agentic GRPO trainer: everything of TRL's ``GRPOConfig`` plus turns, protocol, tools, rewards."""

from __future__ import annotations

import difflib
import importlib.util
import inspect
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
            How actions and observations are written: `arft`, `vtool` (tags), or `hermes` (the model's own tool
            calls, tools described by JSON schema and rendered by its chat template).
        system_prompt (`str` or `None`, *optional*, defaults to `None`):
            Replaces the protocol's system prompt (which lists the tools). A dataset prompt that starts with its own
            system message keeps it.

        > Tools

        tools (`list[str]`, *optional*, defaults to `["zoom"]`):
            Tools built by name for the command line and recipes (see `agentic_vlm.tools.build_tools`). Ignored when
            tools are passed to the trainer directly.
        tool_kwargs (`dict[str, dict]`, *optional*):
            Keyword arguments of each tool's constructor, by tool name, e.g. `{"code": {"timeout_s": 10}}`.
        tool_timeout (`float`, *optional*, defaults to `60.0`):
            Seconds one tool call may take; a slower call becomes a timeout observation.
        max_images_per_observation (`int`, *optional*, defaults to `4`):
            Images kept from one tool result; further images are dropped with a note to the model.
        max_observation_tokens (`int`, *optional*, defaults to `2048`):
            Tokens of one tool result's text shown to the model; the rest is cut with a note to the model.

        > Loss masking

        mask_truncated_completions (`bool`, *optional*, defaults to `False`):
            TRL's field, with this meaning here: trajectories cut off by the token budget (`max_completion_length`
            or the model's context) are left out of the loss. Trajectories that ran out of turns are not (see
            `mask_over_turn_completions`). Only the loss mask is zeroed; the attention mask stays whole, so every
            image of a masked trajectory stays aligned with its tokens.
        mask_over_turn_completions (`bool`, *optional*, defaults to `False`):
            Leave trajectories that used all `max_turns` without answering out of the loss (Mini-o3's over-turn
            masking: long explorations are not punished for hitting the turn limit). Their rewards still count in
            their group's advantages.

        > vLLM

        vllm_dtype (`str`, *optional*, defaults to `"bfloat16"`):
            Data type of vLLM's weights and activations when `use_vllm` is set. `"float32"` makes vLLM's sampling
            log-probabilities match the training forward pass in fp32 (exactness checks, CPU tests); TRL alone would
            run vLLM in the checkpoint's dtype, and vLLM downcasts fp32 checkpoints to 16 bits.

        continuous_rollouts (`bool`, *optional*, defaults to `True`):
            With vLLM (colocate or server), each trajectory runs its own generate -> tool -> generate loop: no turn
            waits for the slowest generation or the slowest tool of the batch. `False` steps all trajectories turn by
            turn. Rollouts with transformers' `generate` are always turn by turn (under ZeRO-3 the ranks gather
            parameters together inside generation).

        > Rewards

        reward_funcs (`list[str]`, *optional*, defaults to `["accuracy", "format"]`):
            Reward functions built by name for the command line and recipes (see
            `agentic_vlm.rewards.build_reward_funcs`); weighted by TRL's `reward_weights`. Ignored when reward
            functions are passed to the trainer directly.
        reward_kwargs (`dict[str, dict]`, *optional*):
            Options of each reward function, by name.

        > Logging

        log_trajectories_steps (`int`, *optional*, defaults to `10`):
            Write some trajectories, turn by turn with their input and tool images, prediction and rewards, to
            `<output_dir>/trajectories-<time>.jsonl` (one file per run, printed when training starts; `agentic-vlm
            view` renders it) every this many optimizer steps (0 disables it).
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
    vllm_dtype: str = field(
        default="bfloat16",
        metadata={"help": "Data type of vLLM's weights and activations (float32 for exact log-probs, bfloat16 on GPU).",
                  "choices": ["bfloat16", "float16", "float32"]},
    )
    max_observation_tokens: int = field(
        default=2048, metadata={"help": "Tokens of one tool result's text shown to the model; the rest is cut."}
    )
    mask_over_turn_completions: bool = field(
        default=False,
        metadata={"help": "Leave trajectories that hit max_turns without answering out of the loss (Mini-o3)."},
    )
    continuous_rollouts: bool = field(
        default=True,
        metadata={"help": "With vLLM, each trajectory runs its own generate/tool loop instead of turn by turn."},
    )
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
        if self.bf16 is None and not self.fp16:
            # TRL turns an unset bf16 into True, which transformers then refuses on a machine without a bf16 GPU;
            # there the sensible default is full precision.
            from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available

            self.bf16 = self.use_cpu is False and (is_torch_bf16_gpu_available() or is_torch_xla_available())
        super().__post_init__()
        self.tool_kwargs = _as_dict(self.tool_kwargs, "tool_kwargs")
        self.reward_kwargs = _as_dict(self.reward_kwargs, "reward_kwargs")
        self._check_ranges()
        self._check_names()

    def _check_ranges(self) -> None:
        """Numbers that would fail (or silently do nothing) only once training runs."""
        at_least = {"max_turns": 1, "max_images_per_observation": 0, "max_observation_tokens": 1,
                    "log_trajectories_steps": 0, "num_trajectories_to_log": 0, "per_device_train_batch_size": 1,
                    "gradient_accumulation_steps": 1}
        for name, lowest in at_least.items():
            if getattr(self, name) is not None and getattr(self, name) < lowest:
                raise ValueError(f"{name} must be at least {lowest}, got {getattr(self, name)}")
        positive = ("learning_rate", "tool_timeout", "max_completion_length")
        for name in positive:
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be 0 or more, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.beta < 0:
            raise ValueError(f"beta must be 0 or more, got {self.beta}")
        if self.vllm_dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"vllm_dtype must be 'bfloat16', 'float16' or 'float32', got {self.vllm_dtype!r}")

    def _check_names(self) -> None:
        """Tools, their options, rewards and the protocol exist, without building any of them."""
        from .protocols import PROTOCOLS
        from .rewards import REWARD_FACTORIES
        from .tools import check_tool_kwargs

        if self.protocol not in PROTOCOLS:
            raise ValueError(_unknown("protocol", self.protocol, PROTOCOLS))
        check_tool_kwargs(self.tools, self.tool_kwargs)
        for name in [*self.reward_funcs, *self.reward_kwargs]:
            if name not in REWARD_FACTORIES:
                raise ValueError(_unknown("reward function", name, REWARD_FACTORIES))
        unused = [name for name in self.reward_kwargs if name not in self.reward_funcs]
        if unused:
            raise ValueError(f"reward_kwargs has options for {unused}, which are not among reward_funcs "
                             f"{self.reward_funcs}")
        for name, options in self.reward_kwargs.items():
            parameters = inspect.signature(REWARD_FACTORIES[name]).parameters
            unknown = sorted(set(options) - set(parameters) - {"protocol", "tools"})
            if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
                raise ValueError(f"reward_kwargs[{name!r}]: {unknown} are not options of this reward; it takes "
                                 f"{sorted(set(parameters) - {'protocol', 'tools'})}")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} weights for {len(self.reward_funcs)} "
                             f"reward_funcs {self.reward_funcs}")


def _unknown(kind: str, name: str, known) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {kind} {name!r}; {hint}available: {', '.join(sorted(known))}"


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
