"""A few GRPO steps of the tiny Qwen2.5-VL with scripted multi-turn rollouts, for the distributed, checkpoint and PEFT
tests. Under a launcher, one process per rank (tests/launcher.py builds these commands):

    torchrun --nproc_per_node 2 tests/train_worker.py --model DIR --train-file FILE --output-dir DIR \
        [--deepspeed local_scripts/zero3.json] [--max-steps 2] [--save-steps 1] [--resume-from-checkpoint DIR] \
        [--lora] [--no-lockstep]

or in one process through ``build_trainer``.

The rollouts are scripted but not faked: every turn goes through the trainer's own generation call (the rollout
engine, ``_generate_turn``, ``unwrap_model_for_generation``, transformers' ``generate``) with the scripted tokens
teacher-forced by a logits processor. So under ZeRO-3 each turn gathers the sharded parameters and ``generate`` syncs
the ranks token by token, as in real training. Rank 0's trajectories call the zoom tool three times before they
answer; the other ranks' trajectories answer at once, so without lockstep rank 0 makes three generation calls that
the others never join.

Every rank prints what it does, prefixed with its rank, so that a failing test shows where each one stopped. Rank 0
writes to the output directory ``summary.json`` (ZeRO stage, step, loss and mean turns by step, the generation calls
of every rank), ``initial_params.pt`` and ``final_params.pt`` (every parameter by name, gathered whole).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import os
import sys

import torch
from accelerate.utils import gather_object

from agentic_vlm.config import AgenticGRPOConfig
from agentic_vlm.data import load_jsonl_dataset
from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.tools import ZoomTool
from agentic_vlm.trainer import AgenticGRPOTrainer

ZOOMS = ["[0, 0, 112, 112]", "[56, 56, 168, 168]", "[112, 112, 224, 224]"]
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def log(message: str) -> None:
    print(f"[rank {os.environ.get('RANK', '0')}] {message}", flush=True)


def scripted_turn(rank: int, turn: int, index: int) -> str:
    """Rank 0 zooms three times then answers; other ranks answer at once. Answers alternate within a batch so that
    the two trajectories of a GRPO group get different rewards (identical rewards would give no gradient)."""
    if rank == 0 and turn < len(ZOOMS):
        return f"<think>Closer.</think>\n<zoom>{ZOOMS[turn]}</zoom>"
    return f"<answer>{'red' if index % 2 == 0 else 'blue'}</answer>"


def says_red(completions, **kwargs):
    return [float("<answer>red</answer>" in completion[-1]["content"]) for completion in completions]


class ScriptedByRank:
    """Stands in for the trainer's ``TransformersTurnGenerator``: the same ``generate`` call on the model the trainer
    unwrapped, with this rank's scripted tokens forced."""

    def __init__(self, generator, tokenizer, rank: int):
        self.generator = generator
        self.tokenizer = tokenizer
        self.rank = rank

    def generate(self, model, requests, max_new_tokens):
        forced = []
        for index, request in enumerate(requests):
            text = scripted_turn(self.rank, request.turn, index)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            forced.append(ids if text.endswith("</zoom>") else ids + [self.tokenizer.eos_token_id])
        return self.generator.generate(model, requests, max_new_tokens, forced_ids=forced)


class CountedCalls:
    """Wraps the rollout engine's generation function (the trainer's ``_generate_turn``) to count and print each call
    as it starts, before ZeRO-3 gathers the parameters for it."""

    def __init__(self, generate):
        self.generate = generate
        self.calls: list[int] = []  # rows of each call

    def __call__(self, requests, max_new_tokens):
        self.calls.append(len(requests))
        log(f"generation call {len(self.calls)}: {len(requests)} rows at turns {[r.turn for r in requests]}")
        return self.generate(requests, max_new_tokens)


