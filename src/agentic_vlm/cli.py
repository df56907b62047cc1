"""``agentic-vlm``: train, evaluate, view trajectories, build the tiny offline model, and generate the synthetic data.

    agentic-vlm train RECIPE.yaml [--key value ...]    # `agentic-vlm train --help` lists every key
    agentic-vlm eval --model PATH --dataset NAME|FILE [--tools zoom,search,code] [--output RUN.jsonl] ...
    agentic-vlm view RUN.jsonl [-o RUN.html]
    agentic-vlm make-tiny-model OUT [--vocab small|real] [--seed 0]
    agentic-vlm make-data zoom|search|coding|refocus OUT [--variant full|tiny] [--train N] [--test N] [--seed 0]

An error is one line on stderr and a non-zero exit; `--debug` (any command) adds the traceback.
``train`` runs under ``torchrun`` and ``accelerate launch`` as it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import inspect
import json
import logging
import os
import sys
import traceback
from pathlib import Path

# Nothing heavy at module level: `--help` must answer at once. Commands import what they use.

# The generators of `make-data`, imported when used.
SYNTHETIC_TASKS = {
    "zoom": "agentic_vlm.data.synthetic:write_zoom_dataset",
    "search": "agentic_vlm.data.search_task:write_search_dataset",
    "coding": "agentic_vlm.data.coding_task:write_coding_dataset",
    "refocus": "agentic_vlm.data.refocus:write_refocus_dataset",
}


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


def load_training_data(file: str, script_args):
    """A training or evaluation file, any format the evaluation reads, with every image checked up front."""
    from .eval.benchmarks import load_benchmark

    return load_benchmark(file, skip_bad_rows=script_args.skip_bad_rows,
                          max_image_pixels=script_args.max_image_pixels).dataset


def train(argv: list[str]) -> None:
    from .recipe import check_model_exists, find_checkpoint, parse_recipe, train_help

    if "--help" in argv or "-h" in argv:
        print(train_help())
        return
    if not argv or argv[0].startswith("-"):
        raise UsageError("usage: agentic-vlm train RECIPE.yaml [--key value ...]; `agentic-vlm train --help` lists "
                         "the keys")
    # Everything that can be checked is checked before a model loads: keys, names, ranges (parse_recipe), the model
    # path, the checkpoint to resume, the data and its images, the tools and their options.
    script_args, training_args, model_args = parse_recipe(argv[0], argv[1:])
    _require_model_extras(model_args)
    check_model_exists(model_args.model_name_or_path)
    checkpoint = find_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    if script_args.warmstart_steps and training_args.deepspeed and not checkpoint:
        # DeepSpeed shards the model as it loads (ZeRO-3); the warm start runs before the trainer, outside it.
        raise ValueError("warmstart_steps runs outside DeepSpeed: warm start without `deepspeed`, then train from the "
                         "saved model with warmstart_steps: 0")
    # With a KL term (beta > 0) the reference model is the warm-started one, kept here for a resumed run.
    warm_start_dir = Path(training_args.output_dir) / "warmstart"
    needs_warm_reference = bool(script_args.warmstart_steps and training_args.beta and not model_args.use_peft)
    if checkpoint and needs_warm_reference and not warm_start_dir.is_dir():
        raise ValueError(f"{checkpoint} is resumed with a warm start and beta {training_args.beta}, but the warm-started "
                         f"reference model, {warm_start_dir}, is missing (a run saves it when beta > 0)")
    train_dataset = load_training_data(script_args.train_file, script_args)
    eval_dataset = load_training_data(script_args.eval_file, script_args) if script_args.eval_file else None

    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
    from trl import get_peft_config

    from .protocols import get_protocol
    from .tools import build_tools
    from .trainer import AgenticGRPOTrainer
    from .warmstart import supervised_warm_start

    # hermes reads tool calls in the format of the model's family
    protocol = get_protocol(training_args.protocol, family=AutoConfig.from_pretrained(model_args.model_name_or_path))
    tools = build_tools(training_args.tools, training_args.tool_kwargs)
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

    if checkpoint:
        # The checkpoint holds the weights after the warm start and the GRPO steps since; running it again would
        # only be overwritten.
        print(f"resuming from {checkpoint} (the warm start is not run again)", flush=True)
    elif script_args.warmstart_steps:
        # Every rank runs the same seeded warm start, so the replicas stay identical without communication.
        supervised_warm_start(
            model, processor, protocol, tools, train_dataset,
            steps=script_args.warmstart_steps,
            learning_rate=script_args.warmstart_learning_rate,
            lr_scheduler_type=script_args.warmstart_lr_scheduler_type,
            batch_size=script_args.warmstart_batch_size,
            max_completion_length=training_args.max_completion_length,
            seed=training_args.seed,
            system_prompt=training_args.system_prompt,
        )
        if needs_warm_reference and int(os.environ.get("RANK", "0")) == 0:
            model.save_pretrained(warm_start_dir)
            processor.save_pretrained(warm_start_dir)

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
    if needs_warm_reference:  # (with PEFT, TRL's reference is the base model with the adapter off: the warm start's)
        trainer.set_reference(AutoModelForImageTextToText.from_pretrained(warm_start_dir, dtype=dtype) if checkpoint
                              else model)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(training_args.output_dir)
    # A process group left to interpreter shutdown can abort a finished rank there ("terminate called without an
    # active exception", SIGABRT, seen once in CI after "done"), and torchrun then reports the run as failed.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


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
    parser.add_argument("--model", required=True, help="model folder (or hub id) with its processor")
    parser.add_argument("--dataset", required=True,
                        help="a shipped task (zoom, search, coding, refocus, search-tiny, coding-tiny, refocus-tiny: "
                             "DATA_DIR/NAME/test.jsonl), a published "
                             "benchmark (vstar: DATA_DIR/vstar_bench/, hrbench4k, hrbench8k: "
                             "DATA_DIR/hr_bench_4k.tsv, DATA_DIR/hr_bench_8k.tsv) or a dataset file or folder")
    parser.add_argument("--format", default="auto",
                        help="format of a dataset file: auto (from its fields), tasks, mat-search, mat-coding, "
                             "mat-training, refocus, vstar, hrbench")
    parser.add_argument("--image-root", help="folder of a MAT file's images (default: beside the file)")
    parser.add_argument("--data-dir", default="data", help="where the shipped tasks are")
    parser.add_argument("--limit", type=_positive, help="evaluate the first N items only (default: all)")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="leave out the records that fail validation (a field, or an image that cannot be used), "
                             "reported with a count and the first reasons, instead of stopping at the first")
    parser.add_argument("--max-image-pixels", type=_positive, default=89_478_485,
                        help="a row with a larger image (width x height) is a bad row")
    parser.add_argument("--tools", type=_names, help="comma-separated tools (default: the benchmark's)")
    parser.add_argument("--no-tools", action="store_true",
                        help="run without any tool (one pass: the baseline alone)")
    parser.add_argument("--skip-no-tools-pass", action="store_true",
                        help="run the items with tools only; by default a run with tools also runs them without "
                             "(RUN.no-tools.jsonl, resumed like the run) and its summary adds tool_use: the accuracy "
                             "with and without tools, tool gain (right only with tools), tool harm (right only "
                             "without) and the tool-call rate")
    parser.add_argument("--without-tools", metavar="RUN.jsonl",
                        help="compare with this run of the same items made with --no-tools instead of running the "
                             "pass without tools (default: none)")
    parser.add_argument("--tool-kwargs", type=_json_object, default={},
                        help="JSON: constructor arguments per tool, laid over the benchmark's option by option")
    parser.add_argument("--metrics", type=_names, help="comma-separated metrics (default: the benchmark's): "
                                                       "accuracy, exact_match, f1, f1_set")
    parser.add_argument("--rewards", type=_names, default=["format"],
                        help="reward functions also recorded per item (comma-separated; '' for none)")
    parser.add_argument("--reward-kwargs", type=_json_object, default={}, help="JSON: options per reward function")
    parser.add_argument("--output",
                        help="the run's JSONL (default: outputs/eval/DATASET-MODEL-FINGERPRINT-SETTINGS.jsonl, "
                             "unique to the model's weights and the settings); re-running with the same output "
                             "resumes it, and refuses if the model or a setting differs")
    parser.add_argument("--protocol", help="arft, vtool or hermes (default: the benchmark's)")
    parser.add_argument("--system-prompt", help="replaces the protocol's system prompt (default: the protocol's)")
    parser.add_argument("--batch-size", type=_positive, default=16, help="trajectories rolled out together")
    parser.add_argument("--max-turns", type=_positive, default=4,
                        help="assistant turns per trajectory, the answer turn included")
    parser.add_argument("--max-completion-length", type=_positive, default=1024,
                        help="tokens after the prompt: all turns and observations together")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy decoding")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (with --temperature above 0)")
    parser.add_argument("--tool-timeout", type=float, default=60.0,
                        help="seconds one tool call may take before it becomes a timeout observation")
    parser.add_argument("--min-pixels", type=int, help="smallest image area the processor keeps (default: the "
                                                       "model's)")
    parser.add_argument("--max-pixels", type=int, help="largest image area the processor keeps (default: the "
                                                       "model's)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                        help="weights' dtype (auto: the checkpoint's)")
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling")


def _dataset_file(args: argparse.Namespace) -> Path:
    from .eval.benchmarks import PUBLISHED_BENCHMARKS, SHIPPED_TASKS

    if args.dataset in SHIPPED_TASKS and not Path(args.dataset).exists():
        return Path(args.data_dir) / args.dataset / "test.jsonl"
    if args.dataset in PUBLISHED_BENCHMARKS and not Path(args.dataset).exists():
        return Path(args.data_dir) / PUBLISHED_BENCHMARKS[args.dataset][0]
    return Path(args.dataset)


def evaluate_command(args: argparse.Namespace) -> None:
    from transformers import AutoConfig

    from .eval import evaluate, load_benchmark, load_for_inference, no_tools_path, summary_path, write_summary
    from .eval.runner import check_same_settings, file_fingerprint, model_fingerprint, settings_fingerprint
    from .protocols import get_protocol
    from .recipe import check_model_exists
    from .rewards import build_reward_funcs
    from .rollout import SamplingSettings
    from .tools import build_tools

    # Everything that can fail is checked before the model loads: the model path, the data and its images, the
    # tools and rewards, the output to resume.
    check_model_exists(args.model)
    benchmark = load_benchmark(args.dataset, args.format, args.image_root, args.data_dir, args.skip_bad_rows,
                               args.max_image_pixels)
    dataset_file = _dataset_file(args)
    if args.limit is not None:
        benchmark.dataset = benchmark.dataset.select(range(min(args.limit, len(benchmark.dataset))))
    if args.no_tools and (args.tools or args.tool_kwargs):
        raise UsageError("--no-tools runs without tools: leave out --tools and --tool-kwargs")
    if args.without_tools is not None and not Path(args.without_tools).is_file():
        raise UsageError(f"--without-tools {args.without_tools}: no such run (make it with --no-tools)")
    if args.no_tools and (args.without_tools is not None or args.skip_no_tools_pass):
        raise UsageError("--no-tools runs without tools only: leave out --without-tools and --skip-no-tools-pass")
    tool_names = [] if args.no_tools else args.tools if args.tools is not None else list(benchmark.tools)
    if not tool_names and not args.no_tools:
        raise UsageError(f"name the tools for {args.dataset} with --tools (zoom, search, code)")
    unused = sorted(set(args.tool_kwargs) - set(tool_names))
    if unused:
        raise UsageError(f"--tool-kwargs has options for {unused}, which are not among the tools {tool_names}")
    # The user's options for a tool are laid over the benchmark's (the shipped search task's corpus, say).
    tool_kwargs = {name: {**benchmark.tool_kwargs.get(name, {}), **args.tool_kwargs.get(name, {})}
                   for name in tool_names}
    protocol = get_protocol(args.protocol or benchmark.protocol, family=AutoConfig.from_pretrained(args.model))
    tools = build_tools(tool_names, tool_kwargs)
    reward_funcs = build_reward_funcs(args.rewards, protocol, tools, args.reward_kwargs)

    sampling = (SamplingSettings(do_sample=False) if args.temperature == 0
                else SamplingSettings(temperature=args.temperature, top_p=args.top_p))
    # What the results depend on. Not --limit (items are scored one by one, so a run can grow), not --device.
    run_info = {
        "model": args.model, "model_fingerprint": model_fingerprint(args.model),
        "dataset": benchmark.name, "dataset_file": str(dataset_file), "dataset_fingerprint":
            file_fingerprint(dataset_file) if dataset_file.is_file() else None,
        "format": benchmark.format, "image_root": args.image_root, "skip_bad_rows": args.skip_bad_rows,
        "max_image_pixels": args.max_image_pixels, "protocol": protocol.name, "system_prompt": args.system_prompt,
        "tools": tool_names, "tool_kwargs": tool_kwargs, "rewards": args.rewards, "reward_kwargs": args.reward_kwargs,
        "metrics": list(args.metrics or benchmark.metrics), "max_turns": args.max_turns, "max_completion_length": args.max_completion_length,
        "temperature": args.temperature, "sampling": dataclasses.asdict(sampling),
        "tool_timeout": args.tool_timeout, "min_pixels": args.min_pixels, "max_pixels": args.max_pixels,
        "dtype": args.dtype, "batch_size": args.batch_size, "seed": args.seed,
        "pass": "with tools" if tool_names else "without tools",
    }
    model_name = Path(args.model.rstrip("/")).name
    output = args.output or (f"outputs/eval/{benchmark.name}-{model_name}-{run_info['model_fingerprint'][:8]}-"
                             f"{settings_fingerprint(run_info)}.jsonl")

    check_same_settings(Path(output), run_info)  # before the model loads; `evaluate` checks again, harmlessly
    # The same items without tools, in a run of their own next to this one (resumed and checked like it).
    no_tools_pass = bool(tool_names) and args.without_tools is None and not args.skip_no_tools_pass
    if no_tools_pass:
        no_tools_info = {**run_info, "tools": [], "tool_kwargs": {}, "pass": "without tools"}
        check_same_settings(no_tools_path(output), no_tools_info)
        try:
            no_tools_rewards = build_reward_funcs(args.rewards, protocol, [], args.reward_kwargs)
        except ValueError as error:
            raise UsageError(f"the pass without tools cannot use these rewards ({error}); leave it out with "
                             "--skip-no-tools-pass") from None

    import torch

    torch.manual_seed(args.seed)
    model, processor = load_for_inference(args.model, dtype=args.dtype, device=args.device,
                                          min_pixels=args.min_pixels, max_pixels=args.max_pixels)
    # The model's generation_config.json is not used: these are the settings.
    print(sampling.describe(), flush=True)
    rollout_options = dict(
        metrics=args.metrics, batch_size=args.batch_size, max_turns=args.max_turns,
        max_completion_length=args.max_completion_length, sampling=sampling, tool_timeout=args.tool_timeout,
        system_prompt=args.system_prompt,
    )
    summary = evaluate(model, processor, protocol, tools, benchmark, output, reward_funcs=reward_funcs,
                       run_info=run_info, without_tools=args.without_tools, **rollout_options)
    if no_tools_pass:
        torch.manual_seed(args.seed)  # sampled as a run of its own would be, fresh or resumed
        evaluate(model, processor, protocol, [], benchmark, no_tools_path(output), run_info=no_tools_info,
                 reward_funcs=no_tools_rewards, **rollout_options)
        summary = write_summary(output, benchmark, summary["metrics"], run_info, no_tools_path(output))
    print(_summary_table(summary))
    without = f"without tools: {no_tools_path(output)}\n" if no_tools_pass else ""
    print(f"trajectories: {output}\n{without}summary: {summary_path(output)}\n"
          f"view them with: agentic-vlm view {output}")


def _summary_table(summary: dict) -> str:
    from .eval.metrics import summary_rows

    columns = ["count", "answered", *summary["metrics"], "tool_calls", "tool_call_rate"]
    rows = summary_rows(summary)
    width = max(len(label) for label, _ in rows)
    widths = [max(13, len(column) + 2) for column in columns]
    lines = [" " * width + "".join(f"{column:>{cell}}" for column, cell in zip(columns, widths, strict=True))]
    for label, figures in rows:
        cells = "".join(f"{figures[column]:>{cell}.3f}" if isinstance(figures[column], float)
                        else f"{figures[column]:>{cell}}" for column, cell in zip(columns, widths, strict=True))
        lines.append(f"{label:<{width}}{cells}")
    if "tool_use" in summary:
        figures = summary["tool_use"]
        lines.append(f"tools, on {figures['items']} items ({figures['metric']}): accuracy "
                     f"{figures['accuracy_with_tools']:.3f} with, {figures['accuracy_without_tools']:.3f} without; "
                     f"gain {figures['tool_gain']:.3f}, harm {figures['tool_harm']:.3f}, "
                     f"call rate {figures['tool_call_rate']:.3f}")
    return "\n".join(lines)


class UsageError(ValueError):
    """The command line is wrong (as opposed to the data or the model)."""


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command but ``train`` (whose keys are the recipe's, see :mod:`agentic_vlm.recipe`).

    Each command's flags are added by one function, so that a new flag goes next to its siblings."""
    defaults = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="agentic-vlm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", add_help=False,
                        help="train with a recipe (`agentic-vlm train --help` lists its keys)")

    tiny = commands.add_parser("make-tiny-model", formatter_class=defaults,
                               help="build a tiny random model of a family and its processor, offline")
    _add_tiny_model_arguments(tiny)

    evaluation = commands.add_parser("eval", formatter_class=defaults,
                                     help="evaluate a model on a benchmark with the training rollout engine")
    _add_eval_arguments(evaluation)

    view = commands.add_parser("view", formatter_class=defaults,
                               help="write a self-contained HTML page of a run's trajectories")
    view.add_argument("run", help="the JSONL of `agentic-vlm eval`, or a training run's trajectories-TIME.jsonl")
    view.add_argument("-o", "--output", help="the page (default: RUN.html)")

    data = commands.add_parser("make-data", formatter_class=defaults,
                               help="generate a synthetic task (deterministic by seed)")
    data.add_argument("task", choices=list(SYNTHETIC_TASKS), help="which task")
    data.add_argument("output_dir", help="where train.jsonl, test.jsonl and the images go")
    data.add_argument("--train", type=int, help="training examples (default: the task's)")
    data.add_argument("--test", type=int, help="held-out examples (default: the task's)")
    data.add_argument("--seed", type=int, default=0, help="seed of the generator")
    data.add_argument("--variant", choices=["full", "tiny"], default="full",
                      help="full: the task as its module describes it; tiny: the variant that a tiny model learns on a "
                           "CPU in minutes (answers it can see, short solutions), which the *_cpu recipes train on "
                           "(search, coding and refocus; zoom is tiny already)")
    return parser


