import pytest
from transformers import AutoModelForImageTextToText, AutoProcessor

from agentic_vlm.families import TINY_FAMILIES, get_family
from agentic_vlm.tiny import build_tokenizer, make_tiny_model

STOCK_PROCESSORS = {"qwen2.5-vl": "Qwen2_5_VLProcessor", "qwen3-vl": "Qwen3VLProcessor", "qwen3.5": "Qwen3VLProcessor"}
GENERATION_PROMPTS = {"qwen2.5-vl": "<|im_start|>assistant\n", "qwen3-vl": "<|im_start|>assistant\n",
                      "qwen3.5": "<|im_start|>assistant\n<think>\n"}


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_small_vocab_model_loads_with_auto_classes(family, tiny_model_dirs, zoom_example):
    processor = AutoProcessor.from_pretrained(tiny_model_dirs[family])
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dirs[family])
    tokenizer = processor.tokenizer
    assert type(processor).__name__ == STOCK_PROCESSORS[family]
    text_config = model.config.get_text_config()
    head_dim = getattr(text_config, "head_dim", text_config.hidden_size // text_config.num_attention_heads)
    assert head_dim >= 32  # vLLM's CPU attention needs it
    registry = get_family(family)
    assert model.config.model_type in registry.model_types
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids(registry.image_token)
    assert model.generation_config.eos_token_id == [tokenizer.convert_tokens_to_ids(t) for t in registry.eos_tokens]
    # The added tokens follow the base vocabulary in the real order; <tool_call> and <think> stay text when decoding.
    added = [tokenizer.convert_tokens_to_ids(token) for token in registry.added_tokens]
    assert added == list(range(added[0], added[0] + len(added))) and added[-1] == len(tokenizer) - 1
    round_trip = "<think>a</think><tool_call>{}</tool_call><|im_end|>"
    kept = tokenizer.decode(tokenizer(round_trip)["input_ids"], skip_special_tokens=True)
    assert kept == round_trip.removesuffix("<|im_end|>")

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n" + GENERATION_PROMPTS[family])
    inputs = processor(text=[text], images=[zoom_example["image"]], return_tensors="pt")
    # 224x224: 16x16 patches of 14 px (Qwen2.5-VL) or 14x14 of 16 px, then a 2x2 merge
    assert (inputs["input_ids"] == model.config.image_token_id).sum() == {14: 64, 16: 49}[registry.patch_size]
    logits = model(**inputs).logits
    assert logits.shape[-1] == len(tokenizer)


@pytest.mark.slow
def test_real_vocab_matches_the_released_tokenizer():
    """Qwen3-VL's tokenizer is Qwen2.5-VL's with four more added tokens; one build (~90 s) checks both layouts."""
    tokenizer = build_tokenizer("real", "qwen3-vl")
    assert get_family("qwen3-vl").added_tokens[:22] == get_family("qwen2.5-vl").added_tokens
    assert len(tokenizer) == 151669
    ids = [tokenizer.convert_tokens_to_ids(token) for token in get_family("qwen3-vl").added_tokens]
    assert ids == list(range(151643, 151669))
    assert [tokenizer.convert_tokens_to_ids(t) for t in ("<tool_call>", "<think>", "</think>")] == [151657, 151667, 151668]
    assert tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [9707, 1879]
    assert tokenizer.decode(tokenizer("Über 12 çà </zoom>")["input_ids"]) == "Über 12 çà </zoom>"


def test_qwen3_5_ids_follow_the_registry(tiny_model_dirs):
    """Qwen3.5's 248k vocabulary has no offline copy: the tiny model keeps the added tokens' order on a small one."""
    with pytest.raises(ValueError, match="no offline copy of the qwen3.5 base vocabulary"):
        build_tokenizer("real", "qwen3.5")
    tokenizer = AutoProcessor.from_pretrained(tiny_model_dirs["qwen3.5"]).tokenizer
    image = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert tokenizer.convert_tokens_to_ids("<think>") - image == 248068 - 248056


def test_like_qwen3_5_carries_its_settings_on_the_small_vocabulary(tmp_path):
    from transformers import GenerationConfig

    directory = make_tiny_model(tmp_path, like="qwen3.5-27b")
    tokenizer = AutoProcessor.from_pretrained(directory).tokenizer
    config = GenerationConfig.from_pretrained(directory)
    assert (config.temperature, config.top_k, config.top_p) == (1.0, 20, 0.95)
    # [248046, 248044] in the released file: <|im_end|> and <|endoftext|>, on the small vocabulary's ids
    assert config.eos_token_id == [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    processor = AutoProcessor.from_pretrained(directory)
    assert processor.image_processor.size == {"shortest_edge": 65536, "longest_edge": 16777216}
    assert processor.image_processor.patch_size == 16


def test_build_is_deterministic(tmp_path):
    first = make_tiny_model(tmp_path / "a", seed=3, family="qwen3-vl")
    second = make_tiny_model(tmp_path / "b", seed=3, family="qwen3-vl")
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert (first / "tokenizer.json").read_text() == (second / "tokenizer.json").read_text()


def test_unknown_family_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no tiny model for family 'qwen2-vl'"):
        make_tiny_model(tmp_path, family="qwen2-vl")
