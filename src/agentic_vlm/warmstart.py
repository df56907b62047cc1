"""Supervised warm start on reference trajectories, before GRPO.

A dataset row's ``solution`` lists the assistant turns of a reference trajectory. They are replayed through the
rollout engine with the tools running live, so the training sequence holds exactly the tokens, the observation
images and the observation masks that a real rollout would; the loss is the negative log-likelihood of the model's
own tokens only. A few dozen steps teach a small model the protocol, so that GRPO starts from trajectories that
reach an answer.
"""

from __future__ import annotations

import random

import torch
from tqdm.auto import tqdm
from transformers import get_scheduler
from trl.data_utils import prepare_multimodal_messages

from .frames import ImageView, image_token_mismatch
from .protocols.base import Protocol
from .recipe import WARMSTART_SCHEDULES
from .rollout import RolloutEngine, ScriptedTurnGenerator, Trajectory
from .tools.base import Tool


def prompt_messages(row: dict) -> list[dict]:
    """The row's conversational prompt with its images placed in the first user message, as TRL does."""
    images = row.get("images") or ([row["image"]] if row.get("image") is not None else [])
    return prepare_multimodal_messages(row["prompt"], images=images)


def trajectory_batch(trajectories: list[Trajectory], processing_class, image_token_id: int | None) -> dict:
    """Right-padded model inputs and labels (-100 on the prompt, on observations and on padding), with the vision
    inputs of every image of every trajectory.

    The rollout engine lets go of a trajectory's pixel values once it is done, so the images are encoded here again
    (as TRL's forward pass does for GRPO). Each trajectory's image tokens are checked against its features: the model
    would run on placeholder tokens with no image behind them and say nothing.
    """
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    width = max(len(t.prompt_ids) + len(t.completion_ids) for t in trajectories)
    input_ids = torch.full((len(trajectories), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(trajectories), width), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(trajectories), width), dtype=torch.long)
    for row, t in enumerate(trajectories):
        ids = t.prompt_ids + t.completion_ids
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        completion = torch.tensor(t.completion_ids)
        completion[torch.tensor(t.tool_mask) == 0] = -100
        labels[row, len(t.prompt_ids): len(ids)] = completion
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    if image_token_id is None:  # a text-only model
        return batch
    images = [image for t in trajectories for image in t.images]
    encoded = processing_class.image_processor(images=images, return_tensors="pt") if images else None
    grids = (encoded["image_grid_thw"].split([len(t.images) for t in trajectories]) if images
             else [None] * len(trajectories))
    merge_length = processing_class.image_processor.merge_size ** 2
    for t, grid in zip(trajectories, grids, strict=True):
        mismatch = image_token_mismatch(t.prompt_ids + t.completion_ids, grid if grid is not None and len(grid)
                                        else None, image_token_id, merge_length)
        if mismatch is not None:
            index, tokens, features = mismatch
            raise ValueError(f"warm start, trajectory {t.id}: {t.image_source(index)} has {tokens} image tokens in "
                             f"the ids but {features} image features")
    if not images:
        return batch
    batch |= {"pixel_values": encoded["pixel_values"], "image_grid_thw": encoded["image_grid_thw"],
              "mm_token_type_ids": (input_ids == image_token_id).long()}
    return batch


def supervised_warm_start(
    model,
    processing_class,
    protocol: Protocol,
    tools: list[Tool],
    dataset,
    *,
    steps: int,
    learning_rate: float = 1e-3,
    lr_scheduler_type: str = "constant",
    batch_size: int = 8,
    max_completion_length: int = 1024,
    seed: int = 0,
    system_prompt: str | None = None,
) -> list[float]:
    """Train ``model`` for ``steps`` steps on the ``solution`` column of ``dataset``; returns the losses."""
    if lr_scheduler_type not in WARMSTART_SCHEDULES:
        raise ValueError(f"lr_scheduler_type must be one of {', '.join(WARMSTART_SCHEDULES)}, got {lr_scheduler_type!r}")
    if "solution" not in dataset.column_names:
        raise ValueError("the warm start needs a 'solution' column: the reference assistant turns of each row")
    generator = ScriptedTurnGenerator(
        processing_class, protocol.stop_strings(tools), script=lambda request: request.row["solution"][request.turn]
    )
    engine = RolloutEngine(
        processing_class, protocol, tools, generator,
        max_turns=max(len(solution) for solution in dataset["solution"]),
        max_completion_length=max_completion_length,
        system_prompt=system_prompt,
        keep_pixel_values=False,  # the script reads no image; the batch encodes them (trajectory_batch)
        # Boxes in the solutions are read in the frame GRPO's rollouts use (Qwen3-VL: 0-1000), not the processor's.
        image_view=ImageView.for_model(processing_class, model.config),
    )
    image_token_id = getattr(model.config, "image_token_id", None)
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW((p for p in model.parameters() if p.requires_grad), lr=learning_rate)
    scheduler = get_scheduler(lr_scheduler_type, optimizer, num_warmup_steps=0, num_training_steps=steps)
    order = random.Random(seed)
    indices: list[int] = []
    losses = []
    model.train()
    try:
        for _ in tqdm(range(steps), desc="warm start"):
            if len(indices) < batch_size:
                indices += order.sample(range(len(dataset)), len(dataset))
            rows = [dataset[i] for i in indices[:batch_size]]
            del indices[:batch_size]
            trajectories = engine.run([prompt_messages(row) for row in rows], rows)
            batch = trajectory_batch(trajectories, processing_class, image_token_id)
            loss = model(**{key: value.to(device) for key, value in batch.items()}).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    finally:
        engine.close()
    return losses
