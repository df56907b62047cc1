"""One batched generation call of a turn with transformers' ``generate``.

TRL's own transformers path generates until EOS, returns no log-probabilities and only keeps the image pad token from
being sampled. A turn of an agent must also stop right after an action's closing tag, must never sample a video pad
token either (a sampled pad token breaks the next forward pass: the model expects vision features for it), and we
want the log-probability of every sampled token, as the policy saw it, to check the training forward pass against.
(TRL's vLLM path already does all three through vLLM's sampling parameters and is used as is.)

To record log-probabilities before any processor changes them, the sampling processors are built here, in order,
behind the recorder, instead of by ``generate`` from the generation config (which would put custom processors last).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from PIL import Image
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from ..families import end_of_turn_token_ids, family_of


@dataclass
class SamplingSettings:
    """How tokens are drawn: exactly these settings, whatever the checkpoint's ``generation_config.json`` says (a
    released checkpoint often ships near-greedy values, such as Qwen2.5-VL-7B-Instruct's ``top_k 1, top_p 0.001``,
    under which a GRPO group is eight copies of one completion). Log-probabilities are recorded as
    ``log_softmax(logits / temperature)``, the quantity TRL's training forward pass computes, so the two can be
    compared token by token. ``top_k`` 0 or ``None`` and ``min_p`` ``None`` disable those filters."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    do_sample: bool = True

    def describe(self) -> str:
        """One line for the logs of a run: the settings sampling really uses."""
        if not self.do_sample:
            return f"greedy decoding (repetition_penalty={self.repetition_penalty:g})"
        return (f"sampling: temperature={self.temperature:g}, top_p={self.top_p:g}, top_k={self.top_k or 0}, "
                f"min_p={self.min_p or 0:g}, repetition_penalty={self.repetition_penalty:g}")


@dataclass
class TurnRequest:
    """The context of one trajectory for one turn: token ids and, for vision models, the image inputs.

    ``turn`` (from 0) and ``row`` (the dataset row) let scripted generators pick the turn they replay;
    ``trajectory_id`` names the trajectory in errors; ``max_new_tokens`` is what is left of its token budget (a
    generator that sets a length per request, like vLLM, uses it; batched ``generate`` uses the batch's largest).
    """

    input_ids: list[int]
    images: list[Image.Image]
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None
    turn: int = 0
    row: dict | None = None
    trajectory_id: str = ""
    max_new_tokens: int | None = None


class _SampledLogprobRecorder(LogitsProcessor):
    """Keeps ``log_softmax(logits / T)`` of the last step and, one step later, reads off the sampled token's value."""

    def __init__(self, temperature: float):
        self.temperature = temperature
        self.last_logprobs: torch.Tensor | None = None
        self.sampled: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.record_sampled(input_ids[:, -1])
        self.last_logprobs = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def record_sampled(self, tokens: torch.Tensor) -> None:
        if self.last_logprobs is not None:
            self.sampled.append(self.last_logprobs.gather(-1, tokens[:, None].to(self.last_logprobs.device))[:, 0])
            self.last_logprobs = None


class _ForceTokens(LogitsProcessor):
    """Teacher forcing inside ``generate``: row r writes exactly ``forced[r]`` (then EOS), whatever the model prefers."""

    def __init__(self, forced: list[list[int]], prompt_length: int, eos_token_id: int):
        self.forced = forced
        self.prompt_length = prompt_length
        self.eos_token_id = eos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        forced_scores = torch.full_like(scores, -float("inf"))
        for row, tokens in enumerate(self.forced):
            forced_scores[row, tokens[step] if step < len(tokens) else self.eos_token_id] = 0.0
        return forced_scores


