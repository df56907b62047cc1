"""The turn loop: live multi-turn rollouts with tools.

Every turn, the engine

1. generates the next assistant turn of all still-active trajectories in one batched call (the generation function
   is given: TRL's vLLM path in training, transformers' ``generate`` elsewhere), stopping right after an action,
2. asks the protocol which action each turn wrote,
3. runs the tool calls of all trajectories concurrently on one event loop (a failure, a timeout or a malformed
   action becomes an observation that says what went wrong),
4. appends each observation, text and images, as tokens that the loss never sees (``tool_mask == 0``),

until a trajectory answers, runs out of turns or runs out of its token budget. The token ids of a trajectory are
exactly the ones the model was conditioned on while sampling (never re-tokenized text), so the training forward pass
sees what generation saw, images and 3-D rotary positions included.

When several processes train together, ``sync_batch_size`` makes every rank run the same number of generation calls
with the same batch size (ranks with fewer active trajectories pad with copies of one they have), so collective
operations inside generation (ZeRO-3 parameter gathers, the vLLM server's gathers) never wait on a rank that stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..families import end_of_turn_token_ids
from ..protocols.base import Action, Protocol
from ..tools.base import Observation, Tool, ToolContext
from .generation import TurnRequest

logger = logging.getLogger(__name__)

# (requests, max_new_tokens) -> (new token ids, their sampled log-probabilities) per request
GenerateFn = Callable[[list[TurnRequest], int], tuple[list[list[int]], list[list[float]] | None]]

_SENTINEL = "\u2063AGENTIC_VLM_END_OF_TURN\u2063"


@dataclass
class Turn:
    """One assistant turn and what came back from its action."""

    text: str
    action: Action
    observation: Observation | None = None
    tool_seconds: float = 0.0


@dataclass
class Trajectory:
    """A rollout in tokens (for the trainer) and in turns (for rewards, logs and the viewer)."""

    row: dict[str, Any]
    prompt_ids: list[int]
    images: list[Image.Image]
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    completion_ids: list[int] = field(default_factory=list)
    tool_mask: list[int] = field(default_factory=list)  # 1: sampled by the model, 0: written by the environment
    logprobs: list[float] = field(default_factory=list)  # sampling log-probability; 0.0 for environment tokens
    turns: list[Turn] = field(default_factory=list)
    stop_reason: str | None = None  # "answer", "max_turns" or "length"

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    def request(self, max_new_tokens: int | None = None) -> TurnRequest:
        return TurnRequest(self.prompt_ids + self.completion_ids, self.images, self.pixel_values, self.image_grid_thw,
                           turn=len(self.turns), row=self.row, trajectory_id=self.id, max_new_tokens=max_new_tokens)

    def add_tokens(self, ids: list[int], from_model: bool, logprobs: list[float] | None = None) -> None:
        self.completion_ids += ids
        self.tool_mask += [int(from_model)] * len(ids)
        self.logprobs += logprobs if logprobs is not None else [0.0] * len(ids)

    def add_images(self, images: list[Image.Image], pixel_values, image_grid_thw) -> None:
        if not images:
            return
        self.images = self.images + images
        self.pixel_values = pixel_values if self.pixel_values is None else torch.cat([self.pixel_values, pixel_values])
        self.image_grid_thw = (
            image_grid_thw if self.image_grid_thw is None else torch.cat([self.image_grid_thw, image_grid_thw])
        )

    def completion_messages(self) -> list[dict]:
        """The trajectory as messages, the ``completions`` that reward functions receive."""
        messages = []
        for turn in self.turns:
            messages.append({"role": "assistant", "content": turn.text})
            if turn.observation is not None:
                results = turn.observation.parts or [turn.observation]
                messages += [{
                    "role": "tool",
                    "name": call.name,
                    "content": result.text,
                    "error": result.error,
                    "num_images": len(result.images),
                } for call, result in zip(turn.action.tool_calls, results, strict=True)]
        return messages

    def to_record(self, images_dir: str | Path | None = None) -> dict:
        """A JSON-serialisable record; with ``images_dir``, the images tools returned are saved there as PNG."""
        turns = []
        for number, turn in enumerate(self.turns):
            record = {"text": turn.text, "action": turn.action.kind, "tool": turn.action.name,
                      "argument": turn.action.argument}
            if turn.action.kind == "invalid":
                record["error"] = turn.action.error
            if turn.observation is not None:
                record |= {"observation": turn.observation.text, "error": turn.observation.error,
                           "tool_seconds": round(turn.tool_seconds, 4)}
                record["images"] = [f"{image.width}x{image.height}" for image in turn.observation.images]
                if images_dir is not None:
                    record["images"] = [
                        _save_image(image, Path(images_dir) / f"{self.id}-turn{number}-{k}.png")
                        for k, image in enumerate(turn.observation.images)
                    ]
            turns.append(record)
        return {
            "id": self.id,
            "stop_reason": self.stop_reason,
            "num_turns": len(self.turns),
            "num_model_tokens": sum(self.tool_mask),
            "num_tool_tokens": len(self.tool_mask) - sum(self.tool_mask),
            "turns": turns,
        }


def _save_image(image: Image.Image, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return str(path)


class RolloutEngine:
    """Runs batches of multi-turn rollouts. Reusable across steps; ``close()`` releases the tools.

    Args:
        processing_class: The model's processor (vision-language) or tokenizer (text only).
        protocol: How actions and observations are written.
        tools: The tools the model may call, by their ``name``.
        generate: One batched generation call (see ``GenerateFn``).
        max_turns: Assistant turns per trajectory, the answer turn included.
        max_completion_length: Tokens after the prompt, model and observation tokens together.
        max_context_length: Longest sequence the model (or vLLM) accepts; an observation that would exceed it ends
            the trajectory instead.
        tool_timeout: Seconds a tool call may take before it becomes a timeout observation.
        max_images_per_observation: Images kept from one tool result; the rest are dropped with a note.
        system_prompt: Replaces the protocol's system prompt; a prompt that starts with a system message keeps its own.
        sync_batch_size: Maps this rank's number of active trajectories to the batch size every rank uses this turn
            (the maximum over ranks); the identity in a single process.
        eos_token_ids: Every token id that ends an assistant turn (see ``families.end_of_turn_token_ids``); by default
            the tokenizer's eos and its family's.
        chat_template_kwargs: Keyword arguments of ``apply_chat_template`` (``enable_thinking``...), over the
            protocol's own (the tool list, for protocols whose template renders it).
    """

    def __init__(
        self,
        processing_class,
        protocol: Protocol,
        tools: list[Tool],
        generate: GenerateFn,
        *,
        max_turns: int = 4,
        max_completion_length: int = 512,
        max_context_length: int = 32768,
        tool_timeout: float = 60.0,
        max_images_per_observation: int = 4,
        system_prompt: str | None = None,
        sync_batch_size: Callable[[int], int] = lambda n: n,
        eos_token_ids: list[int] | None = None,
        chat_template_kwargs: dict | None = None,
    ):
        names = [tool.name for tool in tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names must be unique, got {names}")
        if max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {max_turns}")
        self.processing_class = processing_class
        self.tokenizer = getattr(processing_class, "tokenizer", processing_class)
        self.is_multimodal = hasattr(processing_class, "image_processor")
        self.protocol = protocol
        self.tools = tools
        self.tools_by_name = {tool.name: tool for tool in tools}
        self.generate = generate
        self.max_turns = max_turns
        self.max_completion_length = max_completion_length
        self.max_context_length = max_context_length
        self.tool_timeout = tool_timeout
        self.max_images_per_observation = max_images_per_observation
        self.system_prompt = system_prompt if system_prompt is not None else protocol.system_prompt(tools)
        self.chat_template_kwargs = {**protocol.chat_template_kwargs(tools), **(chat_template_kwargs or {})}
        self.sync_batch_size = sync_batch_size
        self.eos_token_ids = set(eos_token_ids or end_of_turn_token_ids(self.tokenizer))
        # The eos tokens as text, longest first: the chat template's own end of turn is one of them.
        self._eos_texts = sorted({self.tokenizer.decode([i]) for i in self.eos_token_ids}, key=len, reverse=True)
        self._loop = None
        self._loop_thread = None
        self.tool_wall_seconds: list[float] = []  # of the last run: wall time of each turn's concurrent tool calls

    # ----------------------------------------------------------------------------------------------- the turn loop
    def run(self, prompts: list[list[dict]], rows: list[dict] | None = None) -> list[Trajectory]:
        """Roll out one trajectory per prompt (conversational messages; images as content parts)."""
        rows = rows if rows is not None else [{} for _ in prompts]
        trajectories = self._start(prompts, rows)
        # Rows that only pad a generation call to the size all ranks agreed on; their output is dropped.
        filler = trajectories[0].request()
        self.tool_wall_seconds = []
        for turn_index in range(self.max_turns):
            active = [t for t in trajectories if not t.done]
            batch_size = self.sync_batch_size(len(active))
            if batch_size == 0:
                break
            rooms = [self.max_completion_length - len(t.completion_ids) for t in active]
            requests = [t.request(room) for t, room in zip(active, rooms, strict=True)]
            requests += [filler] * (batch_size - len(active))
            budget = max(rooms, default=1)
            new_ids, new_logprobs = self.generate(requests, budget)

            calls = []
            for index, trajectory in enumerate(active):
                room = self.max_completion_length - len(trajectory.completion_ids)
                ids = new_ids[index][:room]
                logprobs = new_logprobs[index][: len(ids)] if new_logprobs is not None else None
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                action = self.protocol.parse_action(text, self.tools)
                trajectory.add_tokens(ids, from_model=True, logprobs=logprobs)
                trajectory.turns.append(Turn(text=text, action=action))
                if action.kind == "answer":
                    trajectory.stop_reason = "answer"
                elif len(trajectory.completion_ids) >= self.max_completion_length:
                    trajectory.stop_reason = "length"
                elif turn_index == self.max_turns - 1:
                    trajectory.stop_reason = "max_turns"
                else:
                    calls.append((trajectory, action))

            if not calls:
                continue
            start = time.perf_counter()
            results = self._run_on_loop(self._call_tools(calls))
            self.tool_wall_seconds.append(time.perf_counter() - start)
            for (trajectory, _), (_, seconds) in zip(calls, results, strict=True):
                trajectory.turns[-1].tool_seconds = seconds
            self._append_observations([t for t, _ in calls], [a for _, a in calls], [o for o, _ in results])
        called = [t.id for t in trajectories if any(turn.action.kind == "tool" for turn in t.turns)]
        if called:
            self._run_on_loop(self._release(called))
        return trajectories

    # ------------------------------------------------------------------------------------------------------ tools
    async def _call_tools(self, calls: list[tuple[Trajectory, Action]]) -> list[tuple[Observation, float]]:
        return await asyncio.gather(*(self._call_tool(trajectory, action) for trajectory, action in calls))

    async def _release(self, trajectory_ids: list[str]) -> None:
        releases = [tool.release(trajectory_id) for trajectory_id in trajectory_ids for tool in self.tools]
        for outcome in await asyncio.gather(*releases, return_exceptions=True):
            if isinstance(outcome, Exception):  # what it kept is lost either way; training goes on
                logger.warning("a tool failed to release a trajectory's state: %r", outcome)

    async def _call_tool(self, trajectory: Trajectory, action: Action) -> tuple[Observation, float]:
        if not action.calls:
            return await self._call_one(trajectory, action)
        # Several calls in one turn: concurrently too, their results in the order of the calls.
        start = time.perf_counter()
        results = await asyncio.gather(*(self._call_one(trajectory, call) for call in action.calls))
        return Observation.combined([observation for observation, _ in results]), time.perf_counter() - start

    async def _call_one(self, trajectory: Trajectory, action: Action) -> tuple[Observation, float]:
        start = time.perf_counter()
        if action.kind == "invalid":
            return Observation.failure(action.error), 0.0
        tool = self.tools_by_name.get(action.name)
        if tool is None:  # the protocol parsed a name we do not have; say so rather than crash
            return Observation.failure(f"There is no tool named {action.name!r}."), 0.0
        context = ToolContext(
            trajectory_id=trajectory.id, images=list(trajectory.images), row=trajectory.row,
            turn=len(trajectory.turns) - 1,
        )
        try:
            observation = await asyncio.wait_for(tool(action.argument, context), self.tool_timeout)
            if not isinstance(observation, Observation):
                raise TypeError(f"returned {type(observation).__name__}, not an Observation")
            images = observation.images[: self.max_images_per_observation]
            if len(observation.images) > len(images):
                dropped = len(observation.images) - len(images)
                observation = Observation(text=f"{observation.text}\n({dropped} more images were not shown.)",
                                          images=images, error=observation.error)
        except asyncio.TimeoutError:
            observation = Observation.failure(f"The {tool.name} tool did not finish within {self.tool_timeout:g} s.")
        except Exception as error:  # a tool never crashes training
            observation = Observation.failure(f"The {tool.name} tool failed: {type(error).__name__}: {error}")
        return observation, time.perf_counter() - start

    def _run_on_loop(self, coroutine):
        """Run ``coroutine`` on the engine's own event loop, which lives in a daemon thread for the engine's lifetime
        so that tools may keep loop-bound resources (HTTP clients, worker pools) across turns and steps."""
        if self._loop is None:
            from trl.trainer.utils import start_event_loop_in_daemon

            self._loop_thread, self._loop, ready = start_event_loop_in_daemon(name="agentic-vlm-tools")
            ready.wait()
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        """Release the tools (worker pools, HTTP clients) and stop the event loop."""
        from trl.trainer.utils import shutdown_event_loop_in_daemon

        async def close_tools():
            await asyncio.gather(*(tool.aclose() for tool in self.tools), return_exceptions=True)

        # Also when no tool was ever called: a tool may hold resources from its construction (a worker pool).
        self._run_on_loop(close_tools())
        shutdown_event_loop_in_daemon(self._loop_thread, self._loop)
        self._loop = self._loop_thread = None

    # ------------------------------------------------------------------------------------------ tokens and images
    def _start(self, prompts: list[list[dict]], rows: list[dict]) -> list[Trajectory]:
        conversations = [
            prompt if prompt and prompt[0]["role"] == "system" else
            [{"role": "system", "content": self.system_prompt}, *prompt]
            for prompt in prompts
        ]
        images = [
            [part["image"] for message in messages if isinstance(message["content"], list)
             for part in message["content"] if part.get("type") == "image"]
            for messages in conversations
        ]
        texts = [self.processing_class.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                                           **self.chat_template_kwargs)
                 for messages in conversations]
        return [
            Trajectory(row=row, prompt_ids=ids, images=prompt_images, pixel_values=pixel_values,
                       image_grid_thw=image_grid_thw)
            for row, prompt_images, (ids, pixel_values, image_grid_thw)
            in zip(rows, images, self._encode(texts, images), strict=True)
        ]

    def _append_observations(self, trajectories: list[Trajectory], actions: list[Action],
                             observations: list[Observation]) -> None:
        shown, texts = [], []
        for trajectory, action, observation in zip(trajectories, actions, observations, strict=True):
            shown.append(observation)
            context_text = self._observation_text(self.protocol.observation_message(shown[-1], action.name))
            if trajectory.completion_ids[-1] in self.eos_token_ids:
                # The model already closed its turn itself, with any of its eos tokens (a turn without an action):
                # the template's own end of turn is not written a second time.
                closing = next((text for text in self._eos_texts if context_text.startswith(text)), "")
                context_text = context_text.removeprefix(closing)
            texts.append(context_text)
        encoded = self._encode(texts, [observation.images for observation in shown])
        for trajectory, observation, (ids, pixel_values, image_grid_thw) in zip(
            trajectories, shown, encoded, strict=True
        ):
            too_long = (
                len(trajectory.completion_ids) + len(ids) >= self.max_completion_length
                or len(trajectory.prompt_ids) + len(trajectory.completion_ids) + len(ids) >= self.max_context_length
            )
            if too_long:  # no room left for the model to read it and reply
                trajectory.stop_reason = "length"
                continue
            trajectory.turns[-1].observation = observation
            trajectory.add_tokens(ids, from_model=False)
            trajectory.add_images(observation.images, pixel_values, image_grid_thw)

    def _observation_text(self, message: dict | list[dict]) -> str:
        """The text that follows an assistant turn's content up to the next assistant turn, as the chat template
        writes it: the end of the assistant turn, the observation message(s), and the start of the next turn."""
        messages = message if isinstance(message, list) else [message]
        if self.is_multimodal:
            conversation = [
                {"role": "user", "content": [{"type": "text", "text": "."}]},
                {"role": "assistant", "content": [{"type": "text", "text": _SENTINEL}]},
                *messages,
            ]
        else:  # text-only chat templates take string contents (and a text-only model is shown no images)
            conversation = [
                {"role": "user", "content": "."},
                {"role": "assistant", "content": _SENTINEL},
                *({**m, "content": "".join(part.get("text", "") for part in m["content"])} for m in messages),
            ]
        rendered = self.processing_class.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False,
                                                             **self.chat_template_kwargs)
        return rendered[rendered.index(_SENTINEL) + len(_SENTINEL):]

    def _encode(self, texts: list[str], images: list[list[Image.Image]]):
        """For each text: its token ids with every image placeholder expanded, and its images' vision inputs.

        One processor call for the whole batch: image preprocessing dominates the engine's own CPU time.
        """
        if not any(images):
            return [(ids, None, None) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        encoded = self.processing_class(text=texts, images=[image for row in images for image in row],
                                        return_tensors="pt", padding=True, add_special_tokens=False)
        patches_per_image = encoded["image_grid_thw"].prod(-1).tolist()
        pixel_values = encoded["pixel_values"].split(patches_per_image)
        results, image_index = [], 0
        for row, row_images in enumerate(images):
            ids = encoded["input_ids"][row][encoded["attention_mask"][row].bool()].tolist()
            if not row_images:
                results.append((ids, None, None))
                continue
            rows = slice(image_index, image_index + len(row_images))
            results.append((ids, torch.cat(pixel_values[rows]), encoded["image_grid_thw"][rows]))
            image_index += len(row_images)
        return results
