"""``agentic-vlm``: train, evaluate, view trajectories, build the tiny offline model, and generate the synthetic data.

    agentic-vlm train RECIPE.yaml [--key value ...]    # YAML keys are config fields; command-line values win
    agentic-vlm eval --model PATH --dataset NAME|FILE [--tools zoom,search,code] [--output RUN.jsonl] ...
    agentic-vlm view RUN.jsonl [-o RUN.html]
    agentic-vlm make-tiny-model OUT [--vocab small|real] [--seed 0]
    agentic-vlm make-data zoom|search|coding OUT [--train N] [--test N] [--seed 0]

``train`` runs under ``torchrun`` and ``accelerate launch`` as it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import AgenticGRPOConfig
from .families import FAMILIES

# The generators of `make-data`, imported when used.
SYNTHETIC_TASKS = {
    "zoom": "agentic_vlm.data.synthetic:write_zoom_dataset",
    "search": "agentic_vlm.data.search_task:write_search_dataset",
    "coding": "agentic_vlm.data.coding_task:write_coding_dataset",
    "refocus": "agentic_vlm.data.refocus:write_refocus_dataset",
}


@dataclass
class TrainScriptArguments:
    """Recipe keys that are not trainer settings: the data, the processor's image resolution, the warm start."""

    train_file: str = field(
        metadata={"help": "Data to train on: a JSONL task file, a MAT training file or a ReFOCUS parquet file."}
    )
    eval_file: str | None = field(default=None, metadata={"help": "Data for TRL's periodic evaluation (same formats)."})
    min_pixels: int | None = field(default=None, metadata={"help": "Smallest image area the processor keeps."})
    max_pixels: int | None = field(
        default=None, metadata={"help": "Largest image area the processor keeps (Visual-ARFT uses 401408)."}
    )
    warmstart_steps: int = field(
        default=0, metadata={"help": "Supervised steps on the data's reference `solution` turns before GRPO."}
    )
    warmstart_learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate of the warm start."})
    warmstart_batch_size: int = field(default=8, metadata={"help": "Batch size of the warm start."})


def _require_model_extras(model_args) -> None:
    """Fail early, naming the extra to install, when a recipe asks for an optional heavy dependency of the model
    (the trainer's own, vLLM and DeepSpeed, are checked by ``AgenticGRPOConfig``)."""
    wanted = [
        ("flash_attn", "flash-attn", model_args.attn_implementation == "flash_attention_2"),
        ("peft", "peft", model_args.use_peft),
    ]
    for module, extra, needed in wanted:
        if needed and importlib.util.find_spec(module) is None:
            raise ImportError(f"this recipe needs {module}; install it with: pip install 'agentic-vlm[{extra}]'")


def train(argv: list[str]) -> None:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import ModelConfig, TrlParser, get_peft_config

    from .eval.benchmarks import load_benchmark
    from .protocols import get_protocol
    from .tools import build_tools
    from .trainer import AgenticGRPOTrainer
    from .warmstart import supervised_warm_start

    if not argv or argv[0].startswith("-"):
        raise SystemExit("usage: agentic-vlm train RECIPE.yaml [--key value ...]")
    parser = TrlParser((TrainScriptArguments, AgenticGRPOConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config(args=["--config", argv[0], *argv[1:]])
    _require_model_extras(model_args)
    if script_args.warmstart_steps and training_args.deepspeed:
        # DeepSpeed shards the model as it loads (ZeRO-3); the warm start runs before the trainer, outside it.
        raise ValueError("warmstart_steps runs outside DeepSpeed: warm start without `deepspeed`, then train from the "
                         "saved model with warmstart_steps: 0")
    if training_args.deepspeed and training_args.use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import deepspeed

        deepspeed.init_distributed("gloo")  # CPU ranks: before the model loads, or DeepSpeed picks NCCL

    image_kwargs = {k: v for k, v in (("min_pixels", script_args.min_pixels), ("max_pixels", script_args.max_pixels))
                    if v is not None}
    processor = AutoProcessor.from_pretrained(model_args.model_name_or_path, **image_kwargs)
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    model = AutoModelForImageTextToText.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        dtype=dtype,
        attn_implementation=model_args.attn_implementation,
    )
    # Any file the evaluation reads, recognised by its fields (task JSONL, MAT, ReFOCUS parquet).
    train_dataset = load_benchmark(script_args.train_file).dataset
    eval_dataset = load_benchmark(script_args.eval_file).dataset if script_args.eval_file else None
    protocol = get_protocol(training_args.protocol)
    tools = build_tools(training_args.tools, training_args.tool_kwargs)

    if script_args.warmstart_steps:
        # Every rank runs the same seeded warm start, so the replicas stay identical without communication.
        supervised_warm_start(
            model, processor, protocol, tools, train_dataset,
            steps=script_args.warmstart_steps,
            learning_rate=script_args.warmstart_learning_rate,
            batch_size=script_args.warmstart_batch_size,
            max_completion_length=training_args.max_completion_length,
            seed=training_args.seed,
        )

    trainer = AgenticGRPOTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        tools=tools,
        protocol=protocol,
        peft_config=get_peft_config(model_args),
    )
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(training_args.output_dir)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error.msg}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"code\": {\"timeout_s\": 10}}'")
    return value