class _ActionStop(StoppingCriteria):
    """Stops a row right after it writes one of ``stop_strings``, and remembers where."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop_strings: list[str], prompt_length: int, rows: int):
        self.tokenizer = tokenizer
        self.stop_strings = stop_strings
        self.prompt_length = prompt_length
        # A stop string is at most this many tokens long (one token per character at worst).
        self.window = max((len(s) for s in stop_strings), default=0) + 1
        self.stopped_at: list[int | None] = [None] * rows
        self._last_chars = {s[-1] for s in stop_strings}
        self._may_end_stop: dict[int, bool] = {}

    def _token_may_end_stop_string(self, token_id: int) -> bool:
        if token_id not in self._may_end_stop:
            piece = self.tokenizer.decode([token_id])
            self._may_end_stop[token_id] = any(char in piece for char in self._last_chars)
        return self._may_end_stop[token_id]

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if not self.stop_strings:
            return done
        generated = input_ids.shape[1] - self.prompt_length
        for row in range(input_ids.shape[0]):
            if self.stopped_at[row] is not None:
                done[row] = True
                continue
            if not self._token_may_end_stop_string(int(input_ids[row, -1])):
                continue
            window = input_ids[row, max(self.prompt_length, input_ids.shape[1] - self.window):].tolist()
            before = self.tokenizer.decode(window[:-1])
            after = self.tokenizer.decode(window)
            if any(after.count(s) > before.count(s) for s in self.stop_strings):
                self.stopped_at[row] = generated
                done[row] = True
        return done


def _sampling_processors(settings: SamplingSettings, suppress_token_ids: list[int], device) -> list[LogitsProcessor]:
    processors: list[LogitsProcessor] = []
    if settings.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
    if suppress_token_ids:
        processors.append(SuppressTokensLogitsProcessor(suppress_token_ids, device=device))
    if settings.do_sample:
        if settings.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(settings.temperature))
        if settings.top_k:
            processors.append(TopKLogitsWarper(settings.top_k))
        if settings.top_p < 1.0:
            processors.append(TopPLogitsWarper(settings.top_p))
        if settings.min_p:
            processors.append(MinPLogitsWarper(settings.min_p))
    return processors


def _neutral_generation_config(max_new_tokens: int, do_sample: bool, eos_token_ids: list[int],
                               pad_token_id: int) -> GenerationConfig:
    """A generation config under which ``generate`` changes no logits: the processors of ``_sampling_processors``
    do all the sampling (behind the log-probability recorder). Every filter is set to its neutral value explicitly,
    top_k included (``generate``'s own default is 50)."""
    # Sampling filters are named only when sampling: generate warns about them under greedy decoding.
    sampling = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=None, typical_p=1.0, epsilon_cutoff=0.0,
                    eta_cutoff=0.0) if do_sample else {}
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        **sampling,
        repetition_penalty=1.0,
        encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        num_beams=1,
        num_return_sequences=1,
        eos_token_id=eos_token_ids,
        pad_token_id=pad_token_id,
        disable_compile=True,
    )


@contextlib.contextmanager
def _checkpoint_defaults_ignored(model):
    """``generate`` fills every field of the given config that is ``None`` from ``model.generation_config`` (the
    checkpoint's ``generation_config.json``), so a field we do not name (``min_p``, a filter a later transformers adds)
    would silently come from the checkpoint. For the duration of the call the model's config is a blank one."""
    checkpoint_config = model.generation_config
    model.generation_config = GenerationConfig()
    try:
        yield
    finally:
        model.generation_config = checkpoint_config


def vision_inputs(requests) -> dict[str, torch.Tensor]:
    """``pixel_values`` and ``image_grid_thw`` of a batch, in the order the image pad tokens appear. ``requests`` are
    objects with those two attributes (``TurnRequest``, ``Trajectory``)."""
    pixel_values = [r.pixel_values for r in requests if r.pixel_values is not None]
    if not pixel_values:
        return {}
    return {
        "pixel_values": torch.cat(pixel_values),
        "image_grid_thw": torch.cat([r.image_grid_thw for r in requests if r.image_grid_thw is not None]),
    }


