"""The offline coding task, MAT-Coding-like: read a word or a number from an image that code must restore first.

A word or a number is rendered in black on a pale background, then degraded (the ``type`` of the row, with
MAT-Coding's names):

- ``rotation90`` (a quarter turn either way), ``rotation180``;
- ``dark`` and ``overexposure``: the intensities squeezed towards black or towards white;
- ``blur``: a Gaussian blur; ``noise``: salt-and-pepper noise;
- ``crop``: several small words on a larger canvas, and the question names the box of one of them.

``simple`` rows have one degradation; ``hard`` rows have a rotation and a photometric degradation together, or a crop.
Each row's reference ``solution`` is two turns of the ARFT protocol: Python in ``<code>`` that reads
``path_to_input_image.jpg``, undoes the degradation with OpenCV and saves ``path_to_output_image.jpg`` (the
Visual-ARFT convention, which the code tool follows), then the answer. Every degradation is undone by code that does
not know its strength (a min-max stretch undoes any darkening or washing out of an image that held black and
white), so the solutions are what a model could write from the image alone. Deterministic by seed.

The ``tiny`` variant (``write_coding_dataset(..., variant="tiny")``, shipped in ``data/coding-tiny``, which the CPU
recipe ``arft_coding_cpu.yaml`` trains on) keeps only the ``crop`` type, on what a tiny model with a random vision
tower can see: the zoom task's image (a 3x3 grid of flat colour cells, :func:`.synthetic.make_zoom_example`), a
question that names one cell by its box in pixels and asks its colour, and a reference solution of one short code turn
that copies the box from the question, crops it and enlarges the crop as the full task's crop solutions do
(``x1, y1, x2, y2 = [...]``, ``image = image[y1:y2, x1:x2]``, ``cv2.resize``, with the same input and output files),
then the colour. Seen whole, the image holds nine colours; the code's output is one colour, large enough (64 image
tokens, as many as the whole image) that the tiny model learns to read it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .splits import write_task_splits
from .synthetic import box_text, make_zoom_example

# Sizes are multiples of 28, Qwen2.5-VL's patch group, so that pixel coordinates survive its resize unchanged.
TEXT_IMAGE_SIZE = (280, 140)
CANVAS_SIZE = (336, 224)
CROP_GRID = (3, 2)  # columns, rows of small words on the crop canvas
CROP_ZOOM = 3
TEXT_FONT_SIZE = 44
SMALL_FONT_SIZE = 11
BACKGROUNDS = [(255, 246, 226), (236, 246, 255), (240, 255, 240), (255, 240, 246), (255, 255, 255)]
WORDS = [
    "anchor", "apple", "basket", "bridge", "candle", "castle", "cloud", "copper", "desert", "engine", "falcon",
    "forest", "garden", "guitar", "harbor", "helmet", "island", "jacket", "kettle", "ladder", "lantern", "lemon",
    "magnet", "marble", "meadow", "mirror", "needle", "orange", "oyster", "paddle", "pepper", "pillow", "planet",
    "pocket", "rabbit", "ribbon", "river", "saddle", "silver", "spider", "stone", "tiger", "timber", "tunnel",
    "velvet", "violin", "walnut", "window", "winter", "zebra",
]
SIMPLE_TYPES = ["rotation90", "rotation180", "dark", "overexposure", "blur", "noise"]
PHOTOMETRIC_TYPES = ["dark", "overexposure", "blur", "noise"]

# What the reference solution says and does for each degradation as applied: (thought, code lines acting on `image`).
_STRETCH = "image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX)"
_ENLARGE = f"image = cv2.resize(image, None, fx={CROP_ZOOM}, fy={CROP_ZOOM}, interpolation=cv2.INTER_CUBIC)"
_FIXES = {
    "rotation90_ccw": ("The text runs upwards: the image is turned a quarter counter-clockwise, so I rotate it "
                       "90 degrees clockwise.", ["image = cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)"]),
    "rotation90_cw": ("The text runs downwards: the image is turned a quarter clockwise, so I rotate it 90 degrees "
                      "counter-clockwise.", ["image = cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)"]),
    "rotation180": ("The text is upside down, so I rotate the image by 180 degrees.",
                    ["image = cv2.rotate(image, cv2.ROTATE_180)"]),
    "dark": ("The image is too dark to read, so I stretch its intensities to the full range.", [_STRETCH]),
    "overexposure": ("The image is washed out, so I stretch its intensities to the full range.", [_STRETCH]),
    "blur": ("The text is blurred, so I sharpen it with an unsharp mask.",
             ["image = cv2.addWeighted(image, 4, cv2.GaussianBlur(image, (0, 0), 2), -3, 0)"]),
    "noise": ("The image is covered in salt-and-pepper noise, so I remove it with a median filter.",
              ["image = cv2.medianBlur(image, 3)"]),
}


@dataclass
class CodingExample:
    """One task: the image shown to the model, the image its solution should restore, and the row's fields."""

    image: Image.Image
    clean: Image.Image  # what the solution's output should look like (for a crop: the box, before enlarging)
    question: str
    answer: str
    type: list[str]
    split: str
    solution: list[str]
    box: list[int] | None = None

    def row(self) -> dict:
        return {"question": self.question, "answer": self.answer, "type": self.type, "split": self.split,
                "box": self.box, "solution": self.solution}


