"""What the library must know about each vision-language model family, in one place.

The rollout engine, the tools and the rewards ask this registry instead of hard-coding one model: which tokens stand
for an image, which ones end a turn, in which frame the model writes box coordinates, and what the released
checkpoints of the family set in their ``generation_config.json`` and ``preprocessor_config.json`` (the settings a
tiny test model must carry to behave like a real one). Adding a family is adding an entry to ``FAMILIES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# How a model writes box coordinates:
# - "resized_pixels": absolute pixels of the image as the processor resized it (Qwen2.5-VL);
# - "relative_1000": 0-1000 of the image's width and height, whatever its size (Qwen2-VL, Qwen3-VL).
BoxFrame = Literal["resized_pixels", "relative_1000", "original_pixels"]


@dataclass(frozen=True)
class CheckpointSettings:
    """The settings a released checkpoint ships, for building a tiny model that behaves like it."""

    generation_config: dict[str, Any]
    preprocessor_config: dict[str, Any]


@dataclass(frozen=True)
class ModelFamily:
    """One model family: its tokens, coordinate frame and released checkpoints."""

    name: str
    model_types: tuple[str, ...]  # ``config.model_type`` values of the family
    image_token: str
    video_token: str | None
    vision_start_token: str
    vision_end_token: str
    eos_tokens: tuple[str, ...]  # every token that ends an assistant turn
    box_frame: BoxFrame
    checkpoints: dict[str, CheckpointSettings] = field(default_factory=dict)  # by ``--like`` name


_QWEN2_5_VL_PREPROCESSOR = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "merge_size": 2,
    "temporal_patch_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}
_QWEN2_5_VL_GENERATION = {
    "do_sample": True,
    "temperature": 0.1,
    "top_k": 1,
    "top_p": 0.001,
    "repetition_penalty": 1.05,
    "bos_token_id": 151643,
    "eos_token_id": [151645, 151643],
    "pad_token_id": 151643,
}

FAMILIES: dict[str, ModelFamily] = {
    family.name: family
    for family in (
        ModelFamily(
            name="qwen2.5-vl",
            model_types=("qwen2_5_vl",),
            image_token="<|image_pad|>",
            video_token="<|video_pad|>",
            vision_start_token="<|vision_start|>",
            vision_end_token="<|vision_end|>",
            eos_tokens=("<|im_end|>", "<|endoftext|>"),
            box_frame="resized_pixels",
            checkpoints={
                "qwen2.5-vl-7b-instruct": CheckpointSettings(_QWEN2_5_VL_GENERATION, _QWEN2_5_VL_PREPROCESSOR),
            },
        ),
        ModelFamily(
            name="qwen2-vl",
            model_types=("qwen2_vl",),
            image_token="<|image_pad|>",
            video_token="<|video_pad|>",
            vision_start_token="<|vision_start|>",
            vision_end_token="<|vision_end|>",
            eos_tokens=("<|im_end|>", "<|endoftext|>"),
            box_frame="relative_1000",
        ),
    )
}


def get_family(name: str) -> ModelFamily:
    """The family registered as ``name`` (e.g. ``"qwen2.5-vl"``)."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


def family_of(config) -> ModelFamily:
    """The family of a model, from its config (or the config's ``model_type`` string)."""
    model_type = config if isinstance(config, str) else getattr(config, "model_type", None)
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    known = sorted(t for family in FAMILIES.values() for t in family.model_types)
    raise ValueError(f"model type {model_type!r} is not a registered family; known model types: {', '.join(known)}")


def checkpoint_settings(like: str) -> tuple[ModelFamily, CheckpointSettings]:
    """The family and settings of a released checkpoint, by name (``"qwen2.5-vl-7b-instruct"``)."""
    for family in FAMILIES.values():
        if like in family.checkpoints:
            return family, family.checkpoints[like]
    known = sorted(name for family in FAMILIES.values() for name in family.checkpoints)
    raise ValueError(f"unknown checkpoint {like!r} for --like; known: {', '.join(known)}")


def end_of_turn_token_ids(tokenizer, model_config=None, generation_config=None) -> list[int]:
    """Every token id that ends an assistant turn, the tokenizer's ``eos_token_id`` first: with the ids of the
    checkpoint's ``generation_config.eos_token_id`` (Qwen2.5-VL-7B-Instruct lists two) and the eos tokens of the
    model's family when ``model_config`` is of a registered one."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    listed = getattr(generation_config, "eos_token_id", None)
    ids += [listed] if isinstance(listed, int) else list(listed or [])
    model_type = getattr(model_config, "model_type", None)
    family = next((f for f in FAMILIES.values() if model_type in f.model_types), None)
    if family is not None:
        vocabulary = tokenizer.get_vocab()
        ids += [vocabulary[token] for token in family.eos_tokens if token in vocabulary]
    return list(dict.fromkeys(ids))
