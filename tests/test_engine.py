"""The turn loop with the real processor, real tools and scripted model turns."""

import asyncio
import time

import pytest
from transformers import AutoProcessor

from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.rollout import RolloutEngine, ScriptedTurnGenerator
from agentic_vlm.tools import Observation, Tool, ToolContext, ZoomTool
from agentic_vlm.tools.code import CodeTool
from agentic_vlm.warmstart import prompt_messages

ZOOM = "<think>zoom</think>\n<zoom>[0, 0, 75, 75]</zoom>"
ANSWER = "<think>done</think>\n<answer>red</answer>"


class SleepTool(Tool):
    name = "sleep"
    description = "seconds: wait"

    async def __call__(self, argument, context):
        await asyncio.sleep(float(argument))
        return Observation(text=f"slept {argument}")


class BrokenTool(Tool):
    name = "broken"
    description = "anything: always fails"

    async def __call__(self, argument, context):
        raise RuntimeError("disk on fire")


class WrongTypeTool(Tool):
    name = "wrong"
    description = "returns a string instead of an Observation"

    async def __call__(self, argument, context):
        return "not an observation"


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    return AutoProcessor.from_pretrained(tiny_model_dir)


def make_engine(processor, tools, script, **kwargs):
    protocol = ArftProtocol()
    generator = ScriptedTurnGenerator(processor, protocol.stop_strings(tools), script)
    return RolloutEngine(processor, protocol, tools, generator, **kwargs)


def rows(example, n=1):
    return [{"prompt": [{"role": "user", "content": example["question"]}], "images": [example["image"]],
             "answer": example["answer"]} for _ in range(n)]


def run(engine, batch):
    try:
        return engine.run([prompt_messages(row) for row in batch], batch)
    finally:
        engine.close()


def test_tool_images_and_masks(processor, zoom_example):
    engine = make_engine(processor, [ZoomTool(min_side=56, max_side=56)], lambda r: [ZOOM, ANSWER][r.turn])
    (trajectory,) = run(engine, rows(zoom_example))
    assert trajectory.stop_reason == "answer"
    assert [turn.action.kind for turn in trajectory.turns] == ["tool", "answer"]
    assert len(trajectory.images) == 2 and trajectory.images[1].size == (56, 56)
    assert trajectory.image_grid_thw.tolist() == [[1, 16, 16], [1, 4, 4]]
    tokenizer = processor.tokenizer
    model_text = tokenizer.decode([t for t, m in zip(trajectory.completion_ids, trajectory.tool_mask, strict=True) if m])
    observation_ids = [t for t, m in zip(trajectory.completion_ids, trajectory.tool_mask, strict=True) if not m]
    assert model_text == ZOOM + ANSWER + "<|im_end|>"
    assert observation_ids.count(tokenizer.convert_tokens_to_ids("<|image_pad|>")) == 4  # 4x4 patches, 2x2 merge
    observation = tokenizer.decode(observation_ids)
    assert observation.startswith("<|im_end|>\n<|im_start|>user\n<information><|vision_start|>")
    assert observation.endswith("</information><|im_end|>\n<|im_start|>assistant\n")
    assert trajectory.completion_messages()[1] == {
        "role": "tool", "name": "zoom", "content": "The box [0, 0, 75, 75] enlarged.", "error": None, "num_images": 1,
    }


def test_tool_failures_become_observations_and_the_rollout_goes_on(processor, zoom_example):
    tools = [SleepTool(), BrokenTool(), WrongTypeTool()]
    script = ["<think>a</think><sleep>5</sleep>", "<think>b</think><broken>x</broken>",
              "<think>c</think><wrong>x</wrong>", "<think>d</think><answer>red</answer>"]
    engine = make_engine(processor, tools, lambda r: script[r.turn], max_turns=4, tool_timeout=0.2)
    start = time.perf_counter()
    (trajectory,) = run(engine, rows(zoom_example))
    assert time.perf_counter() - start < 3
    errors = [turn.observation.error for turn in trajectory.turns[:3]]
    assert errors == [
        "The sleep tool did not finish within 0.2 s.",
        "The broken tool failed: RuntimeError: disk on fire",
        "The wrong tool failed: TypeError: returned str, not an Observation",
    ]
    assert trajectory.stop_reason == "answer"


@pytest.mark.parametrize("keep_pixel_values", [True, False])
def test_pixel_values_are_kept_only_while_a_generator_reads_them(processor, zoom_example, keep_pixel_values):
    protocol, tools = ArftProtocol(), [ZoomTool(min_side=56, max_side=56)]
    script = ScriptedTurnGenerator(processor, protocol.stop_strings(tools), lambda r: [ZOOM, ANSWER][r.turn])
    seen = []

    def generate(requests, budget):
        seen.append([None if r.pixel_values is None else r.pixel_values.shape[0] for r in requests])
        return script(requests, budget)

    engine = RolloutEngine(processor, protocol, tools, generate, keep_pixel_values=keep_pixel_values)
    (trajectory,) = run(engine, rows(zoom_example))
    # 256 patches of the prompt's image, then 16 more of the zoom's; none for a generator that takes the images.
    assert seen == ([[256], [272]] if keep_pixel_values else [[None], [None]])
    assert trajectory.pixel_values is None  # the rollout is over: nothing will read them
    assert trajectory.image_grid_thw.tolist() == [[1, 16, 16], [1, 4, 4]]


