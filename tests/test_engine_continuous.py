"""The continuous schedule of the turn loop (each trajectory its own generate -> tool -> generate loop), with the real
processor and real tools; model turns scripted, one request at a time, as vLLM takes them."""

import asyncio

import pytest
from test_engine import BrokenTool
from transformers import AutoProcessor

from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.rollout import RolloutEngine, ScriptedTurnGenerator
from agentic_vlm.tools import Observation, Tool, ZoomTool
from agentic_vlm.warmstart import prompt_messages

ANSWER = "<think>done</think>\n<answer>red</answer>"


class LoggedSleepTool(Tool):
    """Sleeps ``argument`` seconds and logs when each call ends."""

    name = "sleep"
    description = "seconds: wait"

    def __init__(self, log):
        self.log = log

    async def __call__(self, argument, context):
        await asyncio.sleep(float(argument))
        self.log.append(("tool done", context.row["index"], context.turn))
        return Observation(text=f"slept {argument}")


class OneAtATime:
    """``generate_one`` for the engine: the scripted turn of one request, logged when it is submitted."""

    def __init__(self, scripted: ScriptedTurnGenerator, log):
        self.scripted, self.log = scripted, log

    async def __call__(self, request):
        self.log.append(("generate", request.row["index"], request.turn))
        await asyncio.sleep(0.01)  # the engine's step: other trajectories' coroutines run meanwhile
        (ids,), _ = self.scripted([request], request.max_new_tokens)
        return ids, None


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    return AutoProcessor.from_pretrained(tiny_model_dir)


def run_continuous(processor, tools, script, rows, log, **kwargs):
    protocol = ArftProtocol()
    scripted = ScriptedTurnGenerator(processor, protocol.stop_strings(tools), script)
    engine = RolloutEngine(processor, protocol, tools, scripted, generate_one=OneAtATime(scripted, log), **kwargs)
    try:
        return engine.run([prompt_messages(row) for row in rows], rows)
    finally:
        engine.close()


def test_a_trajectory_goes_on_while_another_waits_for_its_tool(processor, zoom_example):
    log = []
    # Trajectory 0's tool takes 0.5 s; trajectory 1 calls a quick tool twice, then answers.
    script = {0: ["<think>a</think>\n<sleep>0.5</sleep>", ANSWER],
              1: ["<think>b</think>\n<sleep>0.01</sleep>", "<think>c</think>\n<sleep>0.01</sleep>", ANSWER]}
    rows = [{"prompt": [{"role": "user", "content": "q"}], "images": [zoom_example["image"]], "answer": "red",
             "index": index} for index in (0, 1)]
    trajectories = run_continuous(processor, [LoggedSleepTool(log)], lambda r: script[r.row["index"]][r.turn], rows,
                                  log, max_turns=4)
    assert [t.row["index"] for t in trajectories] == [0, 1]  # output in the order of the prompts
    assert [t.stop_reason for t in trajectories] == ["answer", "answer"]
    assert [len(t.turns) for t in trajectories] == [2, 3]
    # Trajectory 1 generated its second and third turns while trajectory 0's tool still ran.
    slow_tool_done = log.index(("tool done", 0, 0))
    assert log.index(("generate", 1, 1)) < slow_tool_done and log.index(("generate", 1, 2)) < slow_tool_done


def test_tool_failures_and_timeouts_are_observations(processor, zoom_example):
    log = []
    script = {0: ["<think>x</think>\n<broken>now</broken>", ANSWER],
              1: ["<think>y</think>\n<sleep>5</sleep>", ANSWER],
              2: ["<think>z</think>\n<zoom>[0, 0, 75, 75]</zoom>", ANSWER]}
    rows = [{"prompt": [{"role": "user", "content": "q"}], "images": [zoom_example["image"]], "answer": "red",
             "index": index} for index in range(3)]
    tools = [BrokenTool(), LoggedSleepTool(log), ZoomTool(min_side=56, max_side=56)]
    broken, slow, zoom = run_continuous(processor, tools, lambda r: script[r.row["index"]][r.turn], rows, log,
                                        tool_timeout=0.2)
    assert "disk on fire" in broken.turns[0].observation.text
    assert "did not finish within 0.2 s" in slow.turns[0].observation.text
    assert len(zoom.images) == 2 and zoom.turns[0].observation.error is None
    assert all(t.stop_reason == "answer" for t in (broken, slow, zoom))
    assert all(len(t.tool_mask) == len(t.completion_ids) for t in (broken, slow, zoom))