def make_coding_example(rng: random.Random) -> CodingExample:
    if rng.random() < 0.5:
        return _degraded_text_example(rng, [rng.choice(SIMPLE_TYPES)], "simple")
    if rng.random() < 1 / 3:
        return _crop_example(rng)
    rotation = rng.choice(["rotation90", "rotation180"])
    return _degraded_text_example(rng, [rotation, rng.choice(PHOTOMETRIC_TYPES)], "hard")


def _degraded_text_example(rng: random.Random, degradations: list[str], split: str) -> CodingExample:
    if rng.random() < 0.7:
        text, kind = rng.choice(WORDS), "word"
    else:
        text, kind = str(rng.randint(100, 99999)), "number"
    clean = _render_text(text, TEXT_IMAGE_SIZE, rng.choice(BACKGROUNDS))
    pixels = np.asarray(clean)
    variants = []  # the degradations as applied: a quarter turn has a direction
    for degradation in degradations:
        variant = rng.choice(["rotation90_ccw", "rotation90_cw"]) if degradation == "rotation90" else degradation
        pixels = _degrade(pixels, variant, rng)
        variants.append(variant)
    # The solution fixes the look first, then the orientation (the two commute: a stretch or a filter does the same
    # on a rotated image).
    variants.sort(key=lambda name: name.startswith("rotation"))
    code_lines = [line for variant in variants for line in _FIXES[variant][1]]
    thought = " ".join(_FIXES[variant][0] for variant in variants)
    return CodingExample(
        image=Image.fromarray(pixels),
        clean=clean,
        question=f"What {kind} is written in the image? Answer with the {kind} only.",
        answer=text,
        type=degradations,
        split=split,
        solution=[_code_turn(thought, code_lines), _answer_turn(kind, text)],
    )