def _add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model directory (or hub id) with its processor")
    parser.add_argument("--dataset", required=True,
                        help="a shipped task (zoom, search, coding: data/NAME/test.jsonl) or a dataset file")
    parser.add_argument("--format", default="auto",
                        help="format of a dataset file: auto (from its fields), tasks, mat-search, mat-coding, "
                             "mat-training")
    parser.add_argument("--image-root", help="folder of a MAT file's images (default: beside the file)")
    parser.add_argument("--data-dir", default="data", help="where the shipped tasks are")
    parser.add_argument("--limit", type=_positive, help="evaluate the first N items only")
    parser.add_argument("--tools", type=_names, help="comma-separated tools (default: the benchmark's)")
    parser.add_argument("--tool-kwargs", type=_json_object, default={},
                        help="JSON: constructor arguments per tool, laid over the benchmark's option by option")
    parser.add_argument("--metrics", type=_names, help="comma-separated metrics (default: the benchmark's): "
                                                       "accuracy, exact_match, f1, f1_set")
    parser.add_argument("--rewards", type=_names, default=["format"],
                        help="reward functions also recorded per item (comma-separated; '' for none)")
    parser.add_argument("--reward-kwargs", type=_json_object, default={}, help="JSON: options per reward function")
    parser.add_argument("--output", help="the run's JSONL (default: outputs/eval/DATASET-MODEL.jsonl); "
                                         "re-running with the same output resumes it")
    parser.add_argument("--protocol", help="arft, vtool... (default: the benchmark's)")
    parser.add_argument("--system-prompt", help="replaces the protocol's system prompt")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=1024,
                        help="tokens after the prompt: all turns and observations together")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy decoding")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--tool-timeout", type=float, default=60.0)
    parser.add_argument("--min-pixels", type=int)
    parser.add_argument("--max-pixels", type=int)
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--seed", type=int, default=0)


def evaluate_command(args: argparse.Namespace) -> None:
    import torch

    from .eval import evaluate, load_benchmark, load_for_inference, summary_path
    from .protocols import get_protocol
    from .rewards import build_reward_funcs
    from .rollout import SamplingSettings
    from .tools import build_tools

    benchmark = load_benchmark(args.dataset, args.format, args.image_root, args.data_dir)
    if args.limit is not None:
        benchmark.dataset = benchmark.dataset.select(range(min(args.limit, len(benchmark.dataset))))
    tool_names = args.tools if args.tools is not None else list(benchmark.tools)
    if not tool_names:
        raise SystemExit(f"name the tools for {args.dataset} with --tools (zoom, search, code)")
    unused = sorted(set(args.tool_kwargs) - set(tool_names))
    if unused:
        raise SystemExit(f"--tool-kwargs has options for {unused}, which are not among the tools {tool_names}")
    # The user's options for a tool are laid over the benchmark's (the shipped search task's corpus, say).
    tools = build_tools(tool_names, {
        name: {**benchmark.tool_kwargs.get(name, {}), **args.tool_kwargs.get(name, {})} for name in tool_names
    })
    protocol = get_protocol(args.protocol or benchmark.protocol)
    reward_funcs = build_reward_funcs(args.rewards, protocol, tools, args.reward_kwargs)

    torch.manual_seed(args.seed)
    model, processor = load_for_inference(args.model, dtype=args.dtype, device=args.device,
                                          min_pixels=args.min_pixels, max_pixels=args.max_pixels)
    sampling = (SamplingSettings(do_sample=False) if args.temperature == 0
                else SamplingSettings(temperature=args.temperature, top_p=args.top_p))
    output = args.output or f"outputs/eval/{benchmark.name}-{Path(args.model).name}.jsonl"
    run_info = {"model": args.model, "protocol": protocol.name, "tools": tool_names, "max_turns": args.max_turns,
                "max_completion_length": args.max_completion_length, "temperature": args.temperature,
                "sampling": dataclasses.asdict(sampling)}
    # The model's generation_config.json is not used: these are the settings.
    print(sampling.describe(), flush=True)
    summary = evaluate(
        model, processor, protocol, tools, benchmark, output,
        metrics=args.metrics, reward_funcs=reward_funcs, run_info=run_info,
        batch_size=args.batch_size, max_turns=args.max_turns, max_completion_length=args.max_completion_length,
        sampling=sampling, tool_timeout=args.tool_timeout, system_prompt=args.system_prompt,
    )
    print(_summary_table(summary))
    print(f"trajectories: {output}\nsummary: {summary_path(output)}\n"
          f"view them with: agentic-vlm view {output}")


