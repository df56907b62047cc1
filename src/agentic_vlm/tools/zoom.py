"""Crop-and-zoom: the model names a box on the input image and sees that region enlarged (as DeepEyes and Mini-o3)."""

from __future__ import annotations

import asyncio
import re

from PIL import Image

from ..families import BoxFrame
from ..frames import BOX_FRAMES, ImageView, box_to_original, frame_extent
from .base import Observation, Tool, ToolContext

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_BRACKETS = re.compile(r"\[([^\[\]]*)\]")


def parse_box(text: str) -> tuple[float, float, float, float]:
    """The box ``[x1, y1, x2, y2]`` written in ``text`` (brackets, commas and a JSON object around it are optional).

    Raises ``ValueError`` with a message meant for the model when ``text`` does not hold exactly four numbers.
    """
    bracketed = _BRACKETS.search(text)  # inside brackets if any, so that a key like "bbox_2d" is not read as a number
    numbers = [float(n) for n in _NUMBER.findall(bracketed.group(1) if bracketed else text)]
    if len(numbers) != 4:
        raise ValueError(f"expected a box as four numbers [x1, y1, x2, y2], got {text.strip()[:80]!r}")
    x1, y1, x2, y2 = numbers
    return x1, y1, x2, y2


class ZoomTool(Tool):
    """Crop a box of the trajectory's first image and enlarge it.

    The model writes the box in its family's frame (``ToolContext.image_view``: Qwen2.5-VL in pixels of the image as
    the processor resized it, Qwen2-VL and Qwen3-VL in 0-1000); the tool maps it onto the original image and crops
    there. ``box_frame`` overrides the frame (``"original_pixels"``, ``"resized_pixels"``, ``"relative_1000"``).

    The crop is scaled so that its shorter side is at least ``min_side`` pixels and its longer side at most
    ``max_side`` pixels: small regions become legible without flooding the context with image tokens.
    """

    name = "zoom"
    description = "[x1, y1, x2, y2]: show this box of the image enlarged"
    parameters = {
        "type": "object",
        "properties": {"bbox_2d": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
                                   "description": "the box [x1, y1, x2, y2] to enlarge"}},
        "required": ["bbox_2d"],
    }

    def __init__(self, min_side: int = 112, max_side: int = 448, box_frame: BoxFrame | None = None):
        if not 0 < min_side <= max_side:
            raise ValueError(f"need 0 < min_side <= max_side, got min_side={min_side}, max_side={max_side}")
        if box_frame is not None and box_frame not in BOX_FRAMES:
            raise ValueError(f"unknown box_frame {box_frame!r}; use one of {', '.join(BOX_FRAMES)}")
        self.min_side = min_side
        self.max_side = max_side
        self.box_frame = box_frame

    async def __call__(self, argument: str, context: ToolContext) -> Observation:
        if not context.images:
            return Observation.failure("zoom needs an image, and this conversation has none.")
        try:
            box = parse_box(argument)
        except ValueError as error:
            return Observation.failure(f"zoom: {error}.")
        # Cropping and resampling a large image is CPU work: off the event loop, where other calls are running.
        return await asyncio.to_thread(self._zoom, box, context.images[0], context.image_view)

    def _zoom(self, box: tuple[float, float, float, float], image: Image.Image, view: ImageView | None) -> Observation:
        written = "[" + ", ".join(f"{value:g}" for value in box) + "]"
        frame = self.box_frame or (view.box_frame if view is not None else "original_pixels")
        try:
            x1, y1, x2, y2 = box_to_original(box, image.size, frame, view)
        except ValueError as error:
            return Observation.failure(f"zoom: {error}.")
        width, height = image.size
        left, right = (min(max(x, 0.0), width) for x in sorted((x1, x2)))
        top, bottom = (min(max(y, 0.0), height) for y in sorted((y1, y2)))
        if right - left < 1 or bottom - top < 1:
            return Observation.failure(
                f"zoom: the box {written} has no area inside the {frame_extent(image.size, frame, view)}."
            )
        crop = image.crop((round(left), round(top), round(right), round(bottom)))
        crop = _rescale(crop, self.min_side, self.max_side)
        return Observation(text=f"The box {written} enlarged.", images=[crop])


def _rescale(image: Image.Image, min_side: int, max_side: int) -> Image.Image:
    width, height = image.size
    scale = max(min_side / min(width, height), 1.0)
    scale = min(scale, max_side / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)