def build_trainer(model: str, train_file: str, output_dir: str, *, deepspeed: str | None = None, max_steps: int = 2,
                  save_steps: int = 0, lora: bool = False, lockstep: bool = True) -> AgenticGRPOTrainer:
    args = AgenticGRPOConfig(
        output_dir=output_dir,
        deepspeed=deepspeed,
        per_device_train_batch_size=2,
        num_generations=2,
        max_turns=len(ZOOMS) + 1,
        max_completion_length=400,
        # bf16, as real runs: under DeepSpeed the model is in bf16 and the optimizer keeps fp32 master weights. A
        # first Adam step of 1e-2 moves every bf16 weight, norms at 1.0 included (1e-3 would round away there).
        bf16=True,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        max_steps=max_steps,
        **({"save_strategy": "steps", "save_steps": save_steps} if save_steps else {"save_strategy": "no"}),
        logging_steps=1,
        log_trajectories_steps=0,
        seed=0,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    peft_config = None
    if lora:
        from peft import LoraConfig

        # The language model's linear layers, not the vision tower's (whose MLP layers have the same names).
        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    trainer = AgenticGRPOTrainer(
        model=model,
        reward_funcs=[says_red],
        args=args,
        train_dataset=load_jsonl_dataset(train_file),
        tools=[ZoomTool(min_side=56, max_side=112)],
        protocol=ArftProtocol(),
        peft_config=peft_config,
    )
    trainer._turn_generator = ScriptedByRank(
        trainer._turn_generator, trainer.processing_class.tokenizer, trainer.accelerator.process_index
    )
    trainer.rollout_engine.generate = CountedCalls(trainer.rollout_engine.generate)
    if not lockstep:  # each rank generates only for its own active trajectories, and stops when it has none
        trainer.rollout_engine.sync_batch_size = lambda num_active: num_active
    return trainer


def gathered_parameters(trainer: AgenticGRPOTrainer) -> dict[str, torch.Tensor]:
    """Every parameter, whole (ZeRO-3 shards them), by name; a collective under ZeRO-3."""
    parameters = dict(trainer.accelerator.unwrap_model(trainer.model_wrapped).named_parameters())
    gather = contextlib.nullcontext()
    if trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(list(parameters.values()))
    with gather:
        return {name: parameter.detach().clone() for name, parameter in parameters.items()}


def save_on_main(trainer: AgenticGRPOTrainer, value, output_dir: str, name: str) -> None:
    if trainer.accelerator.is_main_process:
        path = os.path.join(output_dir, name)
        if name.endswith(".json"):
            with open(path, "w") as file:
                json.dump(value, file)
        else:
            torch.save(value, path)
    trainer.accelerator.wait_for_everyone()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--train-file", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--deepspeed", help="a DeepSpeed config (under accelerate launch, its config names one)")
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--save-steps", type=int, default=0, help="0: no checkpoints")
    parser.add_argument("--resume-from-checkpoint")
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters on the language model")
    parser.add_argument("--no-lockstep", action="store_true", help="each rank generates for its own trajectories only")
    parser.add_argument("--watchdog", type=float, default=240, help="exit with every thread's stack after this long")
    options = parser.parse_args(argv)

    faulthandler.dump_traceback_later(options.watchdog, exit=True)  # a hung rank must fail, and say where
    faulthandler.enable(all_threads=True)  # so must a rank that aborts (a C++ abort in gloo prints no Python stack)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import deepspeed

        # DeepSpeed would compile its shared-memory CPU all-reduce on first use (~45 s on a fresh machine, and a C++
        # toolchain); only its CPU inference uses it.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        # On CPU, accelerate sets up a plain gloo process group and leaves DeepSpeed's communicator alone; ZeRO-3
        # reads the world size from the latter when it partitions the model at load time.
        deepspeed.init_distributed("gloo")

    trainer = build_trainer(
        options.model, options.train_file, options.output_dir, deepspeed=options.deepspeed,
        max_steps=options.max_steps, save_steps=options.save_steps, lora=options.lora,
        lockstep=not options.no_lockstep,
    )
    plugin = trainer.accelerator.state.deepspeed_plugin
    zero_stage = plugin.zero_stage if plugin is not None else None
    log(f"built the trainer: {trainer.accelerator.num_processes} processes, ZeRO stage {zero_stage}")
    save_on_main(trainer, gathered_parameters(trainer), options.output_dir, "initial_params.pt")

    trainer.train(resume_from_checkpoint=options.resume_from_checkpoint)
    steps = [entry for entry in trainer.state.log_history if "loss" in entry]
    losses = {entry["step"]: entry["loss"] for entry in steps}
    log(f"trained to step {trainer.state.global_step}; loss by step {losses}")

    save_on_main(trainer, gathered_parameters(trainer), options.output_dir, "final_params.pt")
    summary = {
        "zero_stage": zero_stage,
        "global_step": trainer.state.global_step,
        "losses": losses,
        "turns": {entry["step"]: entry["rollout/turns"] for entry in steps},  # mean over all ranks' trajectories
        "generation_calls": gather_object([trainer.rollout_engine.generate.calls]),  # one list per rank
    }
    save_on_main(trainer, summary, options.output_dir, "summary.json")
    torch.distributed.destroy_process_group()  # as `agentic-vlm train` does: see cli.train
    log("done")


if __name__ == "__main__":
    main(sys.argv[1:])
