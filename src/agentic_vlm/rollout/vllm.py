"""One batched turn of generation with vLLM: colocated in the training process, or on a vLLM server.

What a multi-turn vision rollout needs from vLLM, and TRL's own vLLM path does not give:

- **Image placeholders, expanded once.** The engine's token ids carry every image expanded (one ``<|image_pad|>`` per
  vision token), which the trainer's forward pass needs. vLLM expands placeholders itself and would expand them a
  second time, silently (TRL issues #6294, #6401). So vLLM gets the same ids with ONE pad per image, and the images;
  the ids it reports after its own expansion must equal the engine's, or the rollout stops with an error that names
  the trajectory and the turn (the usual cause: the two sides' image processors disagree on ``min_pixels``).
- **Pad tokens banned.** A sampled image or video pad breaks the next forward pass; their logits are set to -inf
  (vLLM's ``bad_words`` of one token). The log-probabilities vLLM returns are then those of the distribution it
  really sampled from (renormalised without the two pads), which differs from the policy's by ``-log(1 - p_pads)``:
  nothing for a trained model, about ``2 / vocabulary size`` for a random one.
- **Each trajectory's own budget** as ``max_tokens`` (what is left of its ``max_completion_length``).
- **Stop right after an action's closing tag**, the tag kept in the output.

Both generators take a batch of requests (``__call__``, the turn-synchronous schedule) or one request at a time
(``generate_one``, the continuous schedule: the colocated engine is stepped while requests come and go; the server
gets one HTTP request per turn). ``busy_seconds`` adds up the time the engine spent generating.

Log-probabilities are vLLM's ``processed_logprobs`` (after temperature, penalties, top-k/top-p), the quantity TRL's
importance-sampling correction compares with the policy's; the engine must be started with that mode.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image

from ..families import ModelFamily
from .generation import SamplingSettings, TurnRequest


@dataclass(frozen=True)
class PlaceholderTokens:
    """The ids of one family's vision tokens in one tokenizer."""

    image_pad: int
    video_pad: int | None
    vision_start: int
    vision_end: int

    @classmethod
    def of(cls, family: ModelFamily, tokenizer) -> PlaceholderTokens:
        ids = tokenizer.convert_tokens_to_ids
        return cls(
            image_pad=ids(family.image_token),
            video_pad=ids(family.video_token) if family.video_token else None,
            vision_start=ids(family.vision_start_token),
            vision_end=ids(family.vision_end_token),
        )


def collapse_image_placeholders(ids: list[int], tokens: PlaceholderTokens) -> list[int]:
    """``ids`` with each image's run of pad tokens (between vision start and end) reduced to one pad, as vLLM wants
    its prompts: it expands each pad to the image's tokens itself."""
    collapsed, inside_image = [], False
    for token in ids:
        if token == tokens.vision_start:
            inside_image = True
        elif token == tokens.vision_end:
            inside_image = False
        elif inside_image and token == tokens.image_pad and collapsed[-1] == tokens.image_pad:
            continue
        collapsed.append(token)
    return collapsed


class PromptMismatchError(RuntimeError):
    """vLLM conditioned on other token ids than the ones the trainer trains on."""


def check_expanded_prompt(request: TurnRequest, vllm_ids: list[int], tokens: PlaceholderTokens) -> None:
    """Raise unless vLLM's prompt after its own placeholder expansion is the engine's, id for id."""
    expected = request.input_ids
    if list(vllm_ids) == expected:
        return
    first = next((i for i, (a, b) in enumerate(zip(expected, vllm_ids, strict=False)) if a != b),
                 min(len(expected), len(vllm_ids)))
    raise PromptMismatchError(
        f"trajectory {request.trajectory_id or '?'}, turn {request.turn}: vLLM conditioned on {len(vllm_ids)} ids "
        f"({list(vllm_ids).count(tokens.image_pad)} image tokens), the trainer would train on {len(expected)} "
        f"({expected.count(tokens.image_pad)} image tokens); first difference at position {first}. vLLM and the "
        "trainer's processor disagree on the number of tokens per image: give vLLM the processor's image settings "
        "(min_pixels, max_pixels, patch and merge sizes)."
    )


def image_processor_settings(processing_class) -> dict:
    """The processor settings that decide how many tokens an image gets, as vLLM's ``mm_processor_kwargs``."""
    image_processor = getattr(processing_class, "image_processor", None)
    if image_processor is None:
        return {}
    size = image_processor.size
    settings = {
        "min_pixels": size.get("shortest_edge") if hasattr(size, "get") else getattr(size, "shortest_edge", None),
        "max_pixels": size.get("longest_edge") if hasattr(size, "get") else getattr(size, "longest_edge", None),
        "patch_size": getattr(image_processor, "patch_size", None),
        "merge_size": getattr(image_processor, "merge_size", None),
    }
    return {key: value for key, value in settings.items() if value is not None}


