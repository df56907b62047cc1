"""The LLM judge against a real HTTP server on 127.0.0.1 that speaks OpenAI's chat-completions JSON."""

import asyncio
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.rewards import build_reward_funcs
from agentic_vlm.rewards.judge import JudgeClient, judge_messages, parse_verdict, question_text
from agentic_vlm.tools import ZoomTool

PROTOCOL = ArftProtocol()
TOOLS = [ZoomTool()]


class FakeJudgeServer(ThreadingHTTPServer):
    """Grades by comparing the predicted and reference answers in the prompt, case-insensitively.

    ``mode`` is "ok", "error" (HTTP 500), "unclear" (a reply without a verdict) or "garbage" (not OpenAI JSON).
    """

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), JudgeHandler)
        self.mode = "ok"
        self.delay = 0.0
        self.requests: list[dict] = []
        self.headers_seen: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class JudgeHandler(BaseHTTPRequestHandler):
    server: FakeJudgeServer

    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.requests.append(body)
            server.headers_seen.append(dict(self.headers))
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        time.sleep(server.delay)
        with server.lock:
            server.in_flight -= 1
        if self.path != "/v1/chat/completions" or server.mode == "error":
            self._send(500, {"error": {"message": "overloaded"}})
        elif server.mode == "garbage":
            self._send(200, {"unexpected": True})
        else:
            self._send(200, completion(self._verdict(body["messages"][-1]["content"])))

    def _verdict(self, prompt: str) -> str:
        if self.server.mode == "unclear":
            return "I am not sure what to make of this."
        reference = re.search(r"Reference answer: (.*)", prompt).group(1)
        prediction = re.search(r"Predicted answer: (.*)", prompt).group(1)
        right = prediction.strip().lower() in [ref.strip('" ').lower() for ref in reference.split(" OR ")]
        return "**Correct**" if right else "The answer is incorrect."

    def _send(self, status: int, payload: dict):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def completion(text: str) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "judge",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }


@pytest.fixture
def server():
    server = FakeJudgeServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def answered(text: str) -> list[dict]:
    return [{"role": "assistant", "content": f"<think>I see it.</think><answer>{text}</answer>"}]


def run_judge(reward, completions, answers, questions=None):
    metrics = {}
    columns = {"question": questions} if questions is not None else {}
    prompts = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color?"}]}]] * len(
        completions
    )
    rewards = asyncio.run(
        reward(prompts=prompts, completions=completions, answer=answers, log_metric=metrics.__setitem__, **columns)
    )
    return rewards, metrics


def make_judge(server, **options):
    options = {"base_url": server.base_url, "model": "judge", "retry_backoff": 0.01, **options}
    (reward,) = build_reward_funcs(["judge"], PROTOCOL, TOOLS, {"judge": options})
    return reward


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Yes", True),
        ("yes.", True),
        ("**Correct**", True),
        ("Judgement: 1", True),
        ("Verdict - CORRECT", True),
        ("1", True),
        ("<|YES|>", True),
        ("Yes, the answer is correct.", True),
        ("The answer is right, not wrong.", True),
        ("No", False),
        ("The answer is incorrect.", False),
        ("**Incorrect**", False),
        ("Judgement: 0", False),
        ("The predicted answer is not correct", False),
        ("Correct: no", False),
        ("0", False),
        ("I reasoned about it; final verdict: No", False),
        ("", None),
        ("I cannot tell.", None),
        ("There is no doubt it is correct", None),  # says both: unclear, not guessed
        ("The chart has 1 bar and 0 lines", None),  # digits in prose are not verdicts
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) is verdict


def test_judge_messages_and_question_text():
    messages = judge_messages("What color?", ["red", "crimson"], "Red")
    assert messages[0]["role"] == "system"
    assert 'Reference answer: "red" OR "crimson"' in messages[1]["content"]
    assert "Predicted answer: Red" in messages[1]["content"]
    prompt = [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color is it?"}]},
    ]
    assert question_text(prompt) == "What color is it?"


