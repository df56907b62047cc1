"""The supervised warm start trains on what generation sees: the same tokens, and every image of the trajectory.

The rollout engine lets go of a finished trajectory's pixel values; a warm start that read them from the trajectory
trained on image placeholder tokens with no image behind them, and the model, told nothing, learned a policy that
generation (which does see the images) never follows: after a warm start the tiny model wrote "<zoom" with
probability 0.99 under the training forward pass and 0.02 in generation.
"""

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from agentic_vlm.data import load_jsonl_dataset
from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.rollout import RolloutEngine, ScriptedTurnGenerator, TransformersTurnGenerator
from agentic_vlm.rollout.generation import SamplingSettings
from agentic_vlm.tools import ZoomTool
from agentic_vlm.warmstart import prompt_messages, supervised_warm_start, trajectory_batch


@pytest.fixture(scope="module")
def sharp_model(tiny_model_dir):
    """The tiny model with its weight matrices tripled, so that its log-probabilities clearly depend on the images."""
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.mul_(3.0)
    return model.eval()


def solution_logprobs_in_generation(model, processor, rows):
    """Each row's reference solution written through transformers' ``generate`` (teacher-forced), tools live: the
    trajectories and the model's log-probabilities of its tokens as generation computed them."""
    protocol, tools = ArftProtocol(), [ZoomTool()]
    script = ScriptedTurnGenerator(processor, protocol.stop_strings(tools), lambda r: r.row["solution"][r.turn])
    generator = TransformersTurnGenerator(processor, model.config, protocol.stop_strings(tools),
                                          SamplingSettings(do_sample=False))

    def forced(requests, max_new_tokens):
        ids = [script.turn_ids(request.row["solution"][request.turn]) for request in requests]
        return generator.generate(model, requests, max_new_tokens, forced_ids=ids)

    engine = RolloutEngine(processor, protocol, tools, forced, max_turns=2, max_completion_length=256)
    try:
        return engine.run([prompt_messages(row) for row in rows], rows)
    finally:
        engine.close()