class _VLLMTurnGenerator:
    """What the colocated and the server generators share: the prompt and the sampling parameters of a request."""

    def __init__(self, processing_class, family: ModelFamily, settings: SamplingSettings, stop_strings: list[str],
                 eos_token_ids: list[int]):
        self.tokenizer = getattr(processing_class, "tokenizer", processing_class)
        self.eos_token_ids = eos_token_ids
        self.family = family
        self.tokens = PlaceholderTokens.of(family, self.tokenizer)
        self.settings = settings
        self.stop_strings = stop_strings
        self.banned_tokens = [token for token in (family.image_token, family.video_token) if token]
        self.busy_seconds = 0.0  # time spent generating, for the engine's idle fraction

    def sampling_params(self, max_tokens: int) -> dict:
        settings = self.settings
        return {
            "n": 1,
            "temperature": settings.temperature if settings.do_sample else 0.0,
            "top_p": settings.top_p,
            "top_k": settings.top_k or 0,
            "min_p": settings.min_p or 0.0,
            "repetition_penalty": settings.repetition_penalty,
            "max_tokens": max_tokens,
            "logprobs": 0,
            "stop": self.stop_strings,
            "include_stop_str_in_output": True,
            "stop_token_ids": self.eos_token_ids,  # every token that ends a turn (kept in the output, like eos)
            "bad_words": self.banned_tokens,
            # special tokens stay in the ids; the text is decoded by the engine
            "skip_special_tokens": False,
        }

    def prompt_ids(self, request: TurnRequest) -> list[int]:
        return collapse_image_placeholders(request.input_ids, self.tokens)


def _max_tokens(request: TurnRequest, max_new_tokens: int) -> int:
    return max(1, min(max_new_tokens, request.max_new_tokens or max_new_tokens))


