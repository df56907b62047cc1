"""``AgenticGRPOTrainer``: TRL's GRPO trainer whose generation is a live multi-turn rollout with tools.

Only generation changes. TRL keeps the loss, the advantages, the reference model and KL, vLLM, PEFT, gradient
accumulation, logging and checkpoints. What is overridden:

- ``_generate``: runs the rollout engine and hands TRL the token ids, the mask that keeps observation tokens (and
  the trajectories that ``mask_truncated_completions``/``mask_over_turn_completions`` leave out) out of the loss
  (TRL's ``tool_mask``), the sampling log-probabilities and every image of every trajectory;
- ``_generate_and_score_completions``: only keeps the batch's dataset rows for the tools (``ToolContext.row``);
- ``_get_per_token_logps_and_entropies``: checks, before every forward pass, that each image's tokens match its
  features (an error naming the trajectory and the image, instead of a shape error or a silent drop);
- ``_calculate_rewards``: only writes some trajectories with their rewards to a readable log, one per run
  (``<output_dir>/trajectories-<time>.jsonl``, readable with ``agentic-vlm view``);
- ``_load_from_checkpoint``, ``_load_best_model``: a resumed run, and ``load_best_model_at_end``, load the checkpoint's
  weights under the model's own key names (see there);
- ``train``: prints where this run's trajectory log goes, and closes the rollout engine (and its tools) at the end;
- ``create_model_card``: names a base model loaded from a folder.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from pathlib import Path

import torch
import trl.trainer.grpo_trainer as trl_grpo_trainer
from accelerate.utils import is_peft_model
from transformers import AutoConfig
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from trl import GRPOTrainer
from trl.models.utils import unwrap_model_for_generation

from .config import AgenticGRPOConfig
from .console import CompactPrinterCallback, CompactProgressCallback
from .data.validation import check_answers
from .families import end_of_turn_token_ids, family_of
from .frames import ImageView, image_token_mismatch
from .protocols import Protocol, get_protocol
from .rewards import build_reward_funcs
from .rewards.trl_rewards import set_image_view
from .rollout import RolloutEngine, SamplingSettings, Trajectory, TransformersTurnGenerator, TurnRequest
from .tools import Tool, build_tools

logger = logging.getLogger(__name__)


class AgenticGRPOTrainer(GRPOTrainer):
    """GRPO with live multi-turn tool use for vision-language models.

    Args:
        model: A model id or path, or a loaded model (see [`~trl.GRPOTrainer`]).
        reward_funcs: TRL reward functions; by default built from ``args.reward_funcs`` and the protocol.
        args: An [`AgenticGRPOConfig`].
        train_dataset, eval_dataset: Conversational prompts (``prompt``) with ``images`` (or ``image``) and the
            columns the rewards read (``answer`` ...).
        processing_class: The model's processor; loaded from the model by default.
        tools: [`~agentic_vlm.tools.Tool`] objects; by default built from ``args.tools`` and ``args.tool_kwargs``.
        protocol: A [`~agentic_vlm.protocols.Protocol`]; by default ``get_protocol(args.protocol)``.
        Other arguments are TRL's.
    """

    _tag_names = ["trl", "grpo", "agentic-vlm"]

    def __init__(
        self,
        model,
        reward_funcs=None,
        args: AgenticGRPOConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        reward_processing_classes=None,
        callbacks=None,
        optimizers=(None, None),
        peft_config=None,
        tools: list[Tool] | None = None,
        protocol: Protocol | None = None,
    ):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = AgenticGRPOConfig(f"{str(name).rstrip('/').split('/')[-1]}-agentic-GRPO")
        if not isinstance(args, AgenticGRPOConfig):
            raise TypeError(f"args must be an AgenticGRPOConfig, got {type(args).__name__}")
        if protocol is None:
            model_config = AutoConfig.from_pretrained(model) if isinstance(model, str) else model.config
            protocol = get_protocol(args.protocol, family=model_config)
        tools = list(tools) if tools is not None else build_tools(args.tools, args.tool_kwargs)
        if not tools:
            raise ValueError("AgenticGRPOTrainer needs at least one tool; for plain GRPO use trl.GRPOTrainer.")
        if reward_funcs is None:
            reward_funcs = build_reward_funcs(args.reward_funcs, protocol, tools, args.reward_kwargs)
        check_answers(train_dataset, "train_dataset")
        check_answers(eval_dataset, "eval_dataset")

        if args.use_vllm and args.vllm_mode == "colocate" and args.vllm_tensor_parallel_size > 1:
            raise ValueError(
                "vllm_tensor_parallel_size > 1 is not supported by the multi-turn rollout in colocate mode (each rank "
                "drives its own engine); use vllm_mode: server for a model that needs several GPUs per engine"
            )

        # TRL's `tools=` are JSON-schema functions that the chat template renders; ours are tag actions run by the
        # rollout engine, so TRL's own tool loop stays off. TRL's __init__ builds its vLLM backend by name; ours (see
        # vllm_engine.py) is built in its place.
        vllm_generation_class = trl_grpo_trainer.VLLMGeneration
        if args.use_vllm:
            from .vllm_engine import AgenticVLLMGeneration

            trl_grpo_trainer.VLLMGeneration = functools.partial(AgenticVLLMGeneration, dtype=args.vllm_dtype)
        try:
            super().__init__(
                model=model,
                reward_funcs=reward_funcs,
                args=args,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=processing_class,
                reward_processing_classes=reward_processing_classes,
                callbacks=callbacks,
                optimizers=optimizers,
                peft_config=peft_config,
            )
        finally:
            trl_grpo_trainer.VLLMGeneration = vllm_generation_class
        # Set after TRL's init: in `_generate_and_score_completions`, a truthy `self.tools` makes TRL build the
        # vision inputs of the forward pass from all the images of each sequence and their positions in the token
        # ids, which is what trajectories with images returned mid-sequence need.
        self.tools = tools
        self.protocol = protocol
        # A rollout batch runs all its trajectories at once (per process: TRL's generation batch over the processes).
        rollouts_at_once = args.generation_batch_size // self.accelerator.num_processes
        for tool in tools:
            if tool.session_limit is not None and rollouts_at_once > tool.session_limit:
                logger.warning(
                    "the %s tool keeps the variables of at most %d trajectories (max_sessions), but each rollout batch "
                    "runs %d at once on this process: the least recently used lose theirs between turns, and are told "
                    "so. Raise its max_sessions in tool_kwargs (each session is a process), or lower the generation "
                    "batch", tool.name, tool.session_limit, rollouts_at_once,
                )
        # One compact line per logging step (see console.py) in place of transformers' dict of every figure.
        for default, compact in ((ProgressCallback, CompactProgressCallback), (PrinterCallback, CompactPrinterCallback)):
            if self.pop_callback(default) is not None:
                self.add_callback(compact)
        # TRL's version zeroes the attention mask of every sequence that does not end in eos, which misaligns the
        # images of a trajectory from their tokens; ours zeroes its loss mask only (see `_generate`).
        self.mask_cut_off_trajectories = self.mask_truncated_completions
        self.mask_truncated_completions = False

        stop_strings = protocol.stop_strings(tools)
        model_config = self.model.config
        # TRL's list (the tokenizer's eos and the checkpoint's generation config ids) and the family's eos tokens:
        # each one ends a turn, in generation and in TRL's own truncation checks.
        self.eos_token_ids = end_of_turn_token_ids(self._tokenizer, model_config, self.model.generation_config)
        sampling = SamplingSettings(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            repetition_penalty=self.repetition_penalty,
        )
        self._turn_generator = TransformersTurnGenerator(
            self.processing_class, model_config, stop_strings, sampling, eos_token_ids=self.eos_token_ids
        )
        if self.use_vllm:
            self._vllm_turn_generator = self._build_vllm_turn_generator(family_of(model_config), sampling, stop_strings)
        image_view = ImageView.for_model(self.processing_class, model_config)
        set_image_view(self.reward_funcs, image_view)  # rewards that read boxes (iou) convert them from its frame
        if self.use_vllm and self.vllm_mode == "colocate":
            max_context_length = self.vllm_generation.llm.llm_engine.model_config.max_model_len
        else:
            max_context_length = model_config.get_text_config().max_position_embeddings
        self.rollout_engine = RolloutEngine(
            self.processing_class,
            protocol,
            tools,
            self._generate_turn,
            max_turns=args.max_turns,
            max_completion_length=self.max_completion_length,
            max_context_length=max_context_length,
            tool_timeout=args.tool_timeout,
            max_images_per_observation=args.max_images_per_observation,
            max_observation_tokens=args.max_observation_tokens,
            system_prompt=args.system_prompt,
            sync_batch_size=self._sync_batch_size,
            eos_token_ids=self.eos_token_ids,
            chat_template_kwargs=self.chat_template_kwargs,
            image_view=image_view,
            keep_pixel_values=not self.use_vllm,  # vLLM takes the images themselves
            # vLLM batches whatever requests it holds at each step and runs no collective inside generation.
            generate_one=self._vllm_turn_generator.generate_one if self.use_vllm and args.continuous_rollouts else None,
        )
        self._rollout_rows: list[dict] = []
        self._rollout_trajectories: list[Trajectory] = []
        self.trajectory_log_path = os.path.join(args.output_dir, "trajectories.jsonl")  # train() names it per run

    # -------------------------------------------------------------------------------------------------- generation
    def _build_vllm_turn_generator(self, family, sampling: SamplingSettings, stop_strings: list[str]):
        from .rollout.vllm import ColocateTurnGenerator, ServerTurnGenerator

        if self.vllm_mode == "colocate":
            return ColocateTurnGenerator(lambda: self.vllm_generation.llm, self.processing_class, family, sampling,
                                         stop_strings, self.eos_token_ids)
        args = self.args
        base_url = args.vllm_server_base_url or f"http://{args.vllm_server_host}:{args.vllm_server_port}"
        return ServerTurnGenerator(base_url, self.processing_class, family, sampling, stop_strings, self.eos_token_ids)

    def _sync_batch_size(self, num_active: int) -> int:
        """The largest number of active trajectories over all ranks (every rank generates that many rows)."""
        if self.accelerator.num_processes == 1:
            return num_active
        counts = self.accelerator.gather(torch.tensor([num_active], device=self.accelerator.device))
        return int(counts.max())

    def _generate_turn(self, requests: list[TurnRequest], max_new_tokens: int):
        if self.use_vllm:
            return self._vllm_turn_generator(requests, max_new_tokens)
        with (
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped_model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            return self._turn_generator.generate(unwrapped_model, requests, max_new_tokens)

    def _generate_and_score_completions(self, inputs):
        self._rollout_rows = inputs
        return super()._generate_and_score_completions(inputs)

    def _generate(self, prompts: list):
        mode = "train" if self.model.training else "eval"
        if self.use_vllm:
            # The weights that sample every turn of this rollout are this step's, pushed once for all its turns.
            with self.vllm_generation.rollout(weights_changed=self.state.global_step != self._last_loaded_step):
                self._last_loaded_step = self.state.global_step
                trajectories = self.rollout_engine.run(prompts, self._rollout_rows)
        else:
            trajectories = self.rollout_engine.run(prompts, self._rollout_rows)
        self._rollout_trajectories = trajectories
        self._log_rollout_metrics(trajectories, mode)

        prompt_ids = [t.prompt_ids for t in trajectories]
        completion_ids = [t.completion_ids for t in trajectories]
        tool_mask = [[0] * len(t.tool_mask) if self._left_out_of_loss(t) else t.tool_mask for t in trajectories]
        completions = [t.completion_messages() for t in trajectories]
        images = [list(t.images) for t in trajectories]
        # Every image of each trajectory, in order. Returned also in TRL's "tool images" slot, which makes TRL's
        # forward pass place all of them by the image tokens of the ids (prompt and observations alike).
        sequence_images = [imgs or None for imgs in images] if any(images) else None
        logprobs = self._sampling_logprobs(trajectories)
        return prompt_ids, completion_ids, tool_mask, completions, logprobs, {}, sequence_images, images

    def _left_out_of_loss(self, trajectory: Trajectory) -> bool:
        return (self.mask_cut_off_trajectories and trajectory.stop_reason == "length") or (
            self.args.mask_over_turn_completions and trajectory.stop_reason == "max_turns"
        )

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, *args, **kwargs):
        if kwargs.get("image_grid_thw") is not None:
            self._check_image_tokens(input_ids, attention_mask, kwargs["image_grid_thw"], kwargs.get("num_images"))
        return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, *args, **kwargs)

    def _check_image_tokens(self, input_ids, attention_mask, image_grid_thw, num_images) -> None:
        """Each row's image tokens (where attended) match the features of its images, in order."""
        input_ids, attention_mask, image_grid_thw = input_ids.cpu(), attention_mask.cpu(), image_grid_thw.cpu()
        if num_images is None:  # TRL passes it with the images; without it, rows cannot be told apart
            rows, counts = [input_ids[attention_mask.bool()]], [len(image_grid_thw)]
        else:
            rows, counts = [ids[mask.bool()] for ids, mask in zip(input_ids, attention_mask, strict=True)], num_images
        image_token_id = self.model.config.image_token_id
        merge_length = self.processing_class.image_processor.merge_size ** 2
        for row, (ids, grid) in enumerate(zip(rows, torch.split(image_grid_thw, list(counts)), strict=True)):
            mismatch = image_token_mismatch(ids, grid if len(grid) else None, image_token_id, merge_length)
            if mismatch is None:
                continue
            index, tokens, features = mismatch
            # The row's trajectory, by its tokens (rows may be shuffled, and a mask may hide some of them).
            row_ids = input_ids[row, int(attention_mask[row].nonzero()[0]):].tolist()
            trajectory = next((t for t in self._rollout_trajectories
                               if row_ids[: len(t.prompt_ids) + len(t.completion_ids)] == t.prompt_ids + t.completion_ids),
                              None)
            where = (f"trajectory {trajectory.id}, {trajectory.image_source(index)}" if trajectory is not None
                     else f"image {index + 1}")
            raise ValueError(f"training forward pass, row {row} of the batch ({where}): {tokens} image tokens in "
                             f"the ids but {features} image features")

    @staticmethod
    def _sampling_logprobs(trajectories: list[Trajectory]) -> list[list[float]] | None:
        # vLLM may return no log-probabilities; then TRL computes what it needs itself.
        if any(len(t.logprobs) != len(t.completion_ids) for t in trajectories):
            return None
        return [t.logprobs for t in trajectories]

    def set_reference(self, model) -> None:
        """Make ``model``'s weights those of the KL term's reference (``beta > 0``). TRL builds the reference from
        the model's path on disk; after a warm start, or any change made in memory, the policy starts elsewhere, and
        the KL term would pull it back to the weights on disk."""
        if self.ref_model is None:
            raise ValueError("there is no reference model: beta is 0, or a PEFT adapter's base model is the reference")
        self.accelerator.unwrap_model(self.ref_model).load_state_dict(model.state_dict())

    # ------------------------------------------------------------------------------------------------- checkpoints
    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        # Transformers writes a checkpoint under the key names of the model family's published checkpoints (Qwen2.5-VL:
        # `visual.*`, `model.layers.*`), but its `_load_from_checkpoint` reads the file back with a plain
        # `load_state_dict(strict=False)` into the model's own names (`model.visual.*`, `model.language_model.*`):
        # nothing matched but the LM head, and a resumed run went on from the base model's weights, with the step
        # count and optimizer state of the checkpoint and only a warning. `from_pretrained` maps the names.
        model = self.model if model is None else model
        if not self._holds_full_weights(resume_from_checkpoint, model):
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        self._load_full_weights(resume_from_checkpoint, model)

    def _load_best_model(self) -> None:
        # `load_best_model_at_end`: transformers' `_load_best_model` has the same key-name problem, and kept the last
        # step's weights with a warning.
        checkpoint = self.state.best_model_checkpoint
        if not self._holds_full_weights(checkpoint, self.model):
            super()._load_best_model()
            return
        if self.is_world_process_zero():
            logger.info(f"Loading the best model from {checkpoint} ({self.args.metric_for_best_model}: "
                        f"{self.state.best_metric}).")
        self._load_full_weights(checkpoint, self.model)

    def _holds_full_weights(self, checkpoint: str, model) -> bool:
        """Whether ``checkpoint`` holds the whole model in safetensors, which ``from_pretrained`` reads. DeepSpeed and
        FSDP load their own files, and PEFT adapters go through TRL's path: those stay with transformers."""
        weights = [os.path.join(checkpoint, name) for name in ("model.safetensors", "model.safetensors.index.json")]
        return (not self.is_deepspeed_enabled and not self.is_fsdp_enabled and not is_peft_model(model)
                and any(map(os.path.isfile, weights)))

    @staticmethod
    def _load_full_weights(checkpoint: str, model) -> None:
        """Every weight of ``checkpoint`` into ``model``; an error if the file lacks one or holds one the model has not
        (``from_pretrained`` alone would start a missing weight from random values, with a warning)."""
        saved, loading = type(model).from_pretrained(checkpoint, dtype=model.dtype, device_map="cpu",
                                                     output_loading_info=True)
        problems = {kind: keys for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")
                    if (keys := loading.get(kind))}
        if problems:
            raise ValueError(f"{checkpoint} does not hold this model's weights: {problems}")
        model.load_state_dict(saved.state_dict())

    # ----------------------------------------------------------------------------------------------------- logging
    def _gathered_mean(self, values: list[float]) -> float:
        local = torch.tensor([sum(values), len(values)], dtype=torch.float64, device=self.accelerator.device)
        total, count = self.accelerator.gather(local).view(-1, 2).sum(0).tolist()
        return total / count if count else 0.0

    def _log_rollout_metrics(self, trajectories: list[Trajectory], mode: str) -> None:
        metrics = self._metrics[mode]
        device = self.accelerator.device
        model_tokens = torch.tensor([sum(t.tool_mask) for t in trajectories], device=device)
        prompt_tokens = torch.tensor([len(t.prompt_ids) for t in trajectories], device=device)
        all_model_tokens = self.accelerator.gather(model_tokens).float()
        all_tokens = self.accelerator.gather(
            prompt_tokens + torch.tensor([len(t.completion_ids) for t in trajectories], device=device)
        )
        if mode == "train":
            self.state.num_input_tokens_seen += int(all_tokens.sum())
        metrics["num_tokens"] = [self.state.num_input_tokens_seen]
        metrics["completions/mean_length"].append(all_model_tokens.mean().item())
        metrics["completions/min_length"].append(all_model_tokens.min().item())
        metrics["completions/max_length"].append(all_model_tokens.max().item())

        for reason in ("answer", "length", "max_turns"):
            metrics[f"rollout/stop_{reason}"].append(self._gathered_mean([float(t.stop_reason == reason)
                                                                          for t in trajectories]))
        metrics["completions/clipped_ratio"].append(1.0 - metrics["rollout/stop_answer"][-1])
        metrics["rollout/turns"].append(self._gathered_mean([len(t.turns) for t in trajectories]))
        # Tool calls only: an invalid action also gets an observation (what was wrong), but no tool ran.
        calls = [turn for t in trajectories for turn in t.turns
                 if turn.action.kind == "tool" and turn.observation is not None]
        metrics["tools/calls_per_trajectory"].append(self._gathered_mean([
            sum(turn.action.kind == "tool" and turn.observation is not None for turn in t.turns)
            for t in trajectories
        ]))
        metrics["tools/failure_frequency"].append(
            self._gathered_mean([float(turn.observation.error is not None) for turn in calls])
        )
        metrics["tools/invalid_action_frequency"].append(
            self._gathered_mean([float(turn.action.kind == "invalid") for t in trajectories for turn in t.turns])
        )
        metrics["tools/seconds_per_call"].append(
            self._gathered_mean([turn.tool_seconds for turn in calls])
        )
        metrics["tools/wall_seconds_per_turn"].append(self._gathered_mean(self.rollout_engine.tool_wall_seconds))

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        every = self.args.log_trajectories_steps
        if every and self.accelerator.is_main_process and self.model.training and self.state.global_step % every == 0:
            local = rewards_per_func[: len(prompts)]  # the main process's rows come first
            self._write_trajectory_log(local)
        return rewards_per_func

    def _write_trajectory_log(self, rewards_per_func: torch.Tensor) -> None:
        """Append some trajectories of this step to the run's log, in the records of ``agentic-vlm eval`` (input and
        tool images saved beside the log, the prediction, its accuracy, each reward), so that ``agentic-vlm view``
        shows them the same way."""
        from .eval.runner import item_record

        log = Path(self.trajectory_log_path)
        log.parent.mkdir(parents=True, exist_ok=True)
        images_dir = log.parent / f"{log.stem}-images"
        with open(log, "a", encoding="utf-8") as file:
            for index, trajectory in enumerate(self._rollout_trajectories[: self.args.num_trajectories_to_log]):
                row = self._rollout_rows[index]
                rewards = {name: _finite_or_none(value) for name, value in
                           zip(self.reward_func_names, rewards_per_func[index].tolist(), strict=True)}
                # Scored like the evaluation (the accuracy of the final answer) where the row has an answer.
                metrics = ("accuracy",) if row.get("answer") is not None else ()
                item_id = f"step{self.state.global_step}-{index}"
                record = item_record(item_id, row, trajectory, rewards, self.protocol, metrics, (), images_dir,
                                     log.parent)
                file.write(json.dumps({"step": self.state.global_step, **record}, ensure_ascii=False, default=str)
                           + "\n")

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        super().create_model_card(model_name, dataset_name, tags)
        # TRL names the base model only when it is a hub id; a model loaded from a folder would read
        # "a fine-tuned version of [None](https://huggingface.co/None)".
        card = Path(self.args.output_dir) / "README.md"
        base = getattr(self.model.config, "_name_or_path", None)
        if self.is_world_process_zero() and base and card.is_file():
            text = card.read_text(encoding="utf-8")
            text = text.replace("[None](https://huggingface.co/None)", f"the local model `{base}`")
            card.write_text(text.replace("base_model: None\n", f"base_model: {base}\n"), encoding="utf-8")

    def train(self, *args, **kwargs):
        if self.args.log_trajectories_steps and self.accelerator.is_main_process:
            # One log per run: a resumed or repeated run does not append to an earlier run's trajectories.
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.trajectory_log_path = os.path.join(self.args.output_dir, f"trajectories-{stamp}.jsonl")
            print(f"trajectories of this run: {self.trajectory_log_path} "
                  f"(view them with: agentic-vlm view {self.trajectory_log_path})", flush=True)
        try:
            return super().train(*args, **kwargs)
        finally:
            self.rollout_engine.close()


def _finite_or_none(value: float) -> float | None:
    return None if value != value else round(value, 4)  # NaN: the reward did not apply
