"""The HTTP client every web search backend shares: retries with backoff, a concurrency limit and a rate limit.

A training run sends many searches at once (every trajectory of a batch may search in the same turn), to paid
APIs that answer 429 when pushed and 5xx when they are unwell. This client retries what is worth retrying (timeouts,
refused connections, 429, 5xx, garbled JSON) with exponential backoff or after the server's ``Retry-After``, keeps
at most ``max_concurrency`` requests in flight and spaces them to ``requests_per_second``; a request that still
fails raises :class:`SearchError` saying what went wrong at each attempt (the backend adds its name).

The limits hold per client, so per process: with N training processes, give each 1/N of the API's quota.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from .results import SearchError


@dataclass(frozen=True)
class HttpPolicy:
    """How a web backend talks to its API.

    Attributes:
        timeout_s: The most one attempt may take, from connecting to the last byte of the answer.
        max_attempts: Attempts per search, the first included.
        backoff_initial_s: Wait before the second attempt; it doubles with each further attempt (with jitter, so
            that trajectories that failed together do not retry together).
        backoff_max_s: Cap on that wait.
        max_retry_after_s: A ``Retry-After`` longer than this fails the search at once rather than stall a turn.
        max_concurrency: Requests in flight at once.
        requests_per_second: Average rate of requests sent; ``None`` for no limit.
        burst: Requests that may go out back to back after a quiet spell, before the rate applies.
    """

    timeout_s: float = 10.0
    max_attempts: int = 4
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 30.0
    max_concurrency: int = 8
    requests_per_second: float | None = 10.0
    burst: int = 1

    def __post_init__(self):
        if self.timeout_s <= 0 or self.max_attempts < 1 or self.max_concurrency < 1 or self.burst < 1:
            raise ValueError(f"invalid HTTP policy {self}: timeout_s must be > 0, the counts >= 1")
        if self.requests_per_second is not None and self.requests_per_second <= 0:
            raise ValueError(f"requests_per_second must be positive or None, got {self.requests_per_second}")

    def backoff_s(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (from 1): exponential, capped, with jitter."""
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


class TokenBucket:
    """Lets requests go at ``rate`` per second on average, up to ``capacity`` at once after a quiet spell.

    Each caller takes a token; when none is left the balance goes negative, which reserves a slot in the future: the
    caller sleeps until its token has accrued, and later callers queue behind it. Only the event loop's thread
    touches the bucket, so it needs no lock.
    """

    def __init__(self, rate: float, capacity: int = 1):
        self.rate = rate
        self.capacity = capacity
        self._tokens = float(capacity)
        self._updated = time.monotonic()

    async def acquire(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        self._tokens -= 1
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, given as seconds or as an HTTP date; ``None`` if absent or bad."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


@dataclass
class _LoopResources:
    """What belongs to the event loop it was made on: httpx's connections and asyncio's primitives."""

    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    slots: asyncio.Semaphore
    bucket: TokenBucket | None


class _RetryableFailure(Exception):
    def __init__(self, reason: str, retry_after_s: float | None = None):
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class RetryingHttpClient:
    """An HTTP client (one per backend) that retries, limits concurrency and rate, and raises :class:`SearchError`.

    The httpx client, the semaphore and the bucket are made on first use, on the running loop (the rollout engine's
    long-lived one), and released by :meth:`aclose`; using the client from a second loop is an error.
    """

    def __init__(self, policy: HttpPolicy):
        self.policy = policy
        self._resources: _LoopResources | None = None

    def _on_running_loop(self) -> _LoopResources:
        loop = asyncio.get_running_loop()
        if self._resources is None:
            rate = self.policy.requests_per_second
            self._resources = _LoopResources(
                loop=loop,
                # The per-attempt deadline is enforced around the whole request below, so httpx keeps no timeout.
                client=httpx.AsyncClient(
                    timeout=None,
                    limits=httpx.Limits(max_connections=self.policy.max_concurrency),
                    follow_redirects=True,
                ),
                slots=asyncio.Semaphore(self.policy.max_concurrency),
                bucket=None if rate is None else TokenBucket(rate, self.policy.burst),
            )
        elif self._resources.loop is not loop:
            raise RuntimeError(
                "this search client is bound to another event loop; use one loop for all calls, "
                "or aclose() the backend before switching loops"
            )
        return self._resources

    async def request_json(self, method: str, url: str, **request_options: Any) -> Any:
        """Send the request, retrying as the policy says, and return the decoded JSON answer.

        ``request_options`` go to :meth:`httpx.AsyncClient.request` (``params``, ``json``, ``headers``).
        """
        resources = self._on_running_loop()
        failures: list[str] = []
        for attempt in range(1, self.policy.max_attempts + 1):
            try:
                async with resources.slots:
                    if resources.bucket is not None:
                        await resources.bucket.acquire()
                    return await self._attempt(resources.client, method, url, request_options)
            except _RetryableFailure as failure:
                failures.append(str(failure))
                retry_after_s = failure.retry_after_s
            if attempt == self.policy.max_attempts:
                break
            if retry_after_s is not None and retry_after_s > self.policy.max_retry_after_s:
                raise SearchError(
                    f"gave up after attempt {attempt} ({failures[-1]}): the server asked to retry after "
                    f"{retry_after_s:g} s, longer than max_retry_after_s={self.policy.max_retry_after_s:g}"
                )
            await asyncio.sleep(max(self.policy.backoff_s(attempt), retry_after_s or 0.0))
        raise SearchError(
            f"gave up after {len(failures)} attempt{'s' * (len(failures) > 1)} ("
            + "; ".join(f"{number}: {reason}" for number, reason in enumerate(failures, start=1)) + ")"
        )

    async def _attempt(self, client: httpx.AsyncClient, method: str, url: str, request_options: dict) -> Any:
        try:
            response = await asyncio.wait_for(client.request(method, url, **request_options), self.policy.timeout_s)
        except asyncio.TimeoutError:
            raise _RetryableFailure(f"no answer within {self.policy.timeout_s:g} s") from None
        except httpx.RequestError as error:
            raise _RetryableFailure(f"{type(error).__name__}: {error or 'the request failed'}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            retry_after_s = parse_retry_after(response.headers.get("Retry-After"))
            raise _RetryableFailure(f"HTTP {status} {response.reason_phrase}".rstrip(), retry_after_s)
        if status >= 400:
            # The request itself is wrong (a bad key, an exhausted plan, a disabled format): retrying cannot help.
            raise SearchError(f"HTTP {status} {response.reason_phrase}: {' '.join(response.text.split())[:200]}")
        try:
            return response.json()
        except ValueError:
            # A 200 with a body that is not JSON comes from proxies and overloaded servers; it is usually transient.
            raise _RetryableFailure(f"the answer was not valid JSON ({response.text[:60]!r})") from None

    async def aclose(self) -> None:
        if self._resources is not None:
            resources, self._resources = self._resources, None
            await resources.client.aclose()
