"""Rollouts with the hermes protocol on each family's tiny model: several calls in one turn run concurrently and come
back in order (an image among them), calls that cannot run come back as errors, and the answer ends the trajectory."""

import asyncio
import json
import time

import pytest
from transformers import AutoProcessor

from agentic_vlm.families import TINY_FAMILIES
from agentic_vlm.protocols import HermesProtocol
from agentic_vlm.rollout import RolloutEngine, ScriptedTurnGenerator
from agentic_vlm.tools import Observation, Tool, ToolContext, ZoomTool


class SlowEcho(Tool):
    """Waits, then echoes its text; remembers when each call ran."""

    name = "echo"
    description = "repeat a text after a while"
    parameters = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}

    def __init__(self):
        self.intervals = {}

    async def __call__(self, argument: str, context: ToolContext) -> Observation:
        start = time.perf_counter()
        await asyncio.sleep(0.3)
        self.intervals[argument] = (start, time.perf_counter())
        return Observation(text=f"echo: {argument}")


def call(family: str, name: str, arguments: dict) -> str:
    """A tool call as the family writes it."""
    if family == "qwen3.5":
        parameters = "".join(f"<parameter={key}>\n{value if isinstance(value, str) else json.dumps(value)}\n"
                             "</parameter>\n" for key, value in arguments.items())
        return f"<tool_call>\n<function={name}>\n{parameters}</function>\n</tool_call>"
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_several_calls_per_turn_errors_and_answer(family, tiny_model_dirs, zoom_example):
    processor = AutoProcessor.from_pretrained(tiny_model_dirs[family])
    echo, protocol = SlowEcho(), HermesProtocol(family)
    tools = [ZoomTool(min_side=56, max_side=112), echo]
    script = [
        "I will look twice.\n" + "\n".join([call(family, "echo", {"text": "first"}),
                                            call(family, "zoom", {"bbox_2d": [0, 0, 100, 100]}),
                                            call(family, "echo", {"text": "last"})]),
        call(family, "crop", {"box": [1, 2]}) + "\n" + call(family, "zoom", {"bbox_2d": [1, 2, 3]}),
        "<answer>red</answer>",
    ]
    generator = ScriptedTurnGenerator(processor, protocol.stop_strings(tools), lambda request: script[request.turn])
    engine = RolloutEngine(processor, protocol, tools, generator, max_turns=4, max_completion_length=2000)
    try:
        [trajectory] = engine.run([[{"role": "user", "content": [{"type": "image", "image": zoom_example["image"]},
                                                                  {"type": "text", "text": "Which color?"}]}]])
    finally:
        engine.close()

    assert trajectory.stop_reason == "answer"
    first, second, last = trajectory.turns
    assert [c.name for c in first.action.tool_calls] == ["echo", "zoom", "echo"]
    # The two slow calls overlapped in time: they ran concurrently.
    (start_a, end_a), (start_b, end_b) = echo.intervals["first"], echo.intervals["last"]
    assert start_b < end_a and start_a < end_b
    assert [part.text for part in first.observation.parts][::2] == ["echo: first", "echo: last"]
    assert len(first.observation.images) == 1 and len(trajectory.images) == 2

    tokenizer = processor.tokenizer
    text = tokenizer.decode(trajectory.completion_ids)
    responses = text.split("<tool_response>\n")[1:]
    assert responses[0].startswith("echo: first\n</tool_response>")
    assert responses[1].startswith("The box")
    assert "<|vision_start|>" + "<|image_pad|>" in responses[1]
    assert responses[2].startswith("echo: last\n</tool_response>")
    assert "There is no tool named 'crop'" in responses[3]
    assert "'bbox_2d' must have 4 to 4 items" in responses[4]
    assert [c.kind for c in second.action.tool_calls] == ["invalid", "invalid"]
    assert last.action.argument == "red"
    # One `tool` message per call, in order, for the rewards.
    names = [m["name"] for m in trajectory.completion_messages() if m["role"] == "tool"]
    assert names == ["echo", "zoom", "echo", "crop", "zoom"]
    # The observations are the environment's: none of their tokens is trained.
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    image_positions = [i for i, token in enumerate(trajectory.completion_ids) if token == image_id]
    assert image_positions and all(trajectory.tool_mask[i] == 0 for i in image_positions)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_trainer_forward_reproduces_sampling_logprobs_with_two_images_in_one_turn(family, tiny_model_dirs, tmp_path):
    """Through the trainer: two zoom calls in one turn (two tool images in one <tool_response> turn), teacher-forced
    through transformers' generate; TRL's forward pass scores the model's tokens as sampling did."""
    import random

    from datasets import Dataset
    from forward_pass import recompute_logps

    from agentic_vlm.config import AgenticGRPOConfig
    from agentic_vlm.data.synthetic import make_zoom_example
    from agentic_vlm.trainer import AgenticGRPOTrainer

    script = ["Two looks.\n" + call(family, "zoom", {"bbox_2d": [0, 0, 100, 100]}) + "\n"
              + call(family, "zoom", {"bbox_2d": [50, 60, 200, 190]}), "<answer>red</answer>"]
    args = AgenticGRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2, max_completion_length=600,
        max_turns=2, report_to="none", use_cpu=True, bf16=False, log_trajectories_steps=0, protocol="hermes",
    )
    unused = Dataset.from_list([{"prompt": [{"role": "user", "content": "unused"}], "answer": "red"}] * 2)
    trainer = AgenticGRPOTrainer(model=tiny_model_dirs[family], reward_funcs=[lambda completions, **_: [0.0] * 2],
                                 args=args, train_dataset=unused, tools=[ZoomTool(min_side=56, max_side=112)])
    tokenizer = trainer.processing_class.tokenizer

    def forced_generation(requests, max_new_tokens):
        forced = [tokenizer(script[r.turn], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                  for r in requests]
        return trainer._turn_generator.generate(trainer.model, requests, max_new_tokens, forced_ids=forced)

    trainer.rollout_engine.generate = forced_generation
    row = {"prompt": [{"role": "user", "content": "What color is the square?"}],
           "images": [make_zoom_example(random.Random(7))["image"]], "answer": "red"}
    batch = trainer._generate_and_score_completions([dict(row), dict(row)])
    # The box [0, 0, 100, 100] in the family's frame: pixels of the 224x224 image for Qwen2.5-VL (a 100 px crop),
    # 0-1000 for Qwen3-VL and Qwen3.5 (a 22 px crop, enlarged to the tool's 56 px minimum).
    crop_side = {"qwen2.5-vl": 100, "qwen3-vl": 56, "qwen3.5": 56}[family]
    for trajectory in trainer._rollout_trajectories:
        assert [turn.action.kind for turn in trajectory.turns] == ["tool", "answer"]
        assert len(trajectory.images) == 3
        assert trajectory.images[1].size == (crop_side, crop_side)
    assert batch["num_images"] == [3, 3]

    logps = recompute_logps(trainer, batch)
    mask = (batch["completion_mask"] * batch["tool_mask"]).bool()
    assert mask.sum() > 30
    assert (logps - batch["sampling_per_token_logps"]).abs()[mask].max().item() < 1e-3


@pytest.mark.parametrize("family", ["qwen3-vl", "qwen3.5"])
def test_cli_eval_and_viewer_with_hermes(family, tiny_model_dirs, tmp_path):
    """`agentic-vlm eval --protocol hermes` runs the family's tiny model on the zoom task (real sampling), and the
    viewer renders the run."""
    from pathlib import Path

    from agentic_vlm.cli import main
    from agentic_vlm.eval import read_run, write_html

    root = Path(__file__).parents[1]
    output = tmp_path / "zoom.jsonl"
    main(["eval", "--model", tiny_model_dirs[family], "--dataset", "zoom", "--data-dir", str(root / "data"),
          "--protocol", "hermes", "--limit", "2", "--batch-size", "2", "--max-turns", "2",
          "--max-completion-length", "48", "--temperature", "1.0", "--skip-no-tools-pass",
          "--output", str(output)])
    records = read_run(output)
    assert len(records) == 2 and all(record["turns"] and record["num_model_tokens"] > 0 for record in records)
    page = Path(write_html(output, tmp_path / "run.html")).read_text()
    assert records[0]["id"] in page
