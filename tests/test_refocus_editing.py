"""The ReFOCUS editing functions as plain Python: each changes the pixels it should, and no others."""

import numpy as np
import pytest
from PIL import Image

from agentic_vlm.tools.refocus import FUNCTION_NAMES, editing

WIDTH, HEIGHT = 120, 80
# A table of three columns and three rows, the header row keyed by its first cell ("Year"), as in ReFOCUS. The boxes
# share their edges, and mix the two accepted box formats.
COLUMNS = {"Year": [0, 0, 40, 80], "Sales": {"x1": 40, "y1": 0, "x2": 80, "y2": 80}, "Profit": [80, 0, 120, 80]}
ROWS = {"Year": [0, 0, 120, 20], "2019": {"x1": 0, "y1": 20, "x2": 120, "y2": 50}, "2020": [0, 50, 120, 80]}
BOXES = {"columns": COLUMNS, "rows": ROWS, "x_values": COLUMNS, "y_values": ROWS}


@pytest.fixture
def noise():
    """Random pixels, none pure white or red, so that any change shows."""
    pixels = np.random.default_rng(0).integers(20, 200, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def region(box) -> np.ndarray:
    x1, y1, x2, y2 = (box[key] for key in ("x1", "y1", "x2", "y2")) if isinstance(box, dict) else box
    inside = np.zeros((HEIGHT, WIDTH), dtype=bool)
    inside[y1:y2, x1:x2] = True
    return inside


def changed(before: Image.Image, after: Image.Image) -> np.ndarray:
    return (np.asarray(before) != np.asarray(after)).any(axis=-1)


def focus(kind: str, style: str):
    return getattr(editing, f"focus_on_{kind}_with_{style}")


def test_there_are_twelve_functions():
    assert len(FUNCTION_NAMES) == 12
    assert all(callable(getattr(editing, name)) for name in FUNCTION_NAMES)


@pytest.mark.parametrize("kind", ["columns", "x_values"])
def test_mask_blanks_the_other_parts_and_keeps_the_chosen_one(noise, kind):
    before = np.asarray(noise).copy()
    edited = focus(kind, "mask")(noise, ["Sales"], BOXES[kind])
    pixels = np.asarray(edited)
    assert (pixels[region(COLUMNS["Year"]) | region(COLUMNS["Profit"])] == 255).all()
    assert not changed(noise, edited)[region(COLUMNS["Sales"])].any()
    assert np.array_equal(np.asarray(noise), before)  # the input is untouched


def test_masking_rows_keeps_the_header_row(noise):
    edited = editing.focus_on_rows_with_mask(noise, ["2020"], ROWS)
    kept = region(ROWS["Year"]) | region(ROWS["2020"])
    assert not changed(noise, edited)[kept].any()
    assert (np.asarray(edited)[region(ROWS["2019"])] == 255).all()


def test_masking_y_values_has_no_header(noise):
    edited = editing.focus_on_y_values_with_mask(noise, ["2020"], ROWS)
    assert (np.asarray(edited)[region(ROWS["Year"]) | region(ROWS["2019"])] == 255).all()


def test_mask_keeps_a_chosen_part_whole_where_a_neighbour_overlaps_it(noise):
    overlapping = {"left": [0, 0, 70, 80], "right": [50, 0, 120, 80]}
    edited = editing.focus_on_columns_with_mask(noise, ["left"], overlapping)
    assert not changed(noise, edited)[region([0, 0, 70, 80])].any()
    assert (np.asarray(edited)[:, 70:] == 255).all()


@pytest.mark.parametrize("kind", ["columns", "rows", "x_values", "y_values"])
def test_draw_outlines_only_the_chosen_boxes(noise, kind):
    chosen = "Sales" if kind in ("columns", "x_values") else "2019"
    box = BOXES[kind][chosen]
    x1, y1, x2, y2 = (box[key] for key in ("x1", "y1", "x2", "y2")) if isinstance(box, dict) else box
    edited = focus(kind, "draw")(noise, [chosen], BOXES[kind])
    width = editing.OUTLINE_WIDTH
    interior = region([x1 + width, y1 + width, x2 - width, y2 - width])
    outline = region(box) & ~interior
    pixels = np.asarray(edited)
    assert (pixels[outline] == editing.RED).all()
    assert not changed(noise, edited)[~outline].any()


@pytest.mark.parametrize("kind", ["columns", "rows", "x_values", "y_values"])
def test_highlight_tints_only_the_chosen_boxes_once(noise, kind):
    labels = ["Year", "Sales"] if kind in ("columns", "x_values") else ["2019", "2020"]
    edited = focus(kind, "highlight")(noise, labels, BOXES[kind])
    chosen = region(BOXES[kind][labels[0]]) | region(BOXES[kind][labels[1]])
    opacity = editing.HIGHLIGHT_OPACITY
    expected = np.round((1 - opacity) * np.asarray(noise)[chosen] + opacity * np.array(editing.RED))
    assert np.array_equal(np.asarray(edited)[chosen], expected.astype(np.uint8))
    assert not changed(noise, edited)[~chosen].any()


def test_overlapping_highlights_are_not_tinted_twice(noise):
    overlapping = {"a": [0, 0, 70, 80], "b": [50, 0, 120, 80]}
    both = np.asarray(editing.focus_on_x_values_with_highlight(noise, ["a", "b"], overlapping))
    one = np.asarray(editing.focus_on_x_values_with_highlight(noise, ["a"], overlapping))
    assert np.array_equal(both[:, 50:70], one[:, 50:70])


def test_unknown_labels_name_the_label_and_the_known_ones(noise):
    with pytest.raises(ValueError, match=r"unknown column 'Yaer'; the columns are: 'Year', 'Sales', 'Profit'"):
        editing.focus_on_columns_with_highlight(noise, ["Year", "Yaer"], COLUMNS)
    with pytest.raises(ValueError, match=r"unknown x value 'Jan'; the x values are: 'Year', 'Sales', 'Profit'"):
        editing.focus_on_x_values_with_mask(noise, ["Jan"], COLUMNS)
    with pytest.raises(ValueError, match="no row to focus on was given; the rows are: 'Year', '2019', '2020'"):
        editing.focus_on_rows_with_draw(noise, [], ROWS)


def test_a_single_label_and_numeric_labels_are_accepted(noise):
    as_list = np.asarray(editing.focus_on_rows_with_draw(noise, ["2019"], ROWS))
    assert np.array_equal(np.asarray(editing.focus_on_rows_with_draw(noise, "2019", ROWS)), as_list)
    assert np.array_equal(np.asarray(editing.focus_on_rows_with_draw(noise, [2019], ROWS)), as_list)


def test_masking_around_a_box_outside_the_image_is_refused(noise):
    with pytest.raises(ValueError, match="the box of column 'Gone' lies outside the 120x80 image"):
        editing.focus_on_columns_with_mask(noise, ["Gone"], {**COLUMNS, "Gone": [200, 0, 240, 80]})


@pytest.mark.parametrize(
    ("boxes", "error", "message"),
    [
        ({"Year": [0, 0, 40]}, ValueError, r"the box of column 'Year' must be \{'x1'"),
        ({"Year": {"x1": 0, "y1": 0, "x2": 40}}, ValueError, "the box of column 'Year' must be"),
        ({"Year": [0, 0, float("nan"), 80]}, ValueError, "the box of column 'Year' must be"),
        ({"Year": [500, 0, 600, 80]}, ValueError, "the box of column 'Year' lies outside the 120x80 image"),
        ([[0, 0, 40, 80]], TypeError, "the boxes must map each column to its box"),
    ],
)
def test_bad_boxes_are_explained(noise, boxes, error, message):
    with pytest.raises(error, match=message):
        editing.focus_on_columns_with_draw(noise, ["Year"], boxes)


def test_boxes_are_ordered_and_clipped(noise):
    reversed_and_wide = {"Sales": [80, 90, 40, -5]}
    edited = editing.focus_on_columns_with_highlight(noise, ["Sales"], reversed_and_wide)
    assert np.array_equal(changed(noise, edited), region(COLUMNS["Sales"]))


def test_input_must_be_an_image():
    with pytest.raises(TypeError, match="image must be a PIL image"):
        editing.focus_on_columns_with_mask("path_to_input_image.jpg", ["Year"], COLUMNS)


def test_any_mode_in_rgb_out(noise):
    edited = editing.focus_on_columns_with_mask(noise.convert("RGBA"), ["Year"], COLUMNS)
    assert edited.mode == "RGB" and edited.size == (WIDTH, HEIGHT)