@torch.no_grad()
def generate_turn(
    model,
    tokenizer: PreTrainedTokenizerBase,
    requests: list[TurnRequest],
    *,
    max_new_tokens: int,
    settings: SamplingSettings,
    stop_strings: list[str],
    eos_token_ids: list[int],
    suppress_token_ids: list[int],
    token_type_key: str | None = None,
    token_types: dict[int, int] | None = None,
    forced_ids: list[list[int]] | None = None,
) -> tuple[list[list[int]], list[list[float]]]:
    """Generate the next turn of every request; returns the new token ids and their sampled log-probabilities.

    Each row ends at its first EOS (kept), right after its first stop string, or after ``max_new_tokens``. With
    ``forced_ids``, row r writes exactly ``forced_ids[r]`` through the same generation path, and the log-probabilities
    are the model's for those tokens (scripted rollouts in tests and benchmarks). A vision model gets the map of its
    placeholder tokens as ``token_type_key`` (``token_types``: placeholder id -> value; see ``ModelFamily``).
    """
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id
    width = max(len(r.input_ids) for r in requests)
    input_ids = torch.full((len(requests), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(requests), width), dtype=torch.long)
    for row, request in enumerate(requests):  # left padding: every row's next token is at the same column
        input_ids[row, width - len(request.input_ids):] = torch.tensor(request.input_ids)
        attention_mask[row, width - len(request.input_ids):] = 1
    inputs = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
    for key, value in vision_inputs(requests).items():
        inputs[key] = value.to(device)
    if token_type_key is not None:
        # The model derives its 3-D rotary positions from this map: Qwen3-VL and Qwen3.5 refuse images without it,
        # Qwen2.5-VL falls back to 1-D positions.
        token_type_ids = torch.zeros_like(inputs["input_ids"])
        for token_id, value in (token_types or {}).items():
            token_type_ids[inputs["input_ids"] == token_id] = value
        inputs[token_type_key] = token_type_ids

    recorder = _SampledLogprobRecorder(settings.temperature)
    action_stop = _ActionStop(tokenizer, stop_strings, prompt_length=width, rows=len(requests))
    processors = [recorder, *_sampling_processors(settings, suppress_token_ids, device)]
    if forced_ids is not None:
        processors.append(_ForceTokens(forced_ids, prompt_length=width, eos_token_id=eos_token_ids[0]))
    with _checkpoint_defaults_ignored(model):
        output = model.generate(
            **inputs,
            generation_config=_neutral_generation_config(max_new_tokens, settings.do_sample, eos_token_ids, pad_id),
            logits_processor=LogitsProcessorList(processors),
            stopping_criteria=StoppingCriteriaList([action_stop]),
        )
    new_tokens = output[:, width:].cpu()
    if new_tokens.shape[1]:
        recorder.record_sampled(new_tokens[:, -1])
    logprobs = torch.stack(recorder.sampled, dim=1).cpu() if recorder.sampled else torch.zeros(len(requests), 0)

    completion_ids, completion_logprobs = [], []
    eos = torch.tensor(eos_token_ids)
    for row in range(len(requests)):
        tokens = new_tokens[row]
        end = len(tokens)
        is_eos = torch.isin(tokens, eos).nonzero()
        if len(is_eos):
            end = int(is_eos[0]) + 1
        if action_stop.stopped_at[row] is not None:
            end = min(end, action_stop.stopped_at[row])
        completion_ids.append(tokens[:end].tolist())
        completion_logprobs.append(logprobs[row, :end].tolist())
    return completion_ids, completion_logprobs


class TransformersTurnGenerator:
    """The generation function of the rollout engine for a transformers model (see ``RolloutEngine``).

    ``generate(model, requests, max_new_tokens)`` takes the model on every call so that the trainer can pass the one
    it unwraps for generation (ZeRO-3 gathers its parameters for the duration of the call).
    """

    def __init__(self, processing_class, model_config, stop_strings: list[str], settings: SamplingSettings,
                 eos_token_ids: list[int] | None = None):
        self.tokenizer = getattr(processing_class, "tokenizer", processing_class)
        self.stop_strings = stop_strings
        self.settings = settings
        self.eos_token_ids = eos_token_ids or end_of_turn_token_ids(self.tokenizer, model_config)
        pads = (getattr(model_config, "image_token_id", None), getattr(model_config, "video_token_id", None))
        self.suppress_token_ids = [token_id for token_id in pads if token_id is not None]
        self.token_type_key, self.token_types = None, {}
        if pads[0] is not None:  # a vision model, of a registered family
            family = family_of(model_config)
            self.token_type_key = family.token_type_key
            self.token_types = {self.tokenizer.convert_tokens_to_ids(token): value
                                for token, value in family.token_types.items()}

    def generate(self, model, requests: list[TurnRequest], max_new_tokens: int,
                 forced_ids: list[list[int]] | None = None):
        return generate_turn(
            model, self.tokenizer, requests,
            max_new_tokens=max_new_tokens, settings=self.settings, stop_strings=self.stop_strings,
            eos_token_ids=self.eos_token_ids, suppress_token_ids=self.suppress_token_ids,
            token_type_key=self.token_type_key, token_types=self.token_types, forced_ids=forced_ids,
        )


class ScriptedTurnGenerator:
    """A generation function that writes given text instead of sampling: ``script(request)`` returns the text of the
    turn. No model is run; log-probabilities are ``None``. The rollout engine still runs the tools live, so replaying a
    reference solution yields the exact token ids, observation masks and images of a real trajectory (used by the
    supervised warm start and by the benchmarks).

    A scripted turn that does not end with a stop string is a final turn and gets the end-of-turn token.
    """

    def __init__(self, processing_class, stop_strings: list[str], script):
        self.tokenizer = getattr(processing_class, "tokenizer", processing_class)
        self.stop_strings = stop_strings
        self.script = script

    def turn_ids(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not any(text.endswith(stop) for stop in self.stop_strings):
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def __call__(self, requests: list[TurnRequest], max_new_tokens: int):
        return [self.turn_ids(self.script(request))[:max_new_tokens] for request in requests], None
