"""How a model sees an image, and what its box coordinates mean on the original.

A Qwen processor resizes every image to multiples of ``patch_size * merge_size`` pixels with its total area between
``min_pixels`` and ``max_pixels`` (``smart_resize``); the model is shown that resized image. Qwen2.5-VL writes boxes
in absolute pixels of the resized image, Qwen2-VL and Qwen3-VL in 0-1000 of its width and height (the ``box_frame``
of :mod:`agentic_vlm.families`). Tools that crop and rewards that compare boxes convert with :class:`ImageView`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .families import BoxFrame

Box = tuple[float, float, float, float]
BOX_FRAMES: tuple[str, ...] = ("resized_pixels", "relative_1000", "original_pixels")
# The Qwen processors refuse images whose longer side is more than this many times the shorter one.
MAX_ASPECT_RATIO = 200


@dataclass(frozen=True)
class ImageView:
    """The processor's resize rule and the frame the model writes boxes in.

    Attributes:
        min_pixels, max_pixels: Bounds of the resized image's area.
        factor: Both sides of the resized image are multiples of it (``patch_size * merge_size``).
        box_frame: How the model writes boxes (see :data:`agentic_vlm.families.BoxFrame`).
    """

    min_pixels: int
    max_pixels: int
    factor: int
    box_frame: BoxFrame = "resized_pixels"

    def __post_init__(self):
        if self.box_frame not in BOX_FRAMES:
            raise ValueError(f"unknown box frame {self.box_frame!r}; use one of {', '.join(BOX_FRAMES)}")
        if not 0 < self.min_pixels <= self.max_pixels or self.factor < 1:
            raise ValueError(f"need 0 < min_pixels <= max_pixels and factor >= 1, got {self}")

    @classmethod
    def of(cls, processing_class, box_frame: BoxFrame = "resized_pixels") -> ImageView:
        """The view of a Qwen-style processor (or its image processor)."""
        image_processor = getattr(processing_class, "image_processor", processing_class)
        size = getattr(image_processor, "size", None) or {}
        min_pixels = size.get("shortest_edge", getattr(image_processor, "min_pixels", None))
        max_pixels = size.get("longest_edge", getattr(image_processor, "max_pixels", None))
        if min_pixels is None or max_pixels is None:
            raise ValueError(f"{type(image_processor).__name__} states no min/max pixels; pass an ImageView explicitly")
        factor = image_processor.patch_size * image_processor.merge_size
        return cls(int(min_pixels), int(max_pixels), int(factor), box_frame)

    @classmethod
    def for_model(cls, processing_class, model_config) -> ImageView | None:
        """The view of a vision-language model: its processor's resize and its family's box frame (``None`` for a
        text-only processing class)."""
        if not hasattr(processing_class, "image_processor"):
            return None
        from .families import family_of

        return cls.of(processing_class, family_of(model_config).box_frame)

    def shown_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of the image the model is shown for an image of ``size`` = (width, height): the
        processor's ``smart_resize``."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        width, height = size
        if min(width, height) < 1:
            raise ValueError(f"a {width}x{height} image has no pixels")
        shown_h, shown_w = smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)
        return shown_w, shown_h

    def to_original(self, box: Box, size: tuple[int, int]) -> Box:
        """``box`` as the model wrote it, in pixels of the original image of ``size`` = (width, height)."""
        return box_to_original(box, size, self.box_frame, self)

    def input_pixel_limit(self) -> int:
        """Pixels of the largest image passed on as is: four times what the model is shown, and at least 2**24
        (the processor makes a float32 copy of the whole image before it resizes it: 200 MB at 2**24 pixels)."""
        return max(4 * self.max_pixels, 2**24)

    def fit(self, image) -> Image.Image:
        """``image`` as an RGB image the processor accepts: any mode (16-bit, palette, alpha) becomes 8-bit RGB; an
        aspect ratio over 200 is padded with white on the short side; an image so large that the processor's float
        copy of it would be a memory hazard is scaled down first (see :meth:`input_pixel_limit`). Any other image
        keeps its size: the processor resizes it for the model, and tools that zoom crop it at full resolution.
        Raises ``ValueError`` saying why when it cannot be shown at all."""
        if not isinstance(image, Image.Image):
            raise ValueError(f"expected a PIL image, got {type(image).__name__}")
        width, height = image.size
        if width < 1 or height < 1:
            raise ValueError(f"the image is {width}x{height}: it has no pixels")
        image = _as_rgb(image)
        if width * height > self.input_pixel_limit():
            scale = math.sqrt(self.input_pixel_limit() / (width * height))
            image = image.resize((max(1, math.floor(width * scale)), max(1, math.floor(height * scale))),
                                 Image.Resampling.BICUBIC)
            width, height = image.size
        if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
            padded = (max(width, math.ceil(height / MAX_ASPECT_RATIO)), max(height, math.ceil(width / MAX_ASPECT_RATIO)))
            canvas = Image.new("RGB", padded, (255, 255, 255))
            canvas.paste(image, ((padded[0] - width) // 2, (padded[1] - height) // 2))
            image = canvas
        return image


def box_to_original(box: Box, size: tuple[int, int], frame: BoxFrame, view: ImageView | None = None) -> Box:
    """``box`` written in ``frame`` on an image of ``size`` = (width, height), in pixels of that image. The
    ``"resized_pixels"`` frame needs ``view`` (the processor's resize)."""
    width, height = size
    if frame == "original_pixels":
        return box
    if frame == "relative_1000":
        scale_x, scale_y = width / 1000, height / 1000
    elif frame == "resized_pixels":
        if view is None:
            raise ValueError("boxes in pixels of the resized image need the processor's resize settings")
        shown_w, shown_h = view.shown_size(size)
        scale_x, scale_y = width / shown_w, height / shown_h
    else:
        raise ValueError(f"unknown box frame {frame!r}; use one of {', '.join(BOX_FRAMES)}")
    x1, y1, x2, y2 = box
    return x1 * scale_x, y1 * scale_y, x2 * scale_x, y2 * scale_y


def frame_extent(size: tuple[int, int], frame: BoxFrame, view: ImageView | None = None) -> str:
    """The image's extent in the frame the model writes boxes in, for messages to it ("a 728x532 image")."""
    if frame == "relative_1000":
        return "image (0-1000 on each side)"
    width, height = view.shown_size(size) if frame == "resized_pixels" and view is not None else size
    return f"{width}x{height} image"


def _as_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: high-bit-depth grey scaled to 8 bits (PIL's own conversion clips it to white), transparency laid
    over white."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode != "F":  # 16-bit (or 32-bit integer) grey: map its full range onto 0-255
            values = values / (257.0 if values.max(initial=0) <= 65535 else values.max() / 255.0)
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def image_token_mismatch(input_ids, image_grid_thw, image_token_id: int,
                         merge_length: int) -> tuple[int, int, int] | None:
    """The first image whose tokens in ``input_ids`` do not match its features: ``(index, tokens, features)``, or
    ``None`` when all match. ``image_grid_thw`` has one row per image, in order (``None``: no images); an image has
    ``t * h * w / merge_length`` features. Each image's tokens are one run (the template wraps every image in
    vision start and end tokens), so an image token too many or too few, anywhere, is found."""
    ids = torch.as_tensor(input_ids)
    is_image = (ids == image_token_id).to(torch.int8)
    edges = torch.diff(is_image, prepend=is_image.new_zeros(1), append=is_image.new_zeros(1))
    starts, ends = (edges == 1).nonzero()[:, 0], (edges == -1).nonzero()[:, 0]
    runs = (ends - starts).tolist()
    features = [] if image_grid_thw is None else (image_grid_thw.prod(-1) // merge_length).tolist()
    for index in range(max(len(runs), len(features))):
        tokens = runs[index] if index < len(runs) else 0
        expected = features[index] if index < len(features) else 0
        if tokens != expected:
            return index, tokens, expected
    return None
