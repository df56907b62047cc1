"""LLM judge: an OpenAI-compatible chat endpoint decides whether a final answer means the same as the reference.

For answers that string rules cannot grade (VTool-R1 trains with one on chart and table questions). Requests go to
``POST {base_url}/chat/completions`` at temperature 0, concurrently up to a limit, with retries on transient errors.
Replies are cached by request (in memory, and optionally in a JSON-lines file that survives restarts), and identical
requests of a batch (a GRPO group often repeats an answer) are sent once. A request that still fails yields ``None``:
an outage must not teach the policy that its answers were wrong.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import httpx

from .text import nfkc

DEFAULT_SYSTEM_PROMPT = (
    "You grade answers to questions. Decide whether the predicted answer means the same as the reference answer: "
    "ignore wording, formatting and units written differently, but not a different value or entity. "
    "Reply with one word: Yes or No."
)
DEFAULT_PROMPT_TEMPLATE = "Question: {question}\nReference answer: {reference}\nPredicted answer: {prediction}\nIs the predicted answer correct?"

_POSITIVE = frozenset({"yes", "correct", "right", "true"})
_NEGATIVE = frozenset({"no", "incorrect", "wrong", "false"})
_NEGATIONS = frozenset({"not", "isn't", "isnt", "never"})
_DIGITS = {"1": True, "0": False}
_WORD = re.compile(r"[a-z0-9']+")
_SURROGATE = re.compile("[\ud800-\udfff]")
# "Judgement: 1", "Verdict - Correct", "Correct: no": an explicit verdict outweighs the prose around it.
_LABELLED = re.compile(
    r"\b(?:judge?ment|verdict|decision|grade|score|result|correct(?:ness)?|final answer)\s*[:=\-]\s*([a-z0-9']+)"
)


def judge_messages(
    question: str,
    references: Sequence[str],
    prediction: str,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
) -> list[dict]:
    """The chat messages asking whether ``prediction`` answers ``question`` like one of ``references``."""
    reference = references[0] if len(references) == 1 else " OR ".join(f'"{truth}"' for truth in references)
    user = prompt_template.format(question=question, reference=reference, prediction=prediction)
    return [{"role": "system", "content": _encodable(system_prompt)}, {"role": "user", "content": _encodable(user)}]


def _encodable(text: str) -> str:
    """``text`` with each lone surrogate (which UTF-8 cannot encode, so no request could carry it) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def _polarity(word: str) -> bool | None:
    if word in _POSITIVE or _DIGITS.get(word) is True:
        return True
    if word in _NEGATIVE or _DIGITS.get(word) is False:
        return False
    return None


def parse_verdict(reply: str) -> bool | None:
    """The judge's verdict in ``reply``: ``True`` (correct), ``False`` (incorrect) or ``None`` (unclear).

    Tolerates markdown and prose: "Yes", "**Correct**", "Judgement: 1", "The answer is incorrect.", "not correct".
    A labelled verdict wins; otherwise every verdict word must agree, and a reply that says both is unclear. Digits
    count only as the whole reply or after a label, since prose is full of numbers.
    """
    text = nfkc(reply).casefold().replace("\u2019", "'")
    text = re.sub(r"[*_`#]", "", text)
    labelled = [_polarity(word) for word in _LABELLED.findall(text)]
    labelled = [verdict for verdict in labelled if verdict is not None]
    if labelled:
        return labelled[-1]
    words = _WORD.findall(text)
    if len(words) == 1 and words[0] in _DIGITS:
        return _DIGITS[words[0]]
    verdicts = set()
    for position, word in enumerate(words):
        verdict = None if word in _DIGITS else _polarity(word)
        if verdict is None:
            continue
        negated = position > 0 and words[position - 1] in _NEGATIONS
        verdicts.add(verdict != negated)
    return verdicts.pop() if len(verdicts) == 1 else None


class JudgeClient:
    """Sends chat requests to an OpenAI-compatible endpoint: concurrent, retried, cached.

    Args:
        base_url: The API root, e.g. ``http://127.0.0.1:8000/v1``; requests go to ``{base_url}/chat/completions``.
        model: The model name the server expects.
        api_key: Sent as a bearer token when given.
        max_concurrency: Requests in flight at once.
        timeout: Seconds for one request.
        max_retries: Further attempts after a connection error, a timeout, a 429 or a 5xx, with exponential backoff
            starting at ``retry_backoff`` seconds. Other errors are not retried.
        max_tokens: Room for the verdict (a judge that explains itself first needs more).
        cache_path: A JSON-lines file of earlier replies, read at start and appended to.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_concurrency: int = 16,
        timeout: float = 60.0,
        max_retries: int = 2,
        retry_backoff: float = 0.5,
        max_tokens: int = 128,
        cache_path: str | Path | None = None,
    ):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.max_tokens = max_tokens
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.cache: dict[str, str] = self._read_cache() if self.cache_path is not None else {}

    def request_body(self, messages: list[dict]) -> dict:
        return {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": self.max_tokens}

    def cache_key(self, messages: list[dict]) -> str:
        return hashlib.sha256(json.dumps(self.request_body(messages), sort_keys=True).encode()).hexdigest()

    async def complete_all(self, conversations: Sequence[list[dict]]) -> list[str | None]:
        """The reply text to each conversation, or ``None`` where the request failed."""
        keys = [self.cache_key(messages) for messages in conversations]
        missing = {key: messages for key, messages in zip(keys, conversations, strict=True) if key not in self.cache}
        if missing:
            # A client per batch: the reward may run on a different event loop from one call to the next.
            semaphore = asyncio.Semaphore(self.max_concurrency)
            limits = httpx.Limits(max_connections=self.max_concurrency)
            async with httpx.AsyncClient(timeout=self.timeout, headers=self.headers, limits=limits) as client:
                replies = await asyncio.gather(
                    *(self._complete(client, semaphore, messages) for messages in missing.values())
                )
            for key, reply in zip(missing, replies, strict=True):
                if reply is not None:
                    self._remember(key, reply)
        return [self.cache.get(key) for key in keys]

    async def _complete(
        self, client: httpx.AsyncClient, semaphore: asyncio.Semaphore, messages: list[dict]
    ) -> str | None:
        body = self.request_body(messages)
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_backoff * 2 ** (attempt - 1))
            try:
                async with semaphore:
                    response = await client.post(self.url, json=body)
            except httpx.TransportError:
                continue
            if response.status_code == 429 or response.status_code >= 500:
                continue
            if response.status_code != 200:
                return None
            return _reply_text(response)
        return None

    def _remember(self, key: str, reply: str) -> None:
        self.cache[key] = reply
        if self.cache_path is not None:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            with self.cache_path.open("a", encoding="utf-8") as file:
                file.write(json.dumps({"key": key, "reply": reply}) + "\n")

    def _read_cache(self) -> dict[str, str]:
        cache = {}
        if self.cache_path.exists():
            for line in self.cache_path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short when a run was killed mid-write
                    continue
                cache[record["key"]] = record["reply"]
        return cache


def _reply_text(response: httpx.Response) -> str | None:
    """The assistant's text in an OpenAI chat-completions response, or ``None`` if the body is not one."""
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


def question_text(prompt: str | list[dict]) -> str:
    """The text of the last user message of a prompt (image parts left out)."""
    if isinstance(prompt, str):
        return prompt
    for message in reversed(prompt):
        if message["role"] == "user":
            content = message["content"]
            if isinstance(content, str):
                return content
            return " ".join(part["text"] for part in content if part.get("type") == "text")
    return ""
