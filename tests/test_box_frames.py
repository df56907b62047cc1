"""Box coordinates mean what the model family means, on an image the processor resizes.

The processor of the Qwen2.5-VL-7B-Instruct-like model, limited to max_pixels 401408 as in many recipes, shows a
2000x1500 photo at 728x532: Qwen2.5-VL's box [0, 0, 364, 266] is the top-left quarter of the original.
"""

import asyncio

import pytest
from PIL import Image
from transformers import AutoProcessor

from agentic_vlm.frames import ImageView
from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.rewards import build_reward_funcs
from agentic_vlm.rollout import RolloutEngine, ScriptedTurnGenerator
from agentic_vlm.tools import ToolContext, ZoomTool
from agentic_vlm.warmstart import prompt_messages


@pytest.fixture(scope="module")
def processor(like_model_dir):
    return AutoProcessor.from_pretrained(like_model_dir, max_pixels=401408)


@pytest.fixture
def photo():
    image = Image.new("RGB", (2000, 1500), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 1000, 750))  # the top-left quarter is red
    return image


def zoom(tool, box, photo, view):
    return asyncio.run(tool(box, ToolContext(trajectory_id="t", images=[photo], image_view=view)))


def test_the_processor_shows_the_photo_smaller(processor, photo):
    view = ImageView.of(processor)
    assert (view.min_pixels, view.max_pixels, view.factor) == (3136, 401408, 28)
    assert view.shown_size(photo.size) == (728, 532)
    inputs = processor.image_processor(images=[photo], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 532 // 14, 728 // 14]]  # what the model really sees


@pytest.mark.parametrize(("frame", "box"), [("resized_pixels", "[0, 0, 364, 266]"),
                                            ("relative_1000", "[0, 0, 500, 500]"),
                                            ("original_pixels", "[0, 0, 1000, 750]")])
def test_zoom_maps_the_box_onto_the_original(processor, photo, frame, box):
    observation = zoom(ZoomTool(min_side=1, max_side=4000), box, photo, ImageView.of(processor, frame))
    (crop,) = observation.images
    assert crop.size == (1000, 750)
    assert set(crop.getdata()) == {(255, 0, 0)}  # exactly the red quarter


def test_zoom_frame_can_be_overridden(processor, photo):
    tool = ZoomTool(min_side=1, max_side=4000, box_frame="original_pixels")
    (crop,) = zoom(tool, "[0, 0, 364, 266]", photo, ImageView.of(processor, "resized_pixels")).images
    assert crop.size == (364, 266)
    message = zoom(ZoomTool(), "[800, 600, 900, 700]", photo, ImageView.of(processor)).text
    assert "no area inside the 728x532 image" in message  # told in the frame it writes in


def test_the_engine_gives_tools_the_processor_resize(processor, photo):
    protocol, tools = ArftProtocol(), [ZoomTool(min_side=1, max_side=4000)]
    script = ["<think>z</think><zoom>[0, 0, 364, 266]</zoom>", "<think>red</think><answer>red</answer>"]
    engine = RolloutEngine(processor, protocol, tools,
                           ScriptedTurnGenerator(processor, protocol.stop_strings(tools), lambda r: script[r.turn]),
                           max_turns=2, max_completion_length=2048)
    row = {"prompt": [{"role": "user", "content": "Color?"}], "images": [photo]}
    try:
        (trajectory,) = engine.run([prompt_messages(row)], [row])
    finally:
        engine.close()
    (crop,) = trajectory.turns[0].observation.images
    assert set(crop.getdata()) == {(255, 0, 0)} and crop.size == (1000, 750)


def test_iou_reward_converts_from_the_model_frame(processor, photo):
    protocol, tools = ArftProtocol(), [ZoomTool()]
    (iou,) = build_reward_funcs(["iou"], protocol, tools)
    completion = [[{"role": "assistant", "content": "<think>t</think><answer>[0, 0, 364, 266]</answer>"}]]
    truth = {"boxes": [[[0, 0, 1000, 750]]], "images": [[photo]]}
    assert iou(completion, **truth) == [pytest.approx(364 * 266 / (1000 * 750))]  # on its own: original pixels
    iou.image_view = ImageView.of(processor, "resized_pixels")  # as the trainer and the evaluator set it
    assert iou(completion, **truth) == [pytest.approx(1.0)]
    (override,) = build_reward_funcs(["iou"], protocol, tools, {"iou": {"coordinates": "norm1000"}})
    override.image_view = iou.image_view
    assert override([[{"role": "assistant", "content": "<think>t</think><answer>[0, 0, 500, 500]</answer>"}]],
                    **truth) == [pytest.approx(1.0)]
