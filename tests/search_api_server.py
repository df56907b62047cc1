"""A search API on 127.0.0.1 for the search tests: real HTTP, each API's request and answer format, scripted faults.

``FakeSearchApi("brave")`` answers like Brave (path, auth header, parameters, JSON shape) and refuses requests that
are not what that API expects. Queue faults in ``faults`` and each request consumes one before the API answers
normally: ``"slow"`` (answers after ``slow_s``), ``"429"`` (with ``Retry-After: retry_after``), ``"500"``,
``"malformed"`` (a 200 whose body is cut-off JSON). Every request is recorded with its arrival and end times.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

API_KEY = "test-key"
FLAVORS = ("serper", "serpapi", "brave", "searxng")


def expected_titles(query: str, count: int) -> list[str]:
    """The titles the fake API answers ``query`` with, best first."""
    return [f"{query} result {rank}" for rank in range(1, count + 1)]


@dataclass
class RecordedRequest:
    query: str | None
    arrived: float
    finished: float | None = None
    fault: str | None = None


class FakeSearchApi:
    def __init__(self, flavor: str, port: int = 0, results_per_query: int = 5, delay_s: float = 0.0,
                 slow_s: float = 1.0, retry_after: str = "0"):
        if flavor not in FLAVORS:
            raise ValueError(flavor)
        self.flavor = flavor
        self.results_per_query = results_per_query
        self.delay_s = delay_s
        self.slow_s = slow_s
        self.retry_after = retry_after
        self.faults: list[str] = []
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeSearchApi:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()

    def arrivals(self) -> list[float]:
        with self._lock:
            return sorted(request.arrived for request in self.requests)

    def answer(self, query: str, count: int) -> dict:
        titles = expected_titles(query, min(count, self.results_per_query))
        # Brave and SearXNG highlight the query in snippets with markup; the backends must strip it.
        snippets = [f"Snippet {rank} about <strong>{query}</strong> &amp; more." for rank in range(1, len(titles) + 1)]
        urls = [f"https://example.org/{rank}" for rank in range(1, len(titles) + 1)]
        rows = list(zip(titles, urls, snippets, strict=True))
        if self.flavor == "serper":
            return {"searchParameters": {"q": query, "type": "search"},
                    "organic": [{"title": t, "link": u, "snippet": s, "position": i}
                                for i, (t, u, s) in enumerate(rows, 1)]}
        if self.flavor == "serpapi":
            if not rows:
                return {"error": "Google hasn't returned any results for this query.",
                        "search_information": {"organic_results_state": "Fully empty"}}
            return {"search_metadata": {"status": "Success"},
                    "organic_results": [{"position": i, "title": t, "link": u, "snippet": s}
                                        for i, (t, u, s) in enumerate(rows, 1)]}
        if self.flavor == "brave":
            web = {"type": "search", "results": [{"title": t, "url": u, "description": s} for t, u, s in rows]}
            return {"type": "search", "query": {"original": query}, **({"web": web} if rows else {})}
        return {"query": query, "number_of_results": len(rows),
                "results": [{"title": t, "url": u, "content": s, "engine": "fake"} for t, u, s in rows]}


def _handler_for(api: FakeSearchApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

        def _serve(self, method: str) -> None:
            record = RecordedRequest(query=None, arrived=time.monotonic())
            with api._lock:
                api.requests.append(record)
                api.in_flight += 1
                api.max_in_flight = max(api.max_in_flight, api.in_flight)
                record.fault = api.faults.pop(0) if api.faults else None
            try:
                self._answer(method, record)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on a slow answer
            finally:
                with api._lock:
                    api.in_flight -= 1
                    record.finished = time.monotonic()

        def _answer(self, method: str, record: RecordedRequest) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                query, count = parse_request(api.flavor, method, self.path, dict(self.headers), body)
            except Refused as refusal:
                return self._send(refusal.status, refusal.payload)
            record.query = query
            time.sleep(api.delay_s)
            if record.fault == "slow":
                time.sleep(api.slow_s)
            elif record.fault == "429":
                return self._send(429, {"error": "rate limited"}, {"Retry-After": api.retry_after})
            elif record.fault == "500":
                return self._send(500, {"error": "internal error"})
            elif record.fault == "malformed":
                return self._send_raw(200, b'{"results": [{"title": "cut', "application/json")
            self._send(200, api.answer(query, count))

        def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
            self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

        def _send_raw(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


class Refused(Exception):
    def __init__(self, status: int, payload: dict):
        super().__init__(status)
        self.status = status
        self.payload = payload


def parse_request(flavor: str, method: str, path: str, headers: dict, body: bytes) -> tuple[str, int]:
    """``(query, number of results asked)`` if the request is what the API expects; raises :class:`Refused` with
    the API's error answer if not."""
    url = urlsplit(path)
    params = {key: values[-1] for key, values in parse_qs(url.query).items()}
    headers = {key.lower(): value for key, value in headers.items()}
    if flavor == "serper":
        if (method, url.path) != ("POST", "/search"):
            raise Refused(404, {"message": "not found"})
        if headers.get("x-api-key") != API_KEY:
            raise Refused(403, {"message": "Unauthorized.", "statusCode": 403})
        request = json.loads(body)
        return request["q"], int(request.get("num", 10))
    if flavor == "serpapi":
        if (method, url.path) != ("GET", "/search.json") or params.get("engine") != "google":
            raise Refused(404, {"error": "not found"})
        if params.get("api_key") != API_KEY:
            raise Refused(401, {"error": "Invalid API key. Your API key should be here: https://serpapi.com/manage-api-key"})
        return params["q"], 10
    if flavor == "brave":
        if (method, url.path) != ("GET", "/res/v1/web/search"):
            raise Refused(404, {"error": "not found"})
        if headers.get("x-subscription-token") != API_KEY:
            raise Refused(401, {"type": "ErrorResponse", "error": {"code": "SUBSCRIPTION_TOKEN_INVALID"}})
        return params["q"], int(params.get("count", 20))
    if (method, url.path) != ("GET", "/search"):
        raise Refused(404, {"error": "not found"})
    if params.get("format") != "json":
        raise Refused(403, {"error": "format not allowed"})
    return params["q"], 10