def test_malformed_action_is_told_to_the_model(processor, zoom_example):
    script = ["<think>hmm</think> no action", ANSWER]
    engine = make_engine(processor, [ZoomTool()], lambda r: script[r.turn], max_turns=2)
    (trajectory,) = run(engine, rows(zoom_example))
    first = trajectory.turns[0]
    assert first.action.kind == "invalid"
    assert "ended without an action" in first.observation.text
    # The model closed its turn itself (end-of-turn token); the observation must not close it a second time.
    text = processor.tokenizer.decode(trajectory.completion_ids)
    assert "no action<|im_end|>\n<|im_start|>user\n<information>Invalid action" in text
    assert trajectory.stop_reason == "answer"


def test_tool_calls_of_a_turn_run_concurrently(processor, zoom_example):
    engine = make_engine(processor, [SleepTool()], lambda r: ["<think>w</think><sleep>0.3</sleep>", ANSWER][r.turn])
    (*trajectories,) = run(engine, rows(zoom_example, n=12))
    assert all(t.stop_reason == "answer" for t in trajectories)
    (wall,) = engine.tool_wall_seconds
    assert 0.3 <= wall < 0.6  # twelve 0.3 s calls, one turn


def test_persistent_code_sessions_live_for_their_trajectory_and_end_with_it(processor, zoom_example):
    tool = CodeTool(persistent=True, workers=1, timeout_s=5)
    script = ["<think>a</think><code>x = 41</code>", "<think>b</think><code>print(x + 1)</code>", ANSWER]
    engine = make_engine(processor, [tool], lambda r: script[r.turn], max_turns=3)
    try:
        trajectories = engine.run([prompt_messages(row) for row in rows(zoom_example, n=2)], rows(zoom_example, n=2))
        assert [t.turns[1].observation.text for t in trajectories] == ["42", "42"]
        assert tool.sandbox._sessions == {}
        # The worker ended them too: the same trajectory id now starts from a clean process.
        later = asyncio.run(tool("print(x)", ToolContext(trajectory_id=trajectories[0].id)))
        assert "NameError" in later.error
    finally:
        engine.close()


def test_a_tool_that_fails_to_release_does_not_stop_the_rollout(processor, zoom_example, caplog):
    class Unreleasable(SleepTool):
        async def release(self, trajectory_id):
            raise OSError("session store unreachable")

    engine = make_engine(processor, [Unreleasable()], lambda r: ["<think>w</think><sleep>0</sleep>", ANSWER][r.turn])
    (trajectory,) = run(engine, rows(zoom_example))
    assert trajectory.stop_reason == "answer"
    assert "session store unreachable" in caplog.text


def test_turn_limit_and_token_budget(processor, zoom_example):
    engine = make_engine(processor, [ZoomTool()], lambda r: ZOOM, max_turns=2)
    (trajectory,) = run(engine, rows(zoom_example))
    assert trajectory.stop_reason == "max_turns" and len(trajectory.turns) == 2
    assert trajectory.turns[-1].observation is None  # the last turn's call is not run

    engine = make_engine(processor, [ZoomTool()], lambda r: ZOOM, max_turns=4, max_completion_length=40)
    (trajectory,) = run(engine, rows(zoom_example))
    assert trajectory.stop_reason == "length"
    assert len(trajectory.completion_ids) <= 40
    assert trajectory.turns[0].observation is None  # the observation did not fit: dropped, not truncated
    assert all(trajectory.tool_mask)


def test_lockstep_pads_every_generation_call_to_the_agreed_size(processor, zoom_example):
    seen = []

    def script(request):
        return [ZOOM, ANSWER][request.turn]

    protocol = ArftProtocol()
    generator = ScriptedTurnGenerator(processor, protocol.stop_strings([ZoomTool()]), script)

    def recording_generator(requests, budget):
        seen.append(len(requests))
        return generator(requests, budget)

    # As if another rank had 5 trajectories still active for 4 turns.
    engine = RolloutEngine(processor, protocol, [ZoomTool()], recording_generator, max_turns=4,
                           sync_batch_size=lambda active: 5 if len(seen) < 4 else active)
    trajectories = run(engine, rows(zoom_example, n=2))
    assert seen == [5, 5, 5, 5]  # this rank finished after 2 turns but took part in all four calls
    assert all(t.stop_reason == "answer" and len(t.turns) == 2 for t in trajectories)
