"""Does training teach the tiny model to use the zoom tool? Mean reward on held-out items before and after GRPO.

1. Build the tiny Qwen2.5-VL (small vocabulary) from scratch.
2. Supervised warm start on the reference trajectories of the shipped zoom task (the tool runs live).
3. Evaluate: greedy rollouts on the held-out split, tools live; reward = accuracy of the final answer (0/1).
4. GRPO with AgenticGRPOTrainer (accuracy + a small format reward).
5. Evaluate again.

The question names a cell of a 3x3 grid of coloured cells by its box in pixels; the answer is the cell's colour.
Answering from the whole image would need the model to ground pixel coordinates; zooming into the box shows one
colour. The figures also split held-out accuracy by whether the trajectory zoomed into the right box.

    python bench/learning.py [--warmstart-steps 100] [--grpo-steps 100] [--data data/zoom]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from agentic_vlm import AgenticGRPOConfig, AgenticGRPOTrainer, ArftProtocol, ZoomTool
from agentic_vlm.data import load_jsonl_dataset
from agentic_vlm.eval import rollout_dataset
from agentic_vlm.rewards import build_reward_funcs
from agentic_vlm.tiny import make_tiny_model
from agentic_vlm.warmstart import supervised_warm_start

MAX_TURNS = 3
MAX_COMPLETION_LENGTH = 128


def evaluate(model, processor, protocol, tools, dataset, accuracy) -> dict[str, float]:
    scores, zoomed_right = [], []
    for rows, trajectories in rollout_dataset(model, processor, protocol, tools, dataset, batch_size=32,
                                              max_turns=MAX_TURNS, max_completion_length=MAX_COMPLETION_LENGTH,
                                              progress=False):
        completions = [t.completion_messages() for t in trajectories]
        scores += accuracy(prompts=None, completions=completions, answer=[row["answer"] for row in rows])
        for row, t in zip(rows, trajectories, strict=True):
            first = t.turns[0].action
            zoomed_right.append(first.kind == "tool" and first.argument.replace(" ", "") ==
                                str(row["box"]).replace(" ", ""))
    right = [s for s, z in zip(scores, zoomed_right, strict=True) if z]
    wrong = [s for s, z in zip(scores, zoomed_right, strict=True) if not z]
    return {
        "reward": sum(scores) / len(scores),
        "zoomed_right_box": sum(zoomed_right) / len(zoomed_right),
        "accuracy_when_zoomed_right": sum(right) / len(right) if right else float("nan"),
        "accuracy_otherwise": sum(wrong) / len(wrong) if wrong else float("nan"),
    }


def show(label: str, figures: dict[str, float]) -> None:
    print(f"{label:>18}: " + "  ".join(f"{key} {value:.3f}" for key, value in figures.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/zoom")
    parser.add_argument("--warmstart-steps", type=int, default=100)
    parser.add_argument("--grpo-steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    train = load_jsonl_dataset(f"{args.data}/train.jsonl")
    test = load_jsonl_dataset(f"{args.data}/test.jsonl")
    protocol, tools = ArftProtocol(), [ZoomTool()]
    accuracy, format_reward = build_reward_funcs(["accuracy", "format"], protocol, tools)

    with tempfile.TemporaryDirectory() as workdir:
        make_tiny_model(f"{workdir}/model", vocab="small", seed=args.seed)
        processor = AutoProcessor.from_pretrained(f"{workdir}/model")
        model = AutoModelForImageTextToText.from_pretrained(f"{workdir}/model")

        supervised_warm_start(model, processor, protocol, tools, train, steps=args.warmstart_steps,
                              learning_rate=3e-3, batch_size=16, seed=args.seed)
        before = evaluate(model, processor, protocol, tools, test, accuracy)
        show("after warm start", before)
        warm_seconds = time.perf_counter() - start

        config = AgenticGRPOConfig(
            output_dir=f"{workdir}/grpo", max_steps=args.grpo_steps, learning_rate=1e-4, lr_scheduler_type="constant",
            per_device_train_batch_size=32, num_generations=8, max_completion_length=MAX_COMPLETION_LENGTH,
            max_turns=MAX_TURNS, temperature=1.0, beta=0.0, reward_weights=[1.0, 0.2], logging_steps=10,
            report_to="none", use_cpu=True, bf16=False, save_strategy="no", log_trajectories_steps=0,
            seed=args.seed,
        )
        trainer = AgenticGRPOTrainer(model=model, reward_funcs=[accuracy, format_reward], args=config,
                                     train_dataset=train, processing_class=processor, tools=tools, protocol=protocol)
        trainer.train()
        after = evaluate(trainer.model, processor, protocol, tools, test, accuracy)
        show("after GRPO", after)

    total = time.perf_counter() - start
    print(f"\nheld-out reward: {before['reward']:.3f} -> {after['reward']:.3f} "
          f"(+{after['reward'] - before['reward']:.3f}) on {len(test)} items; "
          f"warm start + first eval {warm_seconds:.0f} s, total {total:.0f} s")


if __name__ == "__main__":
    main()
