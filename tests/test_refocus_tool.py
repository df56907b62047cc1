"""The ReFOCUS code tool on the real sandbox: the editing functions, the images and the row's boxes are there for the
model's code, and its edited images come back as the observation."""

import asyncio
import json

import numpy as np
import pytest
from PIL import Image

from agentic_vlm.tools import build_tools
from agentic_vlm.tools.base import ToolContext
from agentic_vlm.tools.code import SandboxUnavailableError
from agentic_vlm.tools.refocus import RefocusCodeTool, editing
from agentic_vlm.tools.refocus.tool import box_variables, setup_code

METADATA = {
    "type": "table",
    "columns_bbox": {"Year": {"x1": 0, "y1": 0, "x2": 40, "y2": 60},
                     "Sales": {"x1": 40, "y1": 0, "x2": 100, "y2": 60}},
    "rows_bbox": {"Year": {"x1": 0, "y1": 0, "x2": 100, "y2": 20}, "2019": {"x1": 0, "y1": 20, "x2": 100, "y2": 60}},
}
ROW = {"metadata": json.dumps(METADATA), "answer": ["12"]}


def make_tool(**options) -> RefocusCodeTool:
    try:
        return RefocusCodeTool(workers=1, timeout_s=5.0, memory_mb=256, **options)
    except SandboxUnavailableError as error:
        pytest.skip(f"this host cannot isolate code: {error}")


@pytest.fixture(scope="module")
def tool():
    refocus_tool = make_tool()
    yield refocus_tool
    asyncio.run(refocus_tool.aclose())


@pytest.fixture
def table():
    pixels = np.random.default_rng(1).integers(20, 200, size=(60, 100, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def call(tool, code: str, images, row=ROW, trajectory: str = "t0", turn: int = 0):
    return asyncio.run(tool(code, ToolContext(trajectory_id=trajectory, images=list(images), row=row, turn=turn)))


def test_model_code_edits_the_image_with_a_refocus_function(tool, table):
    code = 'image_2 = focus_on_columns_with_highlight(image_1, ["Sales"], columns_bbox)\ndisplay(image_2)'
    observation = call(tool, code, [table])
    assert observation.ok, observation.text
    (edited,) = observation.images
    expected = editing.focus_on_columns_with_highlight(table, ["Sales"], METADATA["columns_bbox"])
    assert np.array_equal(np.asarray(edited), np.asarray(expected))  # pixel for pixel what the function makes
    assert not np.array_equal(np.asarray(edited), np.asarray(table))
    assert observation.text.endswith("The images below are now image_2.")


def test_images_boxes_and_metadata_are_variables(tool, table):
    code = (
        "print(image_1.size, image_2.size, len(images))\n"
        "print(list(columns_bbox), rows_bbox['2019'], metadata['type'])\n"
        "print('type' in globals(), callable(type))"  # only box fields become variables: `type` stays the builtin
    )
    observation = call(tool, code, [table, Image.new("RGB", (10, 20))])
    assert observation.text.splitlines() == [
        "(100, 60) (10, 20) 2",
        "['Year', 'Sales'] {'x1': 0, 'y1': 20, 'x2': 100, 'y2': 60} table",
        "False True",
    ]


def test_an_unknown_label_comes_back_as_an_error_the_model_can_act_on(tool, table):
    observation = call(tool, 'x = 1\ndisplay(focus_on_rows_with_mask(image_1, ["2091"], rows_bbox))', [table])
    assert not observation.ok and not observation.images
    assert "unknown row '2091'; the rows are: 'Year', '2019'" in observation.error
    assert 'File "<code>", line 2' in observation.error  # the model's own line numbers, setup excluded


def test_rebinding_names_the_functions_use_does_not_break_them(tool, table):
    code = "np = Image = _mask = None\ndisplay(focus_on_columns_with_mask(image_1, ['Year'], columns_bbox))"
    observation = call(tool, code, [table])
    assert observation.ok, observation.text
    expected = editing.focus_on_columns_with_mask(table, ["Year"], METADATA["columns_bbox"])
    assert np.array_equal(np.asarray(observation.images[0]), np.asarray(expected))


def test_each_action_starts_afresh_and_names_earlier_results_by_image(tool, table):
    call(tool, "kept = 1\ndisplay(image_1)", [table], trajectory="fresh", turn=0)
    observation = call(tool, "print('kept' in globals(), image_2.size)", [table, table], trajectory="fresh", turn=1)
    assert observation.text == "False (100, 60)"


def test_persistent_sessions_keep_variables_between_actions_until_released(table):
    persistent = make_tool(persistent=True)
    try:
        call(persistent, "kept = 41", [table], trajectory="p", turn=0)
        assert call(persistent, "print(kept + 1)", [table], trajectory="p", turn=1).text == "42"
        asyncio.run(persistent.release("p"))
        assert "NameError" in call(persistent, "print(kept)", [table], trajectory="p", turn=2).error
    finally:
        asyncio.run(persistent.aclose())


@pytest.mark.parametrize("persistent", [False, True])
def test_more_actions_at_once_than_sandbox_sessions_all_have_the_functions(persistent, table):
    """A rollout batch runs every trajectory's action at once: 320 on one GPU with the shipped 7B recipes, against 64
    sessions kept (``max_sessions``). The functions must be there for each action however many others run."""
    crowded = make_tool(persistent=persistent, max_sessions=2)
    code = "display(focus_on_columns_with_mask(image_1, ['Year'], columns_bbox))"

    async def actions():
        return await asyncio.gather(*(crowded(code, ToolContext(trajectory_id=f"t{index}", images=[table], row=ROW,
                                                                  turn=0)) for index in range(8)))

    try:
        observations = asyncio.run(actions())
    finally:
        asyncio.run(crowded.aclose())
    expected = np.asarray(editing.focus_on_columns_with_mask(table, ["Year"], METADATA["columns_bbox"]))
    for observation in observations:
        assert observation.ok, observation.text
        assert np.array_equal(np.asarray(observation.images[0]), expected)


def test_a_failing_setup_is_told_apart_from_the_model_code(tool, table):
    # A setup that raises is the tool's fault, not the model's: said so, and the model's code is not run.
    result = tool.code_tool.sandbox.run("print('ran')", [table], setup="x = 1\nraise ValueError('no boxes')")
    assert result.error.startswith("The tool's setup failed, so the code was not run: Traceback")
    assert 'File "<setup>", line 2' in result.error and "ValueError: no boxes" in result.error
    assert "ran" not in result.stdout


def test_a_row_without_metadata_still_has_the_functions(tool, table):
    observation = call(tool, "print(metadata, callable(focus_on_x_values_with_draw))", [table], row={})
    assert observation.text == "{} True"


def test_only_box_fields_become_variables():
    metadata = {"type": "v_bar", "x_values_bbox": {}, "figure_bbox": {}, "x values_bbox": {}}
    assert box_variables(metadata) == ["x_values_bbox", "figure_bbox"]
    assert "x_values_bbox = metadata['x_values_bbox']" in setup_code(metadata)


def test_recipes_build_it_by_name_as_the_code_action():
    (refocus_tool,) = build_tools(["refocus"], {"refocus": {"workers": 1, "timeout_s": 2.0}})
    try:
        assert refocus_tool.name == "code" and refocus_tool.code_tool.sandbox.config.timeout_s == 2.0
        assert all(name in refocus_tool.description for name in editing.FUNCTION_NAMES)
    finally:
        asyncio.run(refocus_tool.aclose())
