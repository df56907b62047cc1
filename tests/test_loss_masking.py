"""Which trajectories the loss leaves out, with images in the completions, and the image check of the forward pass.

One batch mixes a trajectory that answers, one cut off by the token budget after a tool returned an image, and one
that uses all its turns without answering; each has its own tool image in the middle of its completion.
"""

import pytest
import torch
from datasets import Dataset

from agentic_vlm.config import AgenticGRPOConfig
from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.rewards import build_reward_funcs
from agentic_vlm.rollout import ScriptedTurnGenerator
from agentic_vlm.tools import ZoomTool
from agentic_vlm.trainer import AgenticGRPOTrainer

ZOOM = "<think>look</think><zoom>[0, 0, 100, 100]</zoom>"
SCRIPTS = {
    "answer": [ZOOM, "<think>red</think><answer>red</answer>"],
    "length": [ZOOM, "<think>" + "and more " * 200],
    "max_turns": [ZOOM, ZOOM, ZOOM],
}


def make_batch(model_dir, tmp_path, image, **masking):
    args = AgenticGRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=3, num_generations=3, max_completion_length=200,
        max_turns=3, report_to="none", use_cpu=True, bf16=False, log_trajectories_steps=0, **masking,
    )
    protocol, tools = ArftProtocol(), [ZoomTool(min_side=56, max_side=56)]
    rows = [{"prompt": [{"role": "user", "content": "What color?"}], "images": [image], "answer": "red",
             "box": [0, 0, 10, 10], "kind": kind} for kind in SCRIPTS]
    trainer = AgenticGRPOTrainer(model=model_dir, args=args, train_dataset=Dataset.from_list(rows[:1] * 3),
                                 reward_funcs=build_reward_funcs(["iou"], protocol, tools), tools=tools,
                                 protocol=protocol)
    trainer.rollout_engine.generate = ScriptedTurnGenerator(
        trainer.processing_class, protocol.stop_strings(tools), lambda r: SCRIPTS[r.row["kind"]][r.turn])
    trainer.model.train()
    return trainer, trainer._generate_and_score_completions(rows)


def loss(trainer, batch):
    batch["advantages"] = torch.tensor([1.0, -0.5, -0.5])
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this test does not run
    return trainer.compute_loss(trainer.model, batch)


@pytest.mark.parametrize(("masking", "left_out"), [
    ({}, []),
    ({"mask_truncated_completions": True}, ["length"]),
    ({"mask_over_turn_completions": True}, ["max_turns"]),
    ({"mask_truncated_completions": True, "mask_over_turn_completions": True}, ["length", "max_turns"]),
])
def test_masked_trajectories_are_left_out_of_the_loss_only(tiny_model_dir, tmp_path, zoom_example, masking, left_out):
    trainer, batch = make_batch(tiny_model_dir, tmp_path, zoom_example["image"], **masking)
    assert [t.stop_reason for t in trainer._rollout_trajectories] == list(SCRIPTS)
    assert all(len(t.images) >= 2 for t in trainer._rollout_trajectories)  # a tool image in every completion
    model_tokens = (batch["completion_mask"] * batch["tool_mask"]).sum(dim=1)
    for row, kind in enumerate(SCRIPTS):
        assert (model_tokens[row] == 0) == (kind in left_out), kind
    # Attention is untouched: every image stays aligned with its tokens, and the loss is computed.
    assert batch["completion_mask"].sum(dim=1).tolist() == [len(t.completion_ids) for t in trainer._rollout_trajectories]
    assert torch.isfinite(loss(trainer, batch))


def test_trl_own_masking_would_break_the_images(tiny_model_dir, tmp_path, zoom_example):
    """Why TRL's version is replaced: it zeroes the attention of every sequence that does not end in eos, and the
    images of those sequences no longer match the attended image tokens."""
    trainer, batch = make_batch(tiny_model_dir, tmp_path, zoom_example["image"])
    is_truncated = torch.tensor([t.completion_ids[-1] not in trainer.eos_token_ids
                                 for t in trainer._rollout_trajectories])
    batch["completion_mask"] = batch["completion_mask"] * (~is_truncated).unsqueeze(1).int()
    with pytest.raises(ValueError, match=r"training forward pass, row 1 of the batch \(trajectory [0-9a-f]{32}, "
                                         r"image 1 returned after turn 0\): 0 image tokens in the ids but 4 image "
                                         r"features"):
        loss(trainer, batch)


def test_iou_reward_reads_boxes_in_the_model_family_frame(tiny_model_dir, tmp_path, zoom_example):
    trainer, _ = make_batch(tiny_model_dir, tmp_path, zoom_example["image"])
    (iou,) = trainer.reward_funcs
    assert iou.image_view.box_frame == "resized_pixels"  # Qwen2.5-VL's, from the registry
    assert iou.image_view.max_pixels == trainer.processing_class.image_processor.size["longest_edge"]
