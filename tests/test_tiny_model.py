import pytest
from transformers import AutoModelForImageTextToText, AutoProcessor

from agentic_vlm.tiny import QWEN2_FIRST_SPECIAL_ID, QWEN2_SPECIAL_TOKENS, build_tokenizer, make_tiny_model


def test_small_vocab_model_loads_with_auto_classes(tiny_model_dir, zoom_example):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert model.config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    inputs = processor(text=[text], images=[zoom_example["image"]], return_tensors="pt")
    assert (inputs["input_ids"] == model.config.image_token_id).sum() == 64  # 224x224: 16x16 patches, 2x2 merge
    logits = model(**inputs).logits
    assert logits.shape[-1] == len(processor.tokenizer)


@pytest.mark.slow
def test_real_vocab_matches_qwen2(tmp_path):
    tokenizer = build_tokenizer("real")
    assert len(tokenizer) == QWEN2_FIRST_SPECIAL_ID + len(QWEN2_SPECIAL_TOKENS) == 151665
    ids = [tokenizer.convert_tokens_to_ids(token) for token in QWEN2_SPECIAL_TOKENS]
    assert ids == list(range(151643, 151665))
    assert tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [9707, 1879]
    assert tokenizer.decode(tokenizer("Über 12 çà </zoom>")["input_ids"]) == "Über 12 çà </zoom>"


def test_build_is_deterministic(tmp_path):
    first = make_tiny_model(tmp_path / "a", seed=3)
    second = make_tiny_model(tmp_path / "b", seed=3)
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert (first / "tokenizer.json").read_text() == (second / "tokenizer.json").read_text()
