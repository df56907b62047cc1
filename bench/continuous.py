"""Continuous multi-turn rollouts against turn-synchronous ones, same workload, one run, on vLLM colocated (CPU build).

Every trajectory makes ``--turns - 1`` tool calls and then a last turn. Generation lengths and tool latencies are
heavy-tailed and seeded per (trajectory, turn), so both schedules see exactly the same workload: a turn writes a
lognormal number of tokens (median ``--median_tokens``, sigma 1.2: p99 about 16x the median; end-of-sequence is
ignored, no stop token), a tool call waits a lognormal time (median 100 ms, sigma 1.29: p99 about 2 s). The tiny random Qwen2.5-VL
is the model; the prompts are text.

Turn-synchronous: every turn waits for the slowest generation of the batch, then for the slowest tool. Continuous:
each trajectory runs its own generate -> tool -> generate loop while the engine batches whatever requests it holds.
Prints wall time, the engine's idle fraction (the share of the rollout's wall time with no step running) and, last,
the ratio of the two wall times.

    VLLM_CPU_KVCACHE_SPACE=1 python bench/continuous.py [--trajectories 32] [--turns 4] [--median_tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import tempfile
import time
from pathlib import Path

from agentic_vlm.families import family_of
from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.protocols.base import Action
from agentic_vlm.rollout import RolloutEngine, SamplingSettings
from agentic_vlm.rollout.vllm import ColocateTurnGenerator, image_processor_settings
from agentic_vlm.tiny import make_tiny_model
from agentic_vlm.tools.base import Observation, Tool


def draw(seed: int, trajectory: int, turn: int, kind: str) -> random.Random:
    return random.Random(f"{seed}-{trajectory}-{turn}-{kind}")


class WaitTool(Tool):
    """Waits a heavy-tailed time (median 100 ms, p99 about 2 s), seeded per trajectory and turn."""

    name = "wait"
    description = "[anything]: waits"

    def __init__(self, seed: int):
        self.seed = seed

    async def __call__(self, argument, context):
        seconds = draw(self.seed, context.row["index"], context.turn, "tool").lognormvariate(math.log(0.1), 1.29)
        await asyncio.sleep(seconds)
        return Observation(text=f"waited {seconds:.3f} s")


class WaitEveryTurn(ArftProtocol):
    """Every turn calls the wait tool: the workload's shape does not depend on what the random model writes."""

    def stop_strings(self, tools):
        return []

    def parse_action(self, text, tools):
        return Action(kind="tool", name="wait", argument="")


class FixedLengthTurns(ColocateTurnGenerator):
    """Each turn writes exactly its drawn number of tokens (end-of-sequence ignored)."""

    def __init__(self, *args, seed: int, median_tokens: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed, self.median_tokens = seed, median_tokens

    def sampling_params(self, max_tokens: int) -> dict:
        return {**super().sampling_params(max_tokens), "ignore_eos": True}

    def with_length(self, request):
        length = round(draw(self.seed, request.row["index"], request.turn, "length").lognormvariate(
            math.log(self.median_tokens), 1.2))
        request.max_new_tokens = max(1, min(request.max_new_tokens, length))
        return request

    def __call__(self, requests, max_new_tokens):
        return super().__call__([self.with_length(r) for r in requests], max_new_tokens)

    async def generate_one(self, request):
        return await super().generate_one(self.with_length(request))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=32)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--median_tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    from transformers import AutoConfig, AutoProcessor
    from trl.trainer.utils import ensure_master_addr_port
    from vllm import LLM, SamplingParams

    ensure_master_addr_port()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(make_tiny_model(Path(tmp) / "model", vocab="small"))
        processor = AutoProcessor.from_pretrained(model_dir)
        # As the trainer starts it (vllm_engine.py): in-process, fp32, the sampled tokens' processed log-probs.
        llm = LLM(model=model_dir, dtype="float32", max_model_len=4096, max_num_seqs=args.trajectories,
                  max_num_batched_tokens=4096, logprobs_mode="processed_logprobs", seed=args.seed,
                  mm_processor_kwargs=image_processor_settings(processor),
                  distributed_executor_backend="external_launcher")
        family = family_of(AutoConfig.from_pretrained(model_dir))
        tools = [WaitTool(args.seed)]
        generator = FixedLengthTurns(lambda: llm, processor, family, SamplingSettings(), [], [], seed=args.seed,
                                     median_tokens=args.median_tokens)
        prompts = [[{"role": "user", "content": f"Question {index}: what do you see?"}]
                   for index in range(args.trajectories)]
        rows = [{"index": index} for index in range(args.trajectories)]

        # Warm-up outside the timings: vLLM compiles its graphs on the first batches it sees.
        warm = [{"prompt_token_ids": processor.tokenizer(p[0]["content"])["input_ids"]} for p in prompts]
        llm.generate(warm, SamplingParams(**generator.sampling_params(64)), use_tqdm=False)
        results = {}
        for name, continuous in (("turn-synchronous", False), ("continuous", True)):
            engine = RolloutEngine(processor, WaitEveryTurn(), tools, generator, max_turns=args.turns,
                                   max_completion_length=2048, max_context_length=4096,
                                   generate_one=generator.generate_one if continuous else None)
            generator.busy_seconds = 0.0
            start = time.perf_counter()
            trajectories = engine.run(prompts, rows)
            wall = time.perf_counter() - start
            engine.close()
            results[name] = {
                "wall": wall,
                "idle": 1.0 - generator.busy_seconds / wall,
                "tokens": sum(sum(t.tool_mask) for t in trajectories),
                "tool_seconds": sum(turn.tool_seconds for t in trajectories for turn in t.turns),
                "turns": sum(len(t.turns) for t in trajectories),
            }

    print(f"{args.trajectories} trajectories x {args.turns} turns, tiny Qwen2.5-VL on vLLM's CPU build (fp32); "
          f"turn lengths lognormal (median {args.median_tokens} tokens, sigma 1.2), tool latency lognormal "
          "(median 100 ms, sigma 1.29)")
    print(f"{'':36}{'turn-synchronous':>18}{'continuous':>12}")
    for label, key, fmt in (("rollout wall time (s)", "wall", "{:.2f}"), ("engine idle fraction", "idle", "{:.2f}"),
                            ("model tokens (same workload)", "tokens", "{:d}"), ("turns", "turns", "{:d}"),
                            ("tool seconds, summed", "tool_seconds", "{:.1f}")):
        row = [fmt.format(results[name][key]) for name in ("turn-synchronous", "continuous")]
        print(f"{label:36}{row[0]:>18}{row[1]:>12}")
    ratio = results["continuous"]["wall"] / results["turn-synchronous"]["wall"]
    print(f"continuous/turn-synchronous rollout wall time: {ratio:.2f}")


if __name__ == "__main__":
    main()
