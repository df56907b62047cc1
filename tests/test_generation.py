"""One generation call of a turn, with the real tiny model."""

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from agentic_vlm.rollout import SamplingSettings, TransformersTurnGenerator, TurnRequest


@pytest.fixture(scope="module")
def model_and_processor(tiny_model_dir):
    return (AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval(),
            AutoProcessor.from_pretrained(tiny_model_dir))


def image_request(processor, image, text="What color?"):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    return TurnRequest(inputs["input_ids"][0].tolist(), [image], inputs["pixel_values"], inputs["image_grid_thw"])


def test_stops_right_after_an_action_and_at_end_of_turn(model_and_processor, zoom_example):
    model, processor = model_and_processor
    tokenizer = processor.tokenizer
    generator = TransformersTurnGenerator(processor, model.config, ["</zoom>"], SamplingSettings())
    request = image_request(processor, zoom_example["image"])
    scripts = ["<think>x</think><zoom>[1, 2, 3, 4]</zoom> and then more words", "<answer>red</answer>"]
    forced = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in scripts]
    forced[1] += [tokenizer.eos_token_id] + tokenizer("never seen", add_special_tokens=False)["input_ids"]
    ids, logprobs = generator.generate(model, [request, request], max_new_tokens=60, forced_ids=forced)
    assert tokenizer.decode(ids[0]) == "<think>x</think><zoom>[1, 2, 3, 4]</zoom>"
    assert tokenizer.decode(ids[1]) == "<answer>red</answer><|im_end|>"
    assert [len(x) for x in logprobs] == [len(x) for x in ids]
    assert all(value < 0 for row in logprobs for value in row)


def test_never_samples_image_or_video_pad_tokens(model_and_processor, zoom_example):
    model, processor = model_and_processor
    pads = [model.config.image_token_id, model.config.video_token_id]

    def favour_pads(module, inputs, output):  # make the pad tokens by far the most likely
        output[..., pads] += 50.0
        return output

    hook = model.lm_head.register_forward_hook(favour_pads)
    try:
        request = image_request(processor, zoom_example["image"])
        generator = TransformersTurnGenerator(processor, model.config, [], SamplingSettings(temperature=1.0))
        torch.manual_seed(0)
        ids, _ = generator.generate(model, [request] * 4, max_new_tokens=30)
        assert all(len(row) == 30 or row[-1] in generator.eos_token_ids for row in ids)
        assert not any(token in pads for row in ids for token in row)
        # The check has teeth: plain sampling with the same model draws pad tokens.
        plain = model.generate(input_ids=torch.tensor([request.input_ids]), pixel_values=request.pixel_values,
                               image_grid_thw=request.image_grid_thw, max_new_tokens=5, do_sample=True)
        assert any(token in pads for token in plain[0, len(request.input_ids):].tolist())
    finally:
        hook.remove()


def test_greedy_is_deterministic(model_and_processor, zoom_example):
    model, processor = model_and_processor
    generator = TransformersTurnGenerator(processor, model.config, ["</zoom>"], SamplingSettings(do_sample=False))
    request = image_request(processor, zoom_example["image"])
    first, _ = generator.generate(model, [request], max_new_tokens=20)
    second, _ = generator.generate(model, [request, request], max_new_tokens=20)
    assert second == [first[0], first[0]]
