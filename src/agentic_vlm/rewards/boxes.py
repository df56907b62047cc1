"""Boxes: parsing them from a model's text, IoU, and the matched IoU reward of a set of boxes."""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from typing import Literal

from ..frames import ImageView, box_to_original
from .matching import matched_score

Box = tuple[float, float, float, float]
# "pixel": of the original image; "resized_pixels": of the image as the processor resized it (Qwen2.5-VL);
# "norm1000" and "norm1": 0-1000 (Qwen2-VL, Qwen3-VL) or 0-1 of the image's sides.
Coordinates = Literal["pixel", "resized_pixels", "norm1000", "norm1"]
COORDINATES = ("pixel", "resized_pixels", "norm1000", "norm1")
# The coordinates of each model family's box frame (see agentic_vlm.families).
COORDINATES_OF_FRAME = {"original_pixels": "pixel", "resized_pixels": "resized_pixels", "relative_1000": "norm1000"}

_NUMBER = r"-?\d+(?:\.\d+)?"
_SEPARATOR = r"(?:\s*,\s*|\s+)"
# Four numbers inside brackets or parentheses: "[x1, y1, x2, y2]", "(x1, y1, x2, y2)", each box of a JSON list
# "[[...], [...]]" and the "bbox_2d" of Qwen's grounding JSON. Groups of any other length are not boxes.
_BOX = re.compile(rf"[\[(]\s*({_NUMBER}){_SEPARATOR}({_NUMBER}){_SEPARATOR}({_NUMBER}){_SEPARATOR}({_NUMBER})\s*[\])]")
# Full scale of each normalised convention: Qwen2-VL and Qwen3-VL write 0-1000, many datasets 0-1.
_NORMALISED_SCALE = {"norm1000": 1000.0, "norm1": 1.0}


def parse_boxes(text: str) -> list[Box]:
    """Every box ``[x1, y1, x2, y2]`` written in ``text``, in order of appearance."""
    return [tuple(float(value) for value in match.groups()) for match in _BOX.finditer(text)]


def to_pixels(box: Box, coordinates: Coordinates, image_size: tuple[int, int] | None,
              view: ImageView | None = None) -> Box:
    """``box`` in pixels of an image of ``image_size`` = (width, height), from the given coordinate convention;
    ``"resized_pixels"`` needs ``view``, the processor's resize."""
    if coordinates == "pixel":
        return box
    if image_size is None:
        raise ValueError(f"{coordinates} boxes need the image size to be compared with pixel boxes")
    if coordinates == "resized_pixels":
        return box_to_original(box, image_size, "resized_pixels", view)
    scale = _NORMALISED_SCALE[coordinates]
    width, height = image_size
    x1, y1, x2, y2 = box
    return x1 * width / scale, y1 * height / scale, x2 * width / scale, y2 * height / scale


def box_area(box: Box) -> float:
    """Area of ``box``; a box whose corners are swapped or equal has no area."""
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union; 0.0 when the union has no area (two degenerate boxes are not a match)."""
    intersection = box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = box_area(a) + box_area(b) - intersection
    return intersection / union if union > 0 else 0.0


def matched_iou(predicted: Sequence[Box], truths: Sequence[Box], iou_threshold: float = 0.0) -> float:
    """Sum of the IoUs of an optimal one-to-one matching over ``max(#predicted, #truths)``.

    A matched pair whose IoU is below ``iou_threshold`` counts as 0, so that loose boxes earn nothing. No box
    predicted when none is expected is exactly right (1.0).
    """

    def thresholded_iou(prediction: Box, truth: Box) -> float:
        iou = box_iou(prediction, truth)
        return iou if iou >= iou_threshold else 0.0

    return matched_score(predicted, truths, thresholded_iou)


def truth_boxes(cell: object) -> list[Box] | None:
    """The ground-truth boxes of a dataset cell: one box, a list of boxes, or text holding them; ``None`` if absent."""
    if cell is None:
        return None
    if isinstance(cell, str):
        return parse_boxes(cell)
    values = list(cell)
    if len(values) == 4 and all(isinstance(value, numbers.Real) for value in values):
        return [tuple(float(value) for value in values)]
    boxes = [tuple(float(value) for value in box) for box in values]
    if any(len(box) != 4 for box in boxes):
        raise ValueError(f"a ground-truth box needs four numbers [x1, y1, x2, y2], got {cell!r}")
    return boxes