def _crop_example(rng: random.Random) -> CodingExample:
    width, height = CANVAS_SIZE
    columns, rows = CROP_GRID
    canvas = Image.new("RGB", CANVAS_SIZE, rng.choice(BACKGROUNDS))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=SMALL_FONT_SIZE)
    words = rng.sample(WORDS, columns * rows)
    boxes = []
    for index, word in enumerate(words):
        cell_left, cell_top = index % columns * width // columns, index // columns * height // rows
        left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
        x = cell_left + rng.randint(8, width // columns - (right - left) - 8)
        y = cell_top + rng.randint(8, height // rows - (bottom - top) - 8)
        draw.text((x - left, y - top), word, font=font, fill=(0, 0, 0))
        boxes.append([x - 6, y - 6, x + (right - left) + 6, y + (bottom - top) + 6])
    target = rng.randrange(len(words))
    box = boxes[target]
    x1, y1, x2, y2 = box
    code_lines = [
        f"x1, y1, x2, y2 = {x1}, {y1}, {x2}, {y2}",
        "image = image[y1:y2, x1:x2]",
        _ENLARGE,
    ]
    thought = f"The words are too small to read, so I crop the box and enlarge it {CROP_ZOOM} times."
    return CodingExample(
        image=canvas,
        clean=canvas.crop(tuple(box)),
        question=f"What word is written inside the box [{x1}, {y1}, {x2}, {y2}] of the image? "
                 "Answer with the word only.",
        answer=words[target],
        type=["crop"],
        split="hard",
        solution=[_code_turn(thought, code_lines), _answer_turn("word", words[target])],
        box=box,
    )


def make_tiny_coding_example(rng: random.Random) -> CodingExample:
    """A row of the tiny variant: the zoom task's image and question, solved by a crop in code."""
    zoom = make_zoom_example(rng)
    box, color = zoom["box"], zoom["answer"]
    code_lines = [f"x1, y1, x2, y2 = {box_text(box)}", "image = image[y1:y2, x1:x2]", _ENLARGE]
    thought = f"I crop the box and enlarge it {CROP_ZOOM} times."
    return CodingExample(
        image=zoom["image"],
        clean=zoom["image"].crop(tuple(box)),
        question=zoom["question"],
        answer=color,
        type=["crop"],
        split="simple",
        solution=[_code_turn(thought, code_lines), _answer_turn("color", color)],
        box=box,
    )


def _render_text(text: str, size: tuple[int, int], background: tuple[int, int, int]) -> Image.Image:
    """Black text centred on a background with a channel at 255: the image spans the full range, which is what
    the min-max stretch of the dark and overexposure solutions restores."""
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=TEXT_FONT_SIZE)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(((size[0] - (right - left)) // 2 - left, (size[1] - (bottom - top)) // 2 - top), text, font=font,
              fill=(0, 0, 0))
    return image


def _degrade(pixels: np.ndarray, variant: str, rng: random.Random) -> np.ndarray:
    if variant == "rotation90_ccw":
        return np.rot90(pixels, 1).copy()
    if variant == "rotation90_cw":
        return np.rot90(pixels, -1).copy()
    if variant == "rotation180":
        return np.rot90(pixels, 2).copy()
    if variant == "dark":
        return np.round(pixels * rng.uniform(0.12, 0.25)).astype(np.uint8)
    if variant == "overexposure":
        keep = rng.uniform(0.25, 0.4)
        return np.round(pixels * keep + 255 * (1 - keep)).astype(np.uint8)
    if variant == "blur":
        return cv2.GaussianBlur(pixels, (0, 0), rng.uniform(1.8, 2.4))
    if variant == "noise":
        density = rng.uniform(0.04, 0.08)
        draws = np.random.default_rng(rng.getrandbits(32)).random(pixels.shape[:2])
        noisy = pixels.copy()
        noisy[draws < density / 2] = 0
        noisy[draws > 1 - density / 2] = 255
        return noisy
    raise ValueError(f"unknown degradation {variant!r}")


def _code_turn(thought: str, code_lines: list[str]) -> str:
    code = "\n".join([
        "import cv2",
        "image = cv2.imread('path_to_input_image.jpg')",
        *code_lines,
        "cv2.imwrite('path_to_output_image.jpg', image)",
    ])
    return f"<think>{thought}</think>\n<code>\n```python\n{code}\n```\n</code>"


def _answer_turn(kind: str, text: str) -> str:
    return f"<think>The restored image shows the {kind} {text}.</think>\n<answer>{text}</answer>"


# Rows per split of each variant by default: (train, test).
_DEFAULT_COUNTS = {"full": (160, 48), "tiny": (256, 64)}


def write_coding_dataset(output_dir: str | Path, num_train: int | None = None, num_test: int | None = None,
                         seed: int = 0, variant: str = "full") -> Path:
    """Write ``train.jsonl``, ``test.jsonl`` and their PNG images under ``output_dir``.

    Each row has ``id``, ``images``, ``question``, ``answer``, ``type``, ``split``, ``box`` (the crop box, or null)
    and ``solution``. ``variant`` is ``"full"`` (the task above; 160 and 48 rows by default) or ``"tiny"`` (the crop
    of one colour cell; 256 and 64 rows).
    """
    if variant not in _DEFAULT_COUNTS:
        raise ValueError(f"unknown coding variant {variant!r}: expected one of {', '.join(_DEFAULT_COUNTS)}")
    make_example = make_tiny_coding_example if variant == "tiny" else make_coding_example
    default_train, default_test = _DEFAULT_COUNTS[variant]

    def example(rng: random.Random):
        coding_example = make_example(rng)
        return coding_example.image, coding_example.row()

    counts = {"train": default_train if num_train is None else num_train,
              "test": default_test if num_test is None else num_test}
    return write_task_splits(output_dir, "coding" if variant == "full" else f"coding-{variant}", example, counts, seed)
