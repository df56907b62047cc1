import asyncio

import pytest
from PIL import Image

from agentic_vlm.tools import ToolContext, ZoomTool, build_tools
from agentic_vlm.tools.zoom import parse_box


def call(tool, argument, images):
    return asyncio.run(tool(argument, ToolContext(trajectory_id="t", images=images)))


@pytest.fixture
def quadrants():
    image = Image.new("RGB", (200, 100), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 100, 100))  # left half red, right half blue
    return image


def test_crops_the_box_and_enlarges_it(quadrants):
    observation = call(ZoomTool(min_side=112, max_side=448), "[10, 20, 60, 70]", [quadrants])
    assert observation.ok
    (crop,) = observation.images
    assert crop.size == (112, 112)  # 50x50 scaled up so that the shorter side is 112
    assert crop.getpixel((56, 56)) == (255, 0, 0)
    assert "[10, 20, 60, 70]" in observation.text


def test_clamps_the_box_to_the_image_and_caps_the_size(quadrants):
    observation = call(ZoomTool(min_side=10, max_side=100), "[150, -30, 400, 130]", [quadrants])
    (crop,) = observation.images
    assert crop.size == (50, 100)  # the box becomes [150, 0, 200, 100]; longer side already at the cap
    assert {crop.getpixel((x, y)) for x in (0, 49) for y in (0, 99)} == {(0, 0, 255)}


def test_reads_boxes_in_several_spellings():
    assert parse_box('{"bbox_2d": [1, 2.5, 3, 4]}') == (1, 2.5, 3, 4)
    assert parse_box("1 2 3 4") == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="four numbers"):
        parse_box("[1, 2, 3]")


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("[1, 2, 3]", "four numbers"),
        ("left half", "four numbers"),
        ("[500, 500, 600, 600]", "no area inside the 200x100 image"),
        ("[10, 10, 10, 50]", "no area"),
    ],
)
def test_bad_boxes_become_error_observations(quadrants, argument, message):
    observation = call(ZoomTool(), argument, [quadrants])
    assert not observation.ok
    assert message in observation.text
    assert observation.images == []


def test_no_image_is_an_error_observation():
    observation = call(ZoomTool(), "[0, 0, 1, 1]", [])
    assert not observation.ok and "has none" in observation.text


def test_build_tools_by_name_with_options():
    (tool,) = build_tools(["zoom"], {"zoom": {"min_side": 64}})
    assert isinstance(tool, ZoomTool) and tool.min_side == 64
    with pytest.raises(ValueError, match="unknown tool"):
        build_tools(["telescope"])
    with pytest.raises(ValueError, match=r"tool_kwargs\['zoom'\]"):
        build_tools(["zoom"], {"zoom": {"magnification": 3}})
