"""The turn loop: live multi-turn rollouts with tools.

A trajectory's turn is: generate the next assistant turn, stopping right after an action; ask the protocol which
action it wrote; run the tool (a failure, a timeout, a malformed action or a result that cannot be shown becomes an
observation that says what went wrong); append the observation, text and images, as tokens that the loss never sees
(``tool_mask == 0``): the text as plain text (a special token's string in it is ordinary characters, never
structure), cut to ``max_observation_tokens``; each image fitted to what the processor accepts. A trajectory ends
when it answers, runs out of turns or runs out of its token budget. Its token ids are exactly the ones the model was
conditioned on while sampling (never re-tokenized text), so the training forward pass sees what generation saw,
images and 3-D rotary positions included. Before every generation call, each image's tokens in the ids are checked
against its features.

Two schedules run these turns (``run`` picks one):

- **Continuous** (``_run_continuous``), when the generation function can take one request at a time (vLLM, which
  batches whatever requests it holds at each step): every trajectory runs its own loop, so a trajectory whose turn
  finished runs its tool, and submits its next turn, while others are still generating. No turn waits for the
  slowest generation or the slowest tool of the batch. Needs no collective operation inside generation: vLLM
  colocated (one engine per rank) or on a server.
- **Turn-synchronous** (``_run_turn_synchronous``): every turn, one batched generation call for all still-active
  trajectories, then all their tool calls concurrently. Needed by transformers' ``generate`` and, under several
  processes, by ZeRO-3: ``sync_batch_size`` makes every rank run the same number of generation calls with the same
  batch size (ranks with fewer active trajectories pad with copies of one they have), so the parameter gathers inside
  generation never wait on a rank that stopped.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..families import end_of_turn_token_ids
from ..frames import ImageView, image_token_mismatch
from ..protocols.base import Action, Protocol
from ..tools.base import Observation, Tool, ToolContext
from .generation import TurnRequest

logger = logging.getLogger(__name__)

# (requests, max_new_tokens) -> (new token ids, their sampled log-probabilities) per request
GenerateFn = Callable[[list[TurnRequest], int], tuple[list[list[int]], list[list[float]] | None]]
# request -> awaitable (new token ids, their sampled log-probabilities): one request, its budget in max_new_tokens
AsyncGenerateFn = Callable[[TurnRequest], Awaitable[tuple[list[int], list[float] | None]]]

_SENTINEL = "\u2063AGENTIC_VLM_END_OF_TURN\u2063"
_OBSERVATION_TEXT = "\u2063AGENTIC_VLM_OBSERVATION_TEXT_{}\u2063"  # one per result of a turn
# Characters of tool text tokenized at most, per token kept: a 1 MB page is not tokenized whole to keep 2k tokens.
_CHARS_PER_TOKEN_BOUND = 8


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
    pixel_values: torch.Tensor | None  # only while a generator that reads it (transformers) still needs it
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

    def finish(self, reason: str) -> None:
        """End the trajectory. Its pixel values are read by generation only, which is over for it: they go."""
        self.stop_reason = reason
        self.pixel_values = None

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
        self.pixel_values = _cat(self.pixel_values, pixel_values)
        self.image_grid_thw = _cat(self.image_grid_thw, image_grid_thw)

    def image_source(self, index: int) -> str:
        """Where image ``index`` (from 0, over all the trajectory's images) came from, in words for errors."""
        returned = [len(turn.observation.images) if turn.observation is not None else 0 for turn in self.turns]
        in_prompt = len(self.images) - sum(returned)
        if index < in_prompt:
            return f"image {index + 1} of the prompt"
        index -= in_prompt
        for turn_number, count in enumerate(returned):
            if index < count:
                return f"image {index + 1} returned after turn {turn_number}"
            index -= count
        return f"image {index + 1} past the trajectory's {len(self.images)} images"

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
        generate_one: One request's generation, awaited (see ``AsyncGenerateFn``); given, the trajectories run
            continuously instead of turn by turn.
        max_turns: Assistant turns per trajectory, the answer turn included.
        max_completion_length: Tokens after the prompt, model and observation tokens together.
        max_context_length: Longest sequence the model (or vLLM) accepts; an observation that would exceed it ends
            the trajectory instead.
        tool_timeout: Seconds a tool call may take before it becomes a timeout observation.
        max_images_per_observation: Images kept from one tool result; the rest are dropped with a note.
        max_observation_tokens: Tokens of one tool result's text shown to the model; the rest is cut with a note.
        system_prompt: Replaces the protocol's system prompt; a prompt that starts with a system message keeps its own.
        sync_batch_size: Maps this rank's number of active trajectories to the batch size every rank uses this turn
            (the maximum over ranks); the identity in a single process.
        eos_token_ids: Every token id that ends an assistant turn (see ``families.end_of_turn_token_ids``); by default
            the tokenizer's eos and its family's.
        chat_template_kwargs: Keyword arguments of ``apply_chat_template`` (``enable_thinking``...), over the
            protocol's own (the tool list, for protocols whose template renders it).
        image_view: How the model is shown images and writes boxes; passed to the tools. By default the processor's
            resize with boxes in pixels of the resized image (Qwen2.5-VL's frame).
        keep_pixel_values: Whether the generation function reads ``TurnRequest.pixel_values`` (transformers does;
            vLLM takes the images). Without it no trajectory holds them; with it only while it is being generated.
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
        max_observation_tokens: int = 2048,
        system_prompt: str | None = None,
        sync_batch_size: Callable[[int], int] = lambda n: n,
        eos_token_ids: list[int] | None = None,
        chat_template_kwargs: dict | None = None,
        image_view: ImageView | None = None,
        keep_pixel_values: bool = True,
        generate_one: AsyncGenerateFn | None = None,
    ):
        names = [tool.name for tool in tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names must be unique, got {names}")
        if max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {max_turns}")
        if max_observation_tokens < 1:
            raise ValueError(f"max_observation_tokens must be at least 1, got {max_observation_tokens}")
        self.processing_class = processing_class
        self.tokenizer = getattr(processing_class, "tokenizer", processing_class)
        self.is_multimodal = hasattr(processing_class, "image_processor")
        self.protocol = protocol
        self.tools = tools
        self.tools_by_name = {tool.name: tool for tool in tools}
        self.generate = generate
        self.generate_one = generate_one
        self.max_turns = max_turns
        self.max_completion_length = max_completion_length
        self.max_context_length = max_context_length
        self.tool_timeout = tool_timeout
        self.max_images_per_observation = max_images_per_observation
        self.max_observation_tokens = max_observation_tokens
        self.image_view = image_view or (ImageView.of(processing_class) if self.is_multimodal else None)
        self.keep_pixel_values = keep_pixel_values
        if self.is_multimodal:
            self.image_token_id = self.tokenizer.convert_tokens_to_ids(processing_class.image_token)
            self.image_merge_length = processing_class.image_processor.merge_size ** 2
        self.system_prompt = system_prompt if system_prompt is not None else protocol.system_prompt(tools)
        self.chat_template_kwargs = {**protocol.chat_template_kwargs(tools), **(chat_template_kwargs or {})}
        self.sync_batch_size = sync_batch_size
        self.eos_token_ids = set(eos_token_ids or end_of_turn_token_ids(self.tokenizer))
        added = sorted(self.tokenizer.get_added_vocab(), key=len, reverse=True)
        self._added_token_pattern = re.compile("(" + "|".join(map(re.escape, added)) + ")" if added else "(?!)")
        # The eos tokens as text, longest first: the chat template's own end of turn is one of them.
        self._eos_texts = sorted({self.tokenizer.decode([i]) for i in self.eos_token_ids}, key=len, reverse=True)
        self._loop = None
        self._loop_thread = None
        # Of the last run: wall time of each turn's concurrent tool calls (turn-synchronous), of each call (continuous)
        self.tool_wall_seconds: list[float] = []

    # ----------------------------------------------------------------------------------------------- the turn loop
    def run(self, prompts: list[list[dict]], rows: list[dict] | None = None) -> list[Trajectory]:
        """Roll out one trajectory per prompt (conversational messages; images as content parts)."""
        rows = rows if rows is not None else [{} for _ in prompts]
        trajectories = self._start(prompts, rows)
        self.tool_wall_seconds = []
        if self.generate_one is not None:
            self._run_on_loop(self._run_continuous(trajectories))
        else:
            self._run_turn_synchronous(trajectories)
        called = [t.id for t in trajectories if any(turn.action.kind == "tool" for turn in t.turns)]
        if called:
            self._run_on_loop(self._release(called))
        return trajectories

    async def _run_continuous(self, trajectories: list[Trajectory]) -> None:
        tasks = [asyncio.ensure_future(self._roll_out(trajectory)) for trajectory in trajectories]
        try:
            await asyncio.gather(*tasks)
        finally:  # when one failed (a prompt mismatch), the others stop too
            for task in tasks:
                task.cancel()

    async def _roll_out(self, trajectory: Trajectory) -> None:
        """One trajectory's own loop: generate, run the tool, append the observation, until it stops."""
        for turn_index in range(self.max_turns):
            self._check_image_tokens(trajectory)
            room = self.max_completion_length - len(trajectory.completion_ids)
            ids, logprobs = await self.generate_one(trajectory.request(room))
            action = self._add_turn(trajectory, ids, logprobs, turn_index)
            if trajectory.done:
                return
            observation, seconds = await self._call_tool(trajectory, action)
            self.tool_wall_seconds.append(seconds)
            trajectory.turns[-1].tool_seconds = seconds
            self._append_observations([trajectory], [action], [observation])
            if trajectory.done:
                return

    def _run_turn_synchronous(self, trajectories: list[Trajectory]) -> None:
        # Rows that only pad a generation call to the size all ranks agreed on; their output is dropped.
        filler = trajectories[0].request()
        for turn_index in range(self.max_turns):
            active = [t for t in trajectories if not t.done]
            batch_size = self.sync_batch_size(len(active))
            if batch_size == 0:
                break
            for trajectory in active:
                self._check_image_tokens(trajectory)
            rooms = [self.max_completion_length - len(t.completion_ids) for t in active]
            requests = [t.request(room) for t, room in zip(active, rooms, strict=True)]
            requests += [filler] * (batch_size - len(active))
            budget = max(rooms, default=1)
            new_ids, new_logprobs = self.generate(requests, budget)

            calls = []
            for index, trajectory in enumerate(active):
                logprobs = new_logprobs[index] if new_logprobs is not None else None
                action = self._add_turn(trajectory, new_ids[index], logprobs, turn_index)
                if not trajectory.done:
                    calls.append((trajectory, action))

            if not calls:
                continue
            start = time.perf_counter()
            results = self._run_on_loop(self._call_tools(calls))
            self.tool_wall_seconds.append(time.perf_counter() - start)
            for (trajectory, _), (_, seconds) in zip(calls, results, strict=True):
                trajectory.turns[-1].tool_seconds = seconds
            self._append_observations([t for t, _ in calls], [a for _, a in calls], [o for o, _ in results])

    def _add_turn(self, trajectory: Trajectory, ids: list[int], logprobs: list[float] | None,
                  turn_index: int) -> Action:
        """Append a generated turn; end the trajectory if it answered or has no budget or turn left."""
        ids = ids[: self.max_completion_length - len(trajectory.completion_ids)]
        logprobs = logprobs[: len(ids)] if logprobs is not None else None
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        action = self.protocol.parse_action(text, self.tools)
        trajectory.add_tokens(ids, from_model=True, logprobs=logprobs)
        trajectory.turns.append(Turn(text=text, action=action))
        if action.kind == "answer":
            trajectory.finish("answer")
        elif len(trajectory.completion_ids) >= self.max_completion_length:
            trajectory.finish("length")
        elif turn_index == self.max_turns - 1:
            trajectory.finish("max_turns")
        return action

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
            turn=len(trajectory.turns) - 1, image_view=self.image_view,
        )
        try:
            observation = await asyncio.wait_for(tool(action.argument, context), self.tool_timeout)
            # Off the loop: fitting a 20000x20000 image takes a while, and other calls are still running.
            observation = await asyncio.to_thread(self._showable, observation)
        except asyncio.TimeoutError:
            observation = Observation.failure(f"The {tool.name} tool did not finish within {self.tool_timeout:g} s.")
        except Exception as error:  # a tool never crashes training
            observation = Observation.failure(f"The {tool.name} tool failed: {type(error).__name__}: {error}")
        return observation, time.perf_counter() - start

    def _showable(self, observation) -> Observation:
        """``observation`` as the model can be shown it: at most ``max_images_per_observation`` images, each fitted
        to what the processor accepts. Raises ``TypeError``/``ValueError`` saying what is wrong with it."""
        if not isinstance(observation, Observation):
            raise TypeError(f"returned {type(observation).__name__}, not an Observation")
        if not isinstance(observation.text, str):
            raise TypeError(f"returned text of type {type(observation.text).__name__}, not a string")
        if not isinstance(observation.images, list | tuple):
            raise TypeError(f"returned images as {type(observation.images).__name__}, not a list")
        text, images = observation.text, list(observation.images[: self.max_images_per_observation])
        if len(observation.images) > len(images):
            text += f"\n({len(observation.images) - len(images)} more images were not shown.)"
        if images and self.image_view is None:
            text += f"\n({len(images)} images were not shown: this model reads text only.)"
            images = []
        fitted = []
        for number, image in enumerate(images, start=1):
            try:
                fitted.append(self.image_view.fit(image))
            except ValueError as error:
                raise ValueError(f"its image {number} cannot be shown: {error}") from None
        error = observation.error if observation.error is None else str(observation.error)
        return Observation(text=text, images=fitted, error=error)

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
        for row_index, row_images in enumerate(images):
            if row_images and self.image_view is None:
                raise ValueError(f"prompt {row_index} of the batch has images, and this model reads text only")
            for number, image in enumerate(row_images, start=1):
                try:
                    row_images[number - 1] = self.image_view.fit(image)
                except ValueError as error:
                    raise ValueError(f"prompt {row_index} of the batch: image {number}: {error}") from None
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
        """Append each observation: the chat template's pieces around its texts (turn markers, the protocol's
        wrapping, image placeholders) as structure, and each tool text in between as plain text."""
        shown, text_ids, pieces_per_observation, template_texts, template_images = [], [], [], [], []
        for trajectory, action, observation in zip(trajectories, actions, observations, strict=True):
            results = observation.parts or [observation]
            plain = [self._plain_text_ids(result.text) for result in results]
            text_ids.append([ids for ids, _ in plain])
            capped = [Observation(text=text, images=r.images, error=r.error) for (_, text), r in zip(plain, results,
                                                                                                    strict=True)]
            shown.append(Observation.combined(capped) if observation.parts else capped[0])
            # The template is rendered with a marker in place of each text, then cut at the markers.
            markers = [Observation(text=_OBSERVATION_TEXT.format(k), images=r.images, error=r.error)
                       for k, r in enumerate(results)]
            placeholder = Observation.combined(markers) if observation.parts else markers[0]
            context_text = self._observation_text(self.protocol.observation_message(placeholder, action.name))
            if trajectory.completion_ids[-1] in self.eos_token_ids:
                # The model already closed its turn itself, with any of its eos tokens (a turn without an action):
                # the template's own end of turn is not written a second time.
                closing = next((eos for eos in self._eos_texts if context_text.startswith(eos)), "")
                context_text = context_text.removeprefix(closing)
            pieces = []
            for k in range(len(results)):
                piece, marker, context_text = context_text.partition(_OBSERVATION_TEXT.format(k))
                if not marker or _OBSERVATION_TEXT.format(k) in context_text:
                    raise RuntimeError(f"the {self.protocol.name} protocol's observation message must carry each "
                                       "result's text exactly once, in order")
                pieces.append(piece)
            pieces.append(context_text)
            # The processor takes the images in order; each piece holds the placeholders of some of them.
            images = list(shown[-1].images)
            for piece in pieces:
                count = piece.count(self.processing_class.image_token) if images else 0
                template_texts.append(piece)
                template_images.append(images[:count])
                images = images[count:]
            pieces_per_observation.append(len(pieces))
        encoded = iter(self._encode(template_texts, template_images))
        for trajectory, observation, texts, count in zip(trajectories, shown, text_ids, pieces_per_observation,
                                                         strict=True):
            pieces = [next(encoded) for _ in range(count)]
            ids = pieces[0][0]
            for text, piece in zip(texts, pieces[1:], strict=True):
                ids = ids + text + piece[0]
            too_long = (
                len(trajectory.completion_ids) + len(ids) >= self.max_completion_length
                or len(trajectory.prompt_ids) + len(trajectory.completion_ids) + len(ids) >= self.max_context_length
            )
            if too_long:  # no room left for the model to read it and reply
                trajectory.finish("length")
                continue
            trajectory.turns[-1].observation = observation
            trajectory.add_tokens(ids, from_model=False)
            trajectory.add_images(observation.images, _cat(*(piece[1] for piece in pieces)),
                                  _cat(*(piece[2] for piece in pieces)))

    def _plain_text_ids(self, text: str) -> tuple[list[int], str]:
        """``text`` tokenized as plain text, cut to ``max_observation_tokens`` with a note; and the text the model is
        shown."""
        limit = self.max_observation_tokens
        clipped = text[: limit * _CHARS_PER_TOKEN_BOUND]
        ids = self._tokenize_plain(clipped)
        if len(ids) <= limit and len(clipped) == len(text):
            return ids, text
        ids = ids[:limit]
        note = f"\n[Cut: the tool returned {len(text)} characters; the first {len(ids)} tokens are shown.]"
        return ids + self._tokenize_plain(note), self.tokenizer.decode(ids) + note

    def _tokenize_plain(self, text: str) -> list[int]:
        """Token ids of ``text`` in which the string of an added token (``<|im_end|>``, ``<|image_pad|>``, also the
        non-special ones such as ``<tool_call>``) is ordinary characters: it is split after its first character and
        the halves are tokenized apart, so neither can become that token (nor the rest another one)."""
        ids = []
        for index, piece in enumerate(self._added_token_pattern.split(text)):
            if index % 2:  # an added token's string
                ids += self.tokenizer(piece[:1], add_special_tokens=False)["input_ids"] + self._tokenize_plain(piece[1:])
            elif piece:
                ids += self.tokenizer(piece, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        return ids

    def _check_image_tokens(self, trajectory: Trajectory) -> None:
        """Each image's tokens in the ids match its features, or a clear error (never a silent misalignment)."""
        if not self.is_multimodal:
            return
        mismatch = image_token_mismatch(trajectory.prompt_ids + trajectory.completion_ids, trajectory.image_grid_thw,
                                        self.image_token_id, self.image_merge_length)
        if mismatch is not None:
            index, tokens, features = mismatch
            raise ValueError(
                f"trajectory {trajectory.id}, before turn {len(trajectory.turns)}: {trajectory.image_source(index)} "
                f"has {tokens} image tokens in the ids but {features} image features"
            )

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
            row_pixels = torch.cat(pixel_values[rows]) if self.keep_pixel_values else None
            results.append((ids, row_pixels, encoded["image_grid_thw"][rows]))
            image_index += len(row_images)
        return results


def _cat(*tensors: torch.Tensor | None) -> torch.Tensor | None:
    parts = [tensor for tensor in tensors if tensor is not None]
    return torch.cat(parts) if parts else None
