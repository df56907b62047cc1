"""The training forward pass sees exactly what generation saw, and the loss ignores observation tokens.

A scripted trajectory calls the zoom tool twice (two tool-returned images after the prompt's image) and answers.
The tokens are written through the real generation path (transformers ``generate`` with the KV cache and the model's
3-D rotary positions), teacher-forced, so the recorded log-probabilities are the model's at sampling time; the
trainer's own forward pass must reproduce them. Every test runs for each model family: Qwen2.5-VL, Qwen3-VL (deepstack
features, interleaved rotary sections) and Qwen3.5 (Gated DeltaNet layers, recurrent in generation and chunked in
training).
"""

import random

import pytest
import torch
from datasets import Dataset
from forward_pass import recompute_logps

from agentic_vlm.config import AgenticGRPOConfig
from agentic_vlm.data.synthetic import make_zoom_example
from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.tiny import TINY_FAMILIES
from agentic_vlm.tools import ZoomTool
from agentic_vlm.trainer import AgenticGRPOTrainer

SCRIPT = [
    "<think>Look closer at the top left.</think>\n<zoom>[0, 0, 100, 100]</zoom>",
    "<think>Now the centre.</think>\n<zoom>[50, 60, 200, 190]</zoom>",
    "<think>It is red.</think>\n<answer>red</answer>",
]


def exact_answer(completions, answer, **kwargs):
    return [float("<answer>red</answer>" in c[-1]["content"]) for c in completions]


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def sharp_model_dir(request, tiny_model_dirs, tmp_path_factory):
    """A tiny model of each family with its weight matrices tripled: a random model at the default init barely
    depends on token positions, so a wrong position would hide inside the tolerance; this one is clearly sensitive."""
    import shutil
    from pathlib import Path

    from transformers import AutoModelForImageTextToText

    tiny_model_dir = Path(tiny_model_dirs[request.param])
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.mul_(3.0)
    output_dir = tmp_path_factory.mktemp("sharp")
    model.save_pretrained(output_dir)
    for file in tiny_model_dir.iterdir():  # the processor's files
        if not (output_dir / file.name).exists():
            shutil.copy(file, output_dir)
    return str(output_dir)


@pytest.fixture(scope="module")
def scripted_batch(sharp_model_dir, tmp_path_factory):
    """One scripted batch per family, shared by the tests below (they only read it, or write `advantages`)."""
    torch.manual_seed(0)
    args = AgenticGRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("trainer")), per_device_train_batch_size=2, num_generations=2, max_completion_length=400,
        max_turns=3, report_to="none", use_cpu=True, bf16=False, log_trajectories_steps=0,
    )
    protocol, tools = ArftProtocol(), [ZoomTool(min_side=56, max_side=112)]
    unused = Dataset.from_list([{"prompt": [{"role": "user", "content": "unused"}], "answer": "red"}] * 2)
    trainer = AgenticGRPOTrainer(model=sharp_model_dir, reward_funcs=[exact_answer], args=args, train_dataset=unused,
                                 tools=tools, protocol=protocol)
    tokenizer = trainer.processing_class.tokenizer

    def forced_generation(requests, max_new_tokens):
        forced = [tokenizer(SCRIPT[r.turn], add_special_tokens=False)["input_ids"] for r in requests]
        forced = [ids + [tokenizer.eos_token_id] if r.turn == len(SCRIPT) - 1 else ids
                  for ids, r in zip(forced, requests, strict=True)]
        return trainer._turn_generator.generate(trainer.model, requests, max_new_tokens, forced_ids=forced)

    trainer.rollout_engine.generate = forced_generation
    image = make_zoom_example(random.Random(7))["image"]
    row = {"prompt": [{"role": "user", "content": "What color is the square?"}], "images": [image],
           "answer": "red"}
    trainer.model.train()
    batch = trainer._generate_and_score_completions([dict(row), dict(row)])
    return trainer, batch


def test_trajectories_carry_two_tool_images(scripted_batch):
    trainer, batch = scripted_batch
    for trajectory in trainer._rollout_trajectories:
        assert trajectory.stop_reason == "answer"
        assert [turn.action.kind for turn in trajectory.turns] == ["tool", "tool", "answer"]
        assert len(trajectory.images) == 3  # the prompt's image and one per zoom
    assert batch["num_images"] == [3, 3]
    assert batch["image_grid_thw"].shape[0] == 6
    image_token_id = trainer.model.config.image_token_id
    image_tokens = (batch["completion_ids"] == image_token_id).sum(dim=1)
    merge = trainer.processing_class.image_processor.merge_size ** 2
    tool_image_features = batch["image_grid_thw"].prod(-1).view(2, 3)[:, 1:].sum(-1) // merge
    assert torch.equal(image_tokens, tool_image_features)  # the tool images are in the completion, not the prompt


def test_forward_pass_reproduces_sampling_logprobs(scripted_batch):
    trainer, batch = scripted_batch
    mask = (batch["completion_mask"] * batch["tool_mask"]).bool()
    sampled = batch["sampling_per_token_logps"]
    recomputed = recompute_logps(trainer, batch)
    assert mask.sum() > 40
    difference = (recomputed - sampled).abs()[mask]
    assert difference.max().item() < 1e-3

    # The check has teeth: with an image-token map that marks no image, the model places every token on 1-D positions
    # and the tokens after the images are scored differently, by far more than the tolerance.
    flat = recompute_logps(trainer, batch, mm_token_type_ids=torch.zeros_like(batch["mm_token_type_ids"]))
    assert (flat - sampled).abs()[mask].max().item() > 3e-2


def test_loss_gradient_ignores_observation_tokens(scripted_batch):
    trainer, batch = scripted_batch
    batch["advantages"] = torch.tensor([1.0, -0.5])  # identical scripted rollouts would give zero advantages
    captured = {}
    original = trainer._get_per_token_logps_and_entropies

    def capture(*args, **kwargs):
        logps, entropies, aux = original(*args, **kwargs)
        logps.retain_grad()
        captured["logps"] = logps
        return logps, entropies, aux

    trainer._get_per_token_logps_and_entropies = capture
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this test does not run
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grad = captured["logps"].grad
    observation = (batch["tool_mask"] == 0) & (batch["completion_mask"] == 1)
    model_tokens = (batch["tool_mask"] == 1) & (batch["completion_mask"] == 1)
    assert observation.sum() > 50
    assert torch.count_nonzero(grad[observation]) == 0
    assert torch.count_nonzero(grad[model_tokens]) == model_tokens.sum()