def _add_tiny_model_arguments(parser: argparse.ArgumentParser) -> None:
    from .families import FAMILIES, TINY_FAMILIES

    parser.add_argument("output_dir", help="folder to write the model and its processor to")
    parser.add_argument("--family", choices=list(TINY_FAMILIES),
                        help="the model family: its architecture, tokens and chat template (default: qwen2.5-vl, or "
                             "the family of --like)")
    parser.add_argument("--vocab", choices=["small", "real"],
                        help="small (default): a ~1000-token BPE for fast tests; real: the family's real vocabulary")
    parser.add_argument("--like", choices=sorted(name for family in FAMILIES.values() for name in family.checkpoints),
                        help="carry this released checkpoint's generation and processor settings, eos ids and "
                             "vocabulary (real pixel limits: slow on a CPU)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")


def run_command(argv: list[str]) -> None:
    if argv and argv[0] == "train":  # everything after `train` belongs to the recipe's parser
        train(argv[1:])
        return
    args = build_parser().parse_args(argv)
    if args.command == "make-tiny-model":
        from .tiny import make_tiny_model

        print(make_tiny_model(args.output_dir, vocab=args.vocab, seed=args.seed, like=args.like, family=args.family))
    elif args.command == "eval":
        evaluate_command(args)
    elif args.command == "view":
        from .eval import write_html

        print(write_html(args.run, args.output))
    elif args.command == "make-data":
        module_name, function_name = SYNTHETIC_TASKS[args.task].split(":")
        write = getattr(importlib.import_module(module_name), function_name)
        options = {key: value for key, value in (("num_train", args.train), ("num_test", args.test)) if value is not None}
        if args.variant != "full":
            if "variant" not in inspect.signature(write).parameters:
                raise ValueError(f"make-data {args.task} has no {args.variant!r} variant")
            options["variant"] = args.variant
        print(write(args.output_dir, seed=args.seed, **options))


def main(argv: list[str] | None = None) -> None:
    """Run a command; an error is one line on stderr and exit status 1 (2 for a wrong command line), with the
    traceback only under ``--debug``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("agentic_vlm").setLevel(logging.INFO)  # our notes (resumed runs, skipped rows), not httpx's
    try:
        run_command(argv)
    except KeyboardInterrupt:
        print("agentic-vlm: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - every error becomes one message; --debug shows where it came from
        if debug:
            traceback.print_exc()
        from .recipe import RecipeError

        expected = (UsageError, RecipeError, ValueError, OSError, ImportError)
        kind = "" if isinstance(error, expected) else f"{type(error).__name__}: "
        hint = "" if debug else " (--debug shows the traceback)"
        print(f"agentic-vlm: error: {kind}{error}{hint if kind else ''}", file=sys.stderr)
        sys.exit(2 if isinstance(error, (UsageError, RecipeError)) else 1)


if __name__ == "__main__":
    main()