def _summary_table(summary: dict) -> str:
    from .eval.metrics import summary_rows

    columns = ["count", "answered", *summary["metrics"], "tool_calls"]
    rows = summary_rows(summary)
    width = max(len(label) for label, _ in rows)
    lines = [" " * width + "".join(f"{column:>13}" for column in columns)]
    for label, figures in rows:
        cells = "".join(f"{figures[column]:>13.3f}" if isinstance(figures[column], float) else f"{figures[column]:>13}"
                        for column in columns)
        lines.append(f"{label:<{width}}{cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="agentic-vlm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="train with a recipe (YAML keys are config fields)", add_help=False)

    tiny = commands.add_parser("make-tiny-model", help="build a tiny random Qwen2.5-VL and its processor, offline")
    tiny.add_argument("output_dir")
    tiny.add_argument("--vocab", choices=["small", "real"],
                      help="small (default): a ~600-token BPE for fast tests; real: the Qwen2 vocabulary")
    tiny.add_argument("--like", choices=sorted(name for family in FAMILIES.values() for name in family.checkpoints),
                      help="carry this released checkpoint's generation and processor settings, eos ids and "
                           "vocabulary (real pixel limits: slow on a CPU)")
    tiny.add_argument("--seed", type=int, default=0)

    evaluation = commands.add_parser("eval", help="evaluate a model on a benchmark with the training rollout engine")
    _add_eval_arguments(evaluation)

    view = commands.add_parser("view", help="write a self-contained HTML page of a run's trajectories")
    view.add_argument("run", help="the JSONL of `agentic-vlm eval` (or a trainer's trajectories.jsonl)")
    view.add_argument("-o", "--output", help="the page (default: RUN.html)")

    data = commands.add_parser("make-data", help="generate a synthetic task (deterministic by seed)")
    data.add_argument("task", choices=list(SYNTHETIC_TASKS))
    data.add_argument("output_dir")
    data.add_argument("--train", type=int, help="training examples (default: the task's)")
    data.add_argument("--test", type=int, help="held-out examples (default: the task's)")
    data.add_argument("--seed", type=int, default=0)

    if argv and argv[0] == "train":  # everything after the recipe belongs to the recipe parser
        train(argv[1:])
        return
    args = parser.parse_args(argv)
    if args.command == "make-tiny-model":
        from .tiny import make_tiny_model

        print(make_tiny_model(args.output_dir, vocab=args.vocab, seed=args.seed, like=args.like))
    elif args.command == "eval":
        evaluate_command(args)
    elif args.command == "view":
        from .eval import write_html

        print(write_html(args.run, args.output))
    elif args.command == "make-data":
        module_name, function_name = SYNTHETIC_TASKS[args.task].split(":")
        write = getattr(importlib.import_module(module_name), function_name)
        counts = {key: value for key, value in (("num_train", args.train), ("num_test", args.test)) if value is not None}
        print(write(args.output_dir, seed=args.seed, **counts))


if __name__ == "__main__":
    main()
