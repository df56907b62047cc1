"""``agentic-vlm``: train, build the tiny offline model, and generate the synthetic data.

    agentic-vlm train RECIPE.yaml [--key value ...]    # YAML keys are config fields; command-line values win
    agentic-vlm make-tiny-model OUT [--vocab small|real] [--seed 0]
    agentic-vlm make-data zoom OUT [--train 256] [--test 64] [--seed 0]

``train`` runs under ``torchrun`` and ``accelerate launch`` as it is.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import dataclass, field

from .config import AgenticGRPOConfig


@dataclass
class TrainScriptArguments:
    """Recipe keys that are not trainer settings: the data, the processor's image resolution, the warm start."""

    train_file: str = field(metadata={"help": "JSONL task file to train on (see agentic_vlm.data.load_jsonl_dataset)."})
    eval_file: str | None = field(default=None, metadata={"help": "JSONL task file for TRL's periodic evaluation."})
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

    from .data import load_jsonl_dataset
    from .protocols import get_protocol
    from .tools import build_tools
    from .trainer import AgenticGRPOTrainer
    from .warmstart import supervised_warm_start

    if not argv or argv[0].startswith("-"):
        raise SystemExit("usage: agentic-vlm train RECIPE.yaml [--key value ...]")
    parser = TrlParser((TrainScriptArguments, AgenticGRPOConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config(args=["--config", argv[0], *argv[1:]])
    _require_model_extras(model_args)

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
    train_dataset = load_jsonl_dataset(script_args.train_file)
    eval_dataset = load_jsonl_dataset(script_args.eval_file) if script_args.eval_file else None
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


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="agentic-vlm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="train with a recipe (YAML keys are config fields)", add_help=False)

    tiny = commands.add_parser("make-tiny-model", help="build a tiny random Qwen2.5-VL and its processor, offline")
    tiny.add_argument("output_dir")
    tiny.add_argument("--vocab", choices=["small", "real"], default="small",
                      help="small: a ~600-token BPE for fast tests; real: the Qwen2 vocabulary")
    tiny.add_argument("--seed", type=int, default=0)

    data = commands.add_parser("make-data", help="generate a synthetic task (deterministic by seed)")
    data.add_argument("task", choices=["zoom"])
    data.add_argument("output_dir")
    data.add_argument("--train", type=int, default=256, help="training examples")
    data.add_argument("--test", type=int, default=64, help="held-out examples")
    data.add_argument("--seed", type=int, default=0)

    if argv and argv[0] == "train":  # everything after the recipe belongs to the recipe parser
        train(argv[1:])
        return
    args = parser.parse_args(argv)
    if args.command == "make-tiny-model":
        from .tiny import make_tiny_model

        print(make_tiny_model(args.output_dir, vocab=args.vocab, seed=args.seed))
    elif args.command == "make-data":
        from .data.synthetic import write_zoom_dataset

        print(write_zoom_dataset(args.output_dir, num_train=args.train, num_test=args.test, seed=args.seed))


if __name__ == "__main__":
    main()