class ColocateTurnGenerator(_VLLMTurnGenerator):
    """The rollout engine's generation function on a vLLM ``LLM`` in this process (see ``RolloutEngine``).

    The ``LLM`` must be started with ``logprobs_mode="processed_logprobs"`` and the processor's image settings as
    ``mm_processor_kwargs`` (``AgenticVLLMGeneration`` does both).
    """

    def __init__(self, llm_getter: Callable, processing_class, family: ModelFamily, settings: SamplingSettings,
                 stop_strings: list[str], eos_token_ids: list[int]):
        super().__init__(processing_class, family, settings, stop_strings, eos_token_ids)
        self.llm_getter = llm_getter  # the trainer's engine may be rebuilt; ask for it on each call
        self._submitted: list[tuple[TurnRequest, asyncio.Future]] = []
        self._stepper: asyncio.Task | None = None
        self._finished: set[str] = set()  # ids of finished requests (vLLM's ids only grow)
        self._step_thread = None

    def _prompt(self, request: TurnRequest) -> dict:
        prompt = {"prompt_token_ids": self.prompt_ids(request)}
        if request.images:
            prompt["multi_modal_data"] = {"image": list(request.images)}
        return prompt

    def _params(self, request: TurnRequest, max_new_tokens: int):
        from vllm import SamplingParams

        return SamplingParams(**self.sampling_params(_max_tokens(request, max_new_tokens)))

    def _result(self, request: TurnRequest, output) -> tuple[list[int], list[float]]:
        check_expanded_prompt(request, output.prompt_token_ids, self.tokens)
        sample = output.outputs[0]
        logprobs = [step[token].logprob for token, step in zip(sample.token_ids, sample.logprobs, strict=True)]
        return list(sample.token_ids), logprobs

    def __call__(self, requests: list[TurnRequest], max_new_tokens: int):
        start = time.perf_counter()
        outputs = self.llm_getter().generate([self._prompt(r) for r in requests],
                                             sampling_params=[self._params(r, max_new_tokens) for r in requests],
                                             use_tqdm=False)
        self.busy_seconds += time.perf_counter() - start
        results = [self._result(request, output) for request, output in zip(requests, outputs, strict=True)]
        return [ids for ids, _ in results], [logprobs for _, logprobs in results]

    async def generate_one(self, request: TurnRequest) -> tuple[list[int], list[float]]:
        """Submit one request (its ``max_new_tokens`` is its budget) and await its turn. The engine is stepped, off
        the event loop, while any request is unfinished; each step batches every request it holds."""
        future = asyncio.get_running_loop().create_future()
        self._submitted.append((request, future))
        if self._stepper is None or self._stepper.done():
            self._stepper = asyncio.ensure_future(self._step_engine())
        return self._result(request, await future)

    async def _step_engine(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        if self._step_thread is None:
            self._step_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vllm-step")
        llm = self.llm_getter()
        loop = asyncio.get_running_loop()
        waiting: dict[str, asyncio.Future] = {}
        try:
            while self._submitted or waiting:
                # Requests join between steps, on the event loop's thread: the engine is not thread-safe.
                submitted, self._submitted = self._submitted, []
                for request, future in submitted:
                    [request_id] = llm.enqueue([self._prompt(request)], self._params(request, request.max_new_tokens),
                                               use_tqdm=False)
                    # enqueue returns the engine's id, "<id>-<8 random characters>"; outputs carry "<id>".
                    waiting[request_id.rsplit("-", 1)[0]] = future
                start = time.perf_counter()
                outputs = await loop.run_in_executor(self._step_thread, llm.llm_engine.step)
                self.busy_seconds += time.perf_counter() - start
                for output in outputs:
                    if not output.finished:
                        continue
                    if output.request_id not in waiting:
                        if output.request_id in self._finished:
                            continue  # reported finished once more (seen once under load, not reproduced)
                        raise RuntimeError(f"vLLM finished request {output.request_id}, which no trajectory waits for")
                    self._finished.add(output.request_id)
                    future = waiting.pop(output.request_id)
                    if not future.done():  # cancelled when another trajectory failed
                        future.set_result(output)
        except BaseException as error:
            llm.llm_engine.abort_request(list(waiting))
            for future in waiting.values():
                if not future.done():
                    future.set_exception(RuntimeError(f"the vLLM engine failed: {error!r}"))
            raise


class ServerTurnGenerator(_VLLMTurnGenerator):
    """The rollout engine's generation function on a vLLM server (``python -m vllm.entrypoints.openai.api_server``
    with ``--enable-scale-out --logprobs-mode processed_logprobs`` and the processor's image settings as
    ``--mm-processor-kwargs``; see ``local_scripts/vllm_server.sh``).

    Each request goes on its own to the server's token-in/token-out endpoint (``/inference/v1/generate``): the ids
    with one pad per image, the images as PNG data URLs, and ``return_token_ids`` so that the server reports the ids it
    conditioned on after expanding the placeholders. Requests of a batch are sent concurrently. Every rank talks to the
    server on its own: no collective operation runs inside generation.
    """

    def __init__(self, base_url: str, processing_class, family: ModelFamily, settings: SamplingSettings,
                 stop_strings: list[str], eos_token_ids: list[int], timeout: float = 600.0,
                 max_concurrent_requests: int = 64):
        import httpx

        super().__init__(processing_class, family, settings, stop_strings, eos_token_ids)
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(timeout=timeout)
        self.max_concurrent_requests = max_concurrent_requests
        self.model = self.client.get(f"{self.base_url}/v1/models").raise_for_status().json()["data"][0]["id"]

    def _body(self, request: TurnRequest, max_new_tokens: int) -> dict:
        body = {
            "model": self.model,
            "token_ids": self.prompt_ids(request),
            "sampling_params": self.sampling_params(_max_tokens(request, max_new_tokens)),
            "return_token_ids": True,
        }
        if request.images:
            body["content_parts"] = [{"type": "image_url", "url": _data_url(image)} for image in request.images]
        return body

    def _result(self, request: TurnRequest, response) -> tuple[list[int], list[float]]:
        if response.status_code != 200:
            raise RuntimeError(f"the vLLM server at {self.base_url} answered {response.status_code}: "
                               f"{response.text[:500]}")
        response = response.json()
        check_expanded_prompt(request, response["prompt_token_ids"], self.tokens)
        choice = response["choices"][0]
        return choice["token_ids"], [entry["logprob"] for entry in choice["logprobs"]["content"]]

    def __call__(self, requests: list[TurnRequest], max_new_tokens: int):
        def send(request: TurnRequest):
            response = self.client.post(f"{self.base_url}/inference/v1/generate", json=self._body(request,
                                                                                                 max_new_tokens))
            return self._result(request, response)

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrent_requests, len(requests)))) as pool:
            results = list(pool.map(send, requests))
        self.busy_seconds += time.perf_counter() - start
        return [ids for ids, _ in results], [logprobs for _, logprobs in results]

    async def generate_one(self, request: TurnRequest) -> tuple[list[int], list[float]]:
        """One request (its ``max_new_tokens`` is its budget), sent as soon as it is made."""
        import httpx

        async with httpx.AsyncClient(timeout=self.client.timeout) as client:
            response = await client.post(f"{self.base_url}/inference/v1/generate",
                                         json=self._body(request, request.max_new_tokens))
        return self._result(request, response)

    def close(self) -> None:
        self.client.close()


def _data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # lossless: the server decodes the very pixels the trainer's processor saw
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