def test_judge_grades_through_the_endpoint(server, monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_KEY", "secret")
    reward = make_judge(server, api_key_env="JUDGE_TEST_KEY")
    completions = [answered("Red"), answered("blue"), [{"role": "assistant", "content": "<think>hm</think>"}]]
    completions += [answered("crimson"), answered("   "), answered("red")]
    answers = ["red", "red", "red", ["red", "crimson"], "red", None]
    rewards, metrics = run_judge(reward, completions, answers)
    assert reward.__name__ == "judge"
    # no answer and a blank answer are 0 without asking; a row without truth is not applicable
    assert rewards == [1.0, 0.0, 0.0, 1.0, 0.0, None]
    assert metrics == {"judge/failure_rate": 0.0, "judge/unclear_rate": 0.0}
    assert len(server.requests) == 3
    body = server.requests[0]
    assert body["temperature"] == 0 and body["model"] == "judge"
    assert "Question: What color?" in body["messages"][-1]["content"]  # from the prompt's user message
    assert server.headers_seen[0]["Authorization"] == "Bearer secret"


def test_judge_sends_text_with_lone_surrogates(server):
    # A lone surrogate cannot be encoded as UTF-8: without care the request raises UnicodeEncodeError mid-training.
    reward = make_judge(server)
    rewards, metrics = run_judge(reward, [answered("red\ud800"), answered("red")], ["red", "red"],
                                 questions=["Which colour?\udfff", "Which colour?"])
    assert rewards == [0.0, 1.0] and metrics["judge/failure_rate"] == 0.0
    # The two requests are sent at once: the server may receive them in either order.
    [replaced] = [request["messages"][-1]["content"] for request in server.requests
                  if "Predicted answer: red\ufffd" in request["messages"][-1]["content"]]
    assert "Question: Which colour?\ufffd" in replaced


def test_judge_prefers_the_question_column(server):
    reward = make_judge(server)
    run_judge(reward, [answered("red")], ["red"], questions=["Which colour is the square?"])
    assert "Question: Which colour is the square?" in server.requests[0]["messages"][-1]["content"]
    assert "Authorization" not in server.headers_seen[0]  # no key is sent unless one is named


def test_judge_caches_and_sends_repeated_answers_once(server, tmp_path):
    cache = tmp_path / "judge.jsonl"
    reward = make_judge(server, cache_path=str(cache))
    group = [answered("red"), answered("red"), answered("Red"), answered("blue")]
    rewards, _ = run_judge(reward, group, ["red"] * 4)
    assert rewards == [1.0, 1.0, 1.0, 0.0]
    assert len(server.requests) == 3  # "red" twice is one request
    run_judge(reward, group, ["red"] * 4)
    assert len(server.requests) == 3  # all from the memory cache

    server.mode = "error"  # a new process with the same cache file needs no server
    rewards, metrics = run_judge(make_judge(server, cache_path=str(cache)), group, ["red"] * 4)
    assert rewards == [1.0, 1.0, 1.0, 0.0]
    assert len(server.requests) == 3
    assert len(cache.read_text().splitlines()) == 3


def test_judge_outage_gives_none_and_a_warning_metric(server):
    server.mode = "error"
    reward = make_judge(server, max_retries=2)
    rewards, metrics = run_judge(reward, [answered("red"), answered("blue"), answered("")], ["red"] * 3)
    assert rewards == [None, None, 0.0]  # never a wrong 0 for an answer the judge did not see
    assert metrics["judge/failure_rate"] == 1.0
    assert len(server.requests) == 2 * 3  # two answers, each tried three times

    server.mode = "ok"  # failures are not cached: the next batch asks again
    rewards, metrics = run_judge(reward, [answered("red")], ["red"])
    assert rewards == [1.0] and metrics["judge/failure_rate"] == 0.0


def test_judge_unreachable_gives_none():
    with socket.socket() as probe:  # a port that nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = {"base_url": f"http://127.0.0.1:{port}/v1", "model": "judge", "max_retries": 0, "timeout": 2.0}
    (unreachable,) = build_reward_funcs(["judge"], PROTOCOL, TOOLS, {"judge": options})
    rewards, metrics = run_judge(unreachable, [answered("red")], ["red"])
    assert rewards == [None] and metrics["judge/failure_rate"] == 1.0


def test_judge_unclear_and_malformed_replies_are_none(server):
    server.mode = "unclear"
    rewards, metrics = run_judge(make_judge(server), [answered("red")], ["red"])
    assert rewards == [None]
    assert metrics == {"judge/failure_rate": 0.0, "judge/unclear_rate": 1.0}
    server.mode = "garbage"
    rewards, metrics = run_judge(make_judge(server), [answered("red")], ["red"])
    assert rewards == [None] and metrics["judge/failure_rate"] == 1.0


def test_judge_requests_run_concurrently_up_to_the_limit(server):
    server.delay = 0.2
    client = JudgeClient(server.base_url, "judge", max_concurrency=3)
    conversations = [judge_messages("q", ["red"], f"answer {index}") for index in range(9)]
    start = time.perf_counter()
    replies = asyncio.run(client.complete_all(conversations))
    elapsed = time.perf_counter() - start
    assert replies == ["The answer is incorrect."] * 9
    assert server.max_in_flight == 3
    assert elapsed < 9 * 0.2  # concurrent, not one after another


def test_judge_options_are_checked(server):
    with pytest.raises(ValueError, match="NO_SUCH_KEY"):
        make_judge(server, api_key_env="NO_SUCH_KEY")
    with pytest.raises(ValueError, match="max_concurrency"):
        make_judge(server, max_concurrency=0)
