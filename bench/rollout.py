"""Training step of AgenticGRPOTrainer against TRL's built-in ``tools=`` loop, side by side, same scripted workload.

Both trainers train the same tiny model on the same prompts: the text decoder of the tiny Qwen2.5-VL (same sizes,
same small vocabulary) as a Qwen2 causal LM, because TRL's tool loop does not handle a vision-language model driven
by a plain tokenizer, and its stock Qwen2.5-VL chat template cannot call tools. Generation is scripted in both (each trajectory makes
three tool calls, then answers), so the comparison measures what differs: the turn loop, the tool dispatch and the
training step around them. The tool waits ``--delays`` milliseconds (0: pure overhead; 100: a slow web search).

TRL runs the tool calls of a turn one sample after another; the rollout engine runs them concurrently, so its tool
wall time per turn should stay near one call's latency whatever the number of trajectories.

    python bench/rollout.py [--trajectories 16] [--steps 3] [--delays 0 100]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import json
import statistics
import tempfile
import time

import torch
from datasets import Dataset
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
from trl import GRPOConfig, GRPOTrainer

from agentic_vlm import AgenticGRPOConfig, AgenticGRPOTrainer, Observation, Tool
from agentic_vlm.rollout import ScriptedTurnGenerator
from agentic_vlm.tiny import make_tiny_model

TOOL_TURNS = 3
ANSWER = "<think>I have all I need.</think>\n<answer>42</answer>"


def ours_turn(turn: int) -> str:
    return f"<think>Step {turn}: I look it up.</think>\n<wait>{turn}</wait>" if turn < TOOL_TURNS else ANSWER


def trl_turn(turn: int) -> str:
    if turn < TOOL_TURNS:
        call = json.dumps({"name": "wait", "arguments": {"step": turn}})
        return f"<think>Step {turn}: I look it up.</think>\n<tool_call>\n{call}\n</tool_call><|im_end|>"
    return ANSWER + "<|im_end|>"


class WaitTool(Tool):
    name = "wait"
    description = "step: wait for a slow service"

    def __init__(self, delay: float):
        self.delay = delay

    async def __call__(self, argument, context):
        await asyncio.sleep(self.delay)
        return Observation(text=f"result of step {argument}")


def reward(completions, **kwargs):
    return [float(i % 2) for i in range(len(completions))]  # varied, so that the loss is not trivially zero


def text_tokenizer(model_dir: str):
    """The tiny model's tokenizer with TRL's Qwen2.5 chat template, which TRL's tool loop can parse."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = (importlib.resources.files("trl") / "chat_templates" / "qwen2_5.jinja").read_text()
    return tokenizer


def make_text_model(output_dir: str) -> str:
    """The tiny model's tokenizer with a text-only decoder of the tiny model's sizes."""
    make_tiny_model(output_dir, vocab="small")
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    text_config = json.loads(open(f"{output_dir}/config.json").read())["text_config"]
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "max_position_embeddings", "vocab_size")
    model = Qwen2ForCausalLM(Qwen2Config(**{key: text_config[key] for key in keys},
                                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(output_dir)
    return output_dir


def common_args(output_dir: str, trajectories: int, steps: int) -> dict:
    return dict(
        output_dir=output_dir, per_device_train_batch_size=trajectories, num_generations=4, max_steps=steps,
        max_completion_length=512, learning_rate=1e-5, report_to="none", use_cpu=True, bf16=False,
        save_strategy="no", logging_steps=1, disable_tqdm=True,
    )


def run_trl(model_dir: str, trajectories: int, steps: int, delay: float) -> float:
    calls = []

    async def wait(step: int) -> str:
        """Wait for a slow service.

        Args:
            step: The step number.
        """
        calls.append(step)
        await asyncio.sleep(delay)
        return f"result of step {step}"

    tokenizer = text_tokenizer(model_dir)

    class ScriptedTRL(GRPOTrainer):
        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
            texts = tokenizer.batch_decode(prompt_ids)
            ids = [tokenizer(trl_turn(text.count("<tool_response>")), add_special_tokens=False)["input_ids"]
                   for text in texts]
            return ids, None

    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": f"Question {i}?"}]} for i in range(64)])
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = ScriptedTRL(model=model_dir, reward_funcs=[reward], processing_class=tokenizer, tools=[wait],
                              args=GRPOConfig(**common_args(output_dir, trajectories, steps)), train_dataset=dataset)
        step_time = timed_train(trainer)
        expected = TOOL_TURNS * trajectories * steps
        assert len(calls) == expected, f"TRL's loop made {len(calls)} tool calls, not {expected}"
        return step_time


def run_ours(model_dir: str, trajectories: int, steps: int, delay: float) -> tuple[float, list[float]]:
    tokenizer = text_tokenizer(model_dir)
    tool = WaitTool(delay)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": f"Question {i}?"}]} for i in range(64)])
    with tempfile.TemporaryDirectory() as output_dir:
        args = AgenticGRPOConfig(**common_args(output_dir, trajectories, steps), max_turns=TOOL_TURNS + 1,
                                 log_trajectories_steps=0)
        trainer = AgenticGRPOTrainer(model=model_dir, reward_funcs=[reward], processing_class=tokenizer, tools=[tool],
                                     args=args, train_dataset=dataset)
        trainer.rollout_engine.generate = ScriptedTurnGenerator(
            tokenizer, trainer.protocol.stop_strings([tool]), lambda request: ours_turn(request.turn)
        )
        wall_times = []
        run = trainer.rollout_engine.run

        def recording_run(*args, **kwargs):
            trajectories_ = run(*args, **kwargs)
            wall_times.extend(trainer.rollout_engine.tool_wall_seconds)
            assert all(len(t.turns) == TOOL_TURNS + 1 for t in trajectories_), "the script must run every turn"
            return trajectories_

        trainer.rollout_engine.run = recording_run
        return timed_train(trainer), wall_times


def timed_train(trainer) -> float:
    """Mean seconds per training step, the first (warm-up) step left out."""
    times = []

    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.start)

    trainer.add_callback(StepTimer())
    trainer.train()
    return statistics.mean(times[1:]) if len(times) > 1 else times[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--delays", type=float, nargs="+", default=[0.0, 100.0], help="tool latency, ms")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as model_dir:
        make_text_model(model_dir)
        print(f"{args.trajectories} trajectories, {TOOL_TURNS} tool turns + 1 answer turn each, "
              f"{args.steps} steps (first left out)\n")
        print(f"{'tool ms':>8} {'TRL s/step':>11} {'ours s/step':>12} {'speed-up':>9} {'ours tool wall/turn':>20}")
        for delay_ms in args.delays:
            delay = delay_ms / 1000
            trl_step = run_trl(model_dir, args.trajectories, args.steps, delay)
            our_step, wall = run_ours(model_dir, args.trajectories, args.steps, delay)
            wall_ms = 1000 * statistics.median(wall)
            ratio = f"({wall_ms / delay_ms:.2f}x one call)" if delay_ms else ""
            print(f"{delay_ms:8.0f} {trl_step:11.3f} {our_step:12.3f} {trl_step / our_step:8.2f}x "
                  f"{wall_ms:9.1f} ms {ratio}")


if __name__ == "__main__":
    main()