def test_the_warm_start_forward_pass_matches_generation_images_included(sharp_model, tiny_model_dir, zoom_data_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    dataset = load_jsonl_dataset(f"{zoom_data_dir}/train.jsonl")
    rows = [dataset[0], dataset[1]]
    trajectories = solution_logprobs_in_generation(sharp_model, processor, rows)
    assert all(len(t.images) == 2 for t in trajectories)  # the prompt's image and the zoomed one
    assert all(t.pixel_values is None for t in trajectories)  # the engine has let go of them

    batch = trajectory_batch(trajectories, processor, sharp_model.config.image_token_id)
    with torch.no_grad():
        logits = sharp_model(**batch).logits
    logprobs = torch.log_softmax(logits[:, :-1].float(), -1)
    for row, trajectory in enumerate(trajectories):
        labels = batch["labels"][row, 1:]
        trained = labels != -100
        training = logprobs[row][trained].gather(-1, labels[trained][:, None])[:, 0]
        model_tokens = torch.tensor(trajectory.tool_mask) == 1
        generation = torch.tensor(trajectory.logprobs)[model_tokens]
        assert len(training) == len(generation) > 20
        torch.testing.assert_close(training, generation, atol=2e-4, rtol=0)


def test_a_batch_whose_image_tokens_do_not_match_the_images_is_refused(tiny_model_dir, zoom_data_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    dataset = load_jsonl_dataset(f"{zoom_data_dir}/train.jsonl")
    trajectories = solution_logprobs_in_generation(model, processor, [dataset[0]])
    images = trajectories[0].images
    for kept in (images[:1], []):  # the zoomed image lost; every image lost (the batch would hold none)
        trajectories[0].images = kept
        with pytest.raises(ValueError, match=r"warm start, trajectory \w+: .* has \d+ image tokens in the ids but "
                                             r"0 image features"):
            trajectory_batch(trajectories, processor, model.config.image_token_id)


def test_a_few_warm_start_steps_lower_the_loss_on_the_reference_trajectories(tiny_model_dir, zoom_data_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    dataset = load_jsonl_dataset(f"{zoom_data_dir}/train.jsonl")
    losses = supervised_warm_start(model, processor, ArftProtocol(), [ZoomTool()], dataset, steps=6,
                                   learning_rate=3e-3, batch_size=4)
    assert len(losses) == 6 and losses[-1] < losses[0]


@pytest.mark.parametrize(("schedule", "expected"), [("constant", [1.0, 1.0, 1.0, 1.0]),
                                                    ("linear", [1.0, 0.75, 0.5, 0.25])])
def test_the_warm_start_follows_its_learning_rate_schedule(schedule, expected, tiny_model_dir, zoom_data_dir,
                                                           monkeypatch):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    dataset = load_jsonl_dataset(f"{zoom_data_dir}/train.jsonl")
    rates, step = [], torch.optim.AdamW.step

    def recorded_step(optimizer, *args, **kwargs):
        rates.append(optimizer.param_groups[0]["lr"])
        return step(optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recorded_step)
    supervised_warm_start(model, processor, ArftProtocol(), [ZoomTool()], dataset, steps=4, learning_rate=2e-3,
                          lr_scheduler_type=schedule, batch_size=2)
    assert rates == pytest.approx([2e-3 * factor for factor in expected])


def test_the_warm_start_reads_solution_boxes_in_the_frame_of_the_models_rollouts(tiny_model_dirs, zoom_data_dir,
                                                                                 monkeypatch):
    """Qwen3-VL writes boxes in 0-1000 of the image; GRPO's rollouts read them so, and so must the warm start."""
    import agentic_vlm.warmstart as warmstart

    model_dir = tiny_model_dirs["qwen3-vl"]
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    zoom_top_left_quarter = ["<think>Closer.</think>\n<zoom>[0, 0, 500, 500]</zoom>",
                             "<think>Red.</think>\n<answer>red</answer>"]
    dataset = load_jsonl_dataset(f"{zoom_data_dir}/train.jsonl").select([0])
    dataset = dataset.map(lambda row: {"solution": zoom_top_left_quarter})
    batches = []
    monkeypatch.setattr(warmstart, "trajectory_batch", lambda trajectories, *args: batches.append(trajectories)
                        or trajectory_batch(trajectories, *args))
    supervised_warm_start(model, processor, ArftProtocol(), [ZoomTool()], dataset, steps=1, batch_size=1)
    (trajectory,) = batches[0]
    prompt_image, zoomed = trajectory.images
    # The image's top-left quarter: 112 x 112 of 224 x 224 (read in pixels, the box would cover the whole image).
    assert prompt_image.size == (224, 224) and zoomed.size == (112, 112)
    assert list(zoomed.getdata()) == list(prompt_image.crop((0, 0, 112, 112)).getdata())


def test_the_warm_start_trains_under_the_recipes_system_prompt(tiny_model_dir, zoom_data_dir, monkeypatch):
    """GRPO's rollouts and eval use the recipe's ``system_prompt``; a warm start under the protocol's own prompt would
    teach the model a context it never sees again."""
    import agentic_vlm.warmstart as warmstart

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    dataset = load_jsonl_dataset(f"{zoom_data_dir}/train.jsonl").select([0])
    batches = []
    monkeypatch.setattr(warmstart, "trajectory_batch", lambda trajectories, *args: batches.append(trajectories)
                        or trajectory_batch(trajectories, *args))
    system_prompt = "Zoom first, then answer with one colour."
    supervised_warm_start(model, processor, ArftProtocol(), [ZoomTool()], dataset, steps=1, batch_size=1,
                          system_prompt=system_prompt)
    (trajectory,) = batches[0]
    prompt = processor.tokenizer.decode(trajectory.prompt_ids)
    assert system_prompt in prompt and "may use tools" not in prompt  # the protocol's own prompt is not there
