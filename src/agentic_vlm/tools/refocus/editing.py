"""The ReFOCUS editing functions: focus on some columns or rows of a table, or some x or y values of a chart.

Each function takes an image, the labels to focus on and the boxes of all the labelled parts (label -> box in pixels,
written ``{"x1": .., "y1": .., "x2": .., "y2": ..}`` as in the ReFOCUS metadata, or ``[x1, y1, x2, y2]``), and edits a
copy of the image in one of three styles:

- ``mask``: the other labelled parts are blanked out (white). A table keeps its header row when rows are masked, so
  the columns keep their names;
- ``draw``: a red outline around each chosen part;
- ``highlight``: a translucent red fill over each chosen part.

They return a new RGB image and never modify their input. An unknown label raises ``ValueError`` naming it and the
known labels, so a model that misspells a column reads what to write instead.

This module runs in the trainer (tests, reference solutions) and inside the code sandbox, where its source is executed
before the model's code (see :mod:`.tool`): it imports nothing but the standard library, numpy and Pillow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

BLANK = (255, 255, 255)
RED = (255, 0, 0)
OUTLINE_WIDTH = 3
HIGHLIGHT_OPACITY = 0.35

# The functions the model may call, in the order the system prompt lists them.
FUNCTION_NAMES = (
    "focus_on_columns_with_mask",
    "focus_on_columns_with_draw",
    "focus_on_columns_with_highlight",
    "focus_on_rows_with_mask",
    "focus_on_rows_with_draw",
    "focus_on_rows_with_highlight",
    "focus_on_x_values_with_mask",
    "focus_on_x_values_with_draw",
    "focus_on_x_values_with_highlight",
    "focus_on_y_values_with_mask",
    "focus_on_y_values_with_draw",
    "focus_on_y_values_with_highlight",
)

PixelBox = tuple[int, int, int, int]


# ------------------------------------------------------------------------------------------------------------ tables
def focus_on_columns_with_mask(image, columns, columns_bbox):
    """Blank out every column but `columns`."""
    return _mask(image, columns, columns_bbox, "column")


def focus_on_columns_with_draw(image, columns, columns_bbox):
    """Outline `columns` in red."""
    return _draw(image, columns, columns_bbox, "column")


def focus_on_columns_with_highlight(image, columns, columns_bbox):
    """Tint `columns` translucent red."""
    return _highlight(image, columns, columns_bbox, "column")


def focus_on_rows_with_mask(image, rows, rows_bbox):
    """Blank out every row but `rows` and the header row."""
    return _mask(image, rows, rows_bbox, "row", keep_top=True)


def focus_on_rows_with_draw(image, rows, rows_bbox):
    """Outline `rows` in red."""
    return _draw(image, rows, rows_bbox, "row")


def focus_on_rows_with_highlight(image, rows, rows_bbox):
    """Tint `rows` translucent red."""
    return _highlight(image, rows, rows_bbox, "row")


# ------------------------------------------------------------------------------------------------------------ charts
def focus_on_x_values_with_mask(image, x_values, x_values_bbox):
    """Blank out every x value (bar and label) but `x_values`."""
    return _mask(image, x_values, x_values_bbox, "x value")


def focus_on_x_values_with_draw(image, x_values, x_values_bbox):
    """Outline `x_values` in red."""
    return _draw(image, x_values, x_values_bbox, "x value")


def focus_on_x_values_with_highlight(image, x_values, x_values_bbox):
    """Tint `x_values` translucent red."""
    return _highlight(image, x_values, x_values_bbox, "x value")


def focus_on_y_values_with_mask(image, y_values, y_values_bbox):
    """Blank out every y value (bar and label) but `y_values`."""
    return _mask(image, y_values, y_values_bbox, "y value")


def focus_on_y_values_with_draw(image, y_values, y_values_bbox):
    """Outline `y_values` in red."""
    return _draw(image, y_values, y_values_bbox, "y value")


def focus_on_y_values_with_highlight(image, y_values, y_values_bbox):
    """Tint `y_values` translucent red."""
    return _highlight(image, y_values, y_values_bbox, "y value")


# ------------------------------------------------------------------------------------------------------------ styles
def _mask(image, labels, boxes, kind: str, keep_top: bool = False) -> Image.Image:
    pixels = _rgb_pixels(image)
    height, width = pixels.shape[:2]
    by_label = _boxes_by_label(boxes, kind)
    regions = {label: _pixel_box(box, label, kind, width, height) for label, box in by_label.items()}
    kept = set(_chosen_boxes(labels, by_label, kind, width, height))
    if keep_top:
        kept.add(min(regions, key=lambda label: regions[label][1]))
    blank = np.zeros((height, width), dtype=bool)
    for label, (x1, y1, x2, y2) in regions.items():
        if label not in kept:
            blank[y1:y2, x1:x2] = True
    # Boxes often share their edges: a chosen part stays whole even where a neighbour's box overlaps it.
    for label in kept:
        x1, y1, x2, y2 = regions[label]
        blank[y1:y2, x1:x2] = False
    pixels[blank] = BLANK
    return Image.fromarray(pixels)


def _draw(image, labels, boxes, kind: str) -> Image.Image:
    edited = Image.fromarray(_rgb_pixels(image))
    pen = ImageDraw.Draw(edited)
    for x1, y1, x2, y2 in _chosen_boxes(labels, boxes, kind, *edited.size).values():
        # PIL's rectangle includes its last row and column, and grows the outline inwards: it stays inside the box.
        pen.rectangle((x1, y1, x2 - 1, y2 - 1), outline=RED, width=OUTLINE_WIDTH)
    return edited


def _highlight(image, labels, boxes, kind: str) -> Image.Image:
    pixels = _rgb_pixels(image)
    chosen = np.zeros(pixels.shape[:2], dtype=bool)
    # One union of the boxes, so that where chosen boxes overlap the tint is not applied twice.
    for x1, y1, x2, y2 in _chosen_boxes(labels, boxes, kind, pixels.shape[1], pixels.shape[0]).values():
        chosen[y1:y2, x1:x2] = True
    tinted = (1 - HIGHLIGHT_OPACITY) * pixels[chosen] + HIGHLIGHT_OPACITY * np.array(RED)
    pixels[chosen] = np.round(tinted).astype(np.uint8)
    return Image.fromarray(pixels)


# ------------------------------------------------------------------------------------------------ labels and boxes
def _rgb_pixels(image) -> np.ndarray:
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image (for example image_1), got {type(image).__name__}")
    return np.array(image.convert("RGB"))  # a copy: the input is never modified


def _boxes_by_label(boxes, kind: str) -> dict[str, object]:
    if not isinstance(boxes, Mapping):
        raise TypeError(
            f"the boxes must map each {kind} to its box (for example {kind.replace(' ', '_')}s_bbox), "
            f"got {type(boxes).__name__}"
        )
    return {str(label): box for label, box in boxes.items()}


def _chosen_labels(labels, known: Mapping[str, object], kind: str) -> list[str]:
    """The labels to focus on, as strings; a single label may be given without a list."""
    if isinstance(labels, str | int | float):
        labels = [labels]
    if not isinstance(labels, Sequence | set):
        raise TypeError(f"the {kind}s to focus on must be a list of labels, got {type(labels).__name__}")
    chosen = [str(label) for label in labels]
    known_text = ", ".join(repr(label) for label in known)
    if not chosen:
        raise ValueError(f"no {kind} to focus on was given; the {kind}s are: {known_text}")
    for label in chosen:
        if label not in known:
            raise ValueError(f"unknown {kind} {label!r}; the {kind}s are: {known_text}")
    return chosen


def _chosen_boxes(labels, boxes, kind: str, width: int, height: int) -> dict[str, PixelBox]:
    """The chosen labels and their pixel boxes, each of which must overlap the image."""
    by_label = _boxes_by_label(boxes, kind)
    chosen = {}
    for label in _chosen_labels(labels, by_label, kind):
        box = _pixel_box(by_label[label], label, kind, width, height)
        if box[0] == box[2] or box[1] == box[3]:
            raise ValueError(f"the box of {kind} {label!r} lies outside the {width}x{height} image")
        chosen[label] = box
    return chosen


def _pixel_box(box, label: str, kind: str, width: int, height: int) -> PixelBox:
    """The box as whole pixels (x1, y1) inclusive to (x2, y2) exclusive, ordered and clipped to the image."""
    try:
        if isinstance(box, Mapping):
            corners = [float(box[key]) for key in ("x1", "y1", "x2", "y2")]
        else:
            corners = [float(value) for value in box]
    except (KeyError, TypeError, ValueError):
        corners = []
    if len(corners) != 4 or not np.isfinite(corners).all():
        raise ValueError(
            f"the box of {kind} {label!r} must be {{'x1': .., 'y1': .., 'x2': .., 'y2': ..}} or [x1, y1, x2, y2], "
            f"got {box!r}"
        )
    x1, x2 = sorted(min(max(round(x), 0), width) for x in corners[0::2])
    y1, y2 = sorted(min(max(round(y), 0), height) for y in corners[1::2])
    return x1, y1, x2, y2
