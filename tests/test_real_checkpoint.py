"""A tiny model that carries the settings of the released Qwen2.5-VL-7B-Instruct runs as the real checkpoint would:
sampling follows the trainer's config and not the checkpoint's near-greedy generation config, every eos id of the
checkpoint ends a turn, and rollouts, a training step and an evaluation run on it."""

import json

import torch
from datasets import Dataset
from forward_pass import recompute_logps
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from agentic_vlm.config import AgenticGRPOConfig
from agentic_vlm.eval import rollout_dataset
from agentic_vlm.families import chat_template, get_family
from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.rollout import SamplingSettings
from agentic_vlm.tools import ZoomTool
from agentic_vlm.trainer import AgenticGRPOTrainer


def image_row(question="What is in the picture?"):
    image = Image.new("RGB", (96, 72), (200, 30, 30))
    return {"prompt": [{"role": "user", "content": question}], "images": [image], "answer": "red"}


def test_like_model_carries_the_checkpoint_settings(like_model_dir):
    generation = json.loads(open(f"{like_model_dir}/generation_config.json").read())
    assert {k: generation[k] for k in ("top_k", "top_p", "temperature", "repetition_penalty", "eos_token_id")} == {
        "top_k": 1, "top_p": 0.001, "temperature": 0.1, "repetition_penalty": 1.05, "eos_token_id": [151645, 151643]}
    processor = AutoProcessor.from_pretrained(like_model_dir)
    image_processor = processor.image_processor
    assert image_processor.size == {"shortest_edge": 3136, "longest_edge": 12845056}  # min and max pixels
    assert (image_processor.patch_size, image_processor.merge_size, image_processor.temporal_patch_size) == (14, 2, 2)
    family = get_family("qwen2.5-vl")
    assert len(processor.tokenizer) == family.first_added_id + len(family.added_tokens)
    assert processor.tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [9707, 1879]
    assert processor.chat_template == chat_template(family)
    # A 1000x1000 photo is shown at its real resolution (the tiny test processor would shrink it to 224x224).
    inputs = processor(text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[Image.new("RGB", (1000, 1000))])
    assert inputs["image_grid_thw"].tolist() == [[1, 72, 72]]
    vision = AutoModelForImageTextToText.from_pretrained(like_model_dir).config.vision_config
    # Window attention in every block but the listed full-attention ones, as in the real tower.
    assert vision.window_size == 112 and 0 not in vision.fullatt_block_indexes


def test_group_samples_by_the_config_not_the_checkpoint(like_model_dir, tmp_path):
    """TRL's default sampling (temperature 1, top_p 1, top_k 0) on a checkpoint whose file says top_k 1: a group of 8
    must differ, and the recorded sampling log-probabilities must be what the training forward pass computes."""
    args = AgenticGRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=8, max_completion_length=12,
        max_turns=1, report_to="none", use_cpu=True, bf16=False, log_trajectories_steps=0,
    )
    dataset = Dataset.from_list([{"prompt": image_row()["prompt"], "answer": "red"}] * 8)
    trainer = AgenticGRPOTrainer(model=like_model_dir, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                                 args=args, train_dataset=dataset, tools=[ZoomTool()], protocol=ArftProtocol())
    assert trainer.eos_token_ids[:2] == [151645, 151643]
    torch.manual_seed(0)
    trainer.model.train()
    batch = trainer._generate_and_score_completions([image_row() for _ in range(8)])
    completions = {tuple(t.completion_ids) for t in trainer._rollout_trajectories}
    assert len(completions) >= 6

    logps = recompute_logps(trainer, batch)
    mask = (batch["completion_mask"] * batch["tool_mask"]).bool()
    assert (logps - batch["sampling_per_token_logps"]).abs()[mask].max().item() < 1e-3

    # The check has teeth: generate left to the checkpoint's file draws one completion eight times.
    model = trainer.model.eval()
    row = trainer._rollout_trajectories[0]
    prompt = torch.tensor([row.prompt_ids] * 8)
    pixel_values = trainer.processing_class.image_processor(images=[image_row()["images"][0]] * 8,
                                                            return_tensors="pt")
    drawn = model.generate(input_ids=prompt, pixel_values=pixel_values["pixel_values"],
                           image_grid_thw=pixel_values["image_grid_thw"], max_new_tokens=8)
    assert len({tuple(ids) for ids in drawn[:, prompt.shape[1]:].tolist()}) == 1


def test_every_checkpoint_eos_ends_a_turn_once(like_model_dir):
    """The model may end a turn with <|endoftext|> (the checkpoint's second eos id): the turn ends there and the
    template's <|im_end|> is not added after it."""
    processor = AutoProcessor.from_pretrained(like_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(like_model_dir).eval()
    tokenizer = processor.tokenizer
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    protocol, tools = ArftProtocol(), [ZoomTool()]

    def forced(requests, max_new_tokens):  # turn 0: a turn without an action, closed by <|endoftext|>; then answer
        script = ["<think>hm</think>", "<think>ok</think><answer>red</answer>"]
        ids = [tokenizer(script[r.turn], add_special_tokens=False)["input_ids"] + [endoftext] for r in requests]
        return generator.generate(model, requests, max_new_tokens, forced_ids=ids)

    from agentic_vlm.families import end_of_turn_token_ids
    from agentic_vlm.rollout import RolloutEngine, TransformersTurnGenerator

    eos_ids = end_of_turn_token_ids(tokenizer, model.config, model.generation_config)
    generator = TransformersTurnGenerator(processor, model.config, protocol.stop_strings(tools),
                                          SamplingSettings(do_sample=False), eos_token_ids=eos_ids)
    engine = RolloutEngine(processor, protocol, tools, forced, max_turns=2, max_completion_length=200,
                           eos_token_ids=eos_ids)
    try:
        [trajectory] = engine.run([image_row()["prompt"]], [image_row()])
    finally:
        engine.close()
    assert trajectory.stop_reason == "answer"
    text = tokenizer.decode(trajectory.completion_ids)
    assert text.startswith("<think>hm</think><|endoftext|>\n<|im_start|>user\n")
    assert "<|endoftext|><|im_end|>" not in text
    assert text.endswith("<answer>red</answer><|endoftext|>")


def test_training_step_and_eval_run_on_it(like_model_dir, tmp_path):
    args = AgenticGRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2, max_completion_length=16,
        max_turns=2, max_steps=1, report_to="none", use_cpu=True, bf16=False, log_trajectories_steps=0,
    )
    dataset = Dataset.from_list([image_row()] * 2)

    def length(completions, **kwargs):  # random completions differ in length: nonzero advantages
        return [float(len(completion[0]["content"])) for completion in completions]

    trainer = AgenticGRPOTrainer(model=like_model_dir, args=args, train_dataset=dataset, reward_funcs=[length])
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 1
    assert any(not torch.equal(before[name], p) for name, p in trainer.model.named_parameters())

    processor = AutoProcessor.from_pretrained(like_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(like_model_dir)
    [(rows, trajectories)] = list(rollout_dataset(model, processor, ArftProtocol(), [ZoomTool()], [image_row()] * 2,
                                                  max_turns=2, max_completion_length=16, progress=False))
    # Greedy by our settings: both rows identical, whatever the checkpoint's repetition_penalty would have done.
    assert trajectories[0].completion_ids == trajectories[1].completion_ids
    assert all(len(t.completion_ids) > 0 for t in trajectories)
