"""Offline synthetic tasks, deterministic by seed.

The zoom task: a 224x224 image is split into a 3x3 grid of coloured cells on a grey background with noise. The
question names one cell by its box in pixels and asks its colour. Seen whole, the image holds nine colours and the
model must ground pixel coordinates to find the right one; zoomed into the box, one colour fills the view. For a
small model, answering reliably needs the zoom tool, which makes the task a small, honest check that training
teaches a model to use it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageDraw

from ..protocols.arft import ArftProtocol
from ..tools.zoom import ZoomTool
from .splits import write_task_splits

IMAGE_SIZE = 224
GRID = 3
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
}


def cell_boxes() -> list[tuple[int, int, int, int]]:
    edges = [round(i * IMAGE_SIZE / GRID) for i in range(GRID + 1)]
    return [(edges[c], edges[r], edges[c + 1], edges[r + 1]) for r in range(GRID) for c in range(GRID)]


def box_text(box: tuple[int, int, int, int]) -> str:
    return "[" + ", ".join(str(v) for v in box) + "]"


def zoom_question(box: tuple[int, int, int, int]) -> str:
    return f"What color is the cell inside the box {box_text(box)}? Answer with one word."


def zoom_solution(box: tuple[int, int, int, int], color: str) -> list[str]:
    """The reference trajectory, one string per assistant turn (used for the supervised warm start)."""
    return [
        "<think>I zoom into the box.</think>\n<zoom>" + box_text(box) + "</zoom>",
        f"<think>The cell is {color}.</think>\n<answer>{color}</answer>",
    ]


def make_zoom_example(rng: random.Random) -> dict:
    """One example: the image, the question, the answer and the reference solution."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    boxes = cell_boxes()
    colors = [rng.choice(list(COLORS)) for _ in boxes]
    for (x1, y1, x2, y2), color in zip(boxes, colors, strict=True):
        draw.rectangle((x1 + 3, y1 + 3, x2 - 4, y2 - 4), fill=COLORS[color])
    for _ in range(150):  # speckle noise, so that the image is not flat colour
        x, y = rng.randrange(IMAGE_SIZE), rng.randrange(IMAGE_SIZE)
        shade = rng.randint(100, 156)
        draw.point((x, y), fill=(shade, shade, shade))
    target = rng.randrange(len(boxes))
    box, color = boxes[target], colors[target]
    return {
        "image": image,
        "question": zoom_question(box),
        "answer": color,
        "box": list(box),
        "solution": zoom_solution(box, color),
    }


def write_zoom_dataset(output_dir: str | Path, num_train: int = 256, num_test: int = 64, seed: int = 0) -> Path:
    """Write ``train.jsonl``, ``test.jsonl`` and their PNG images under ``output_dir``."""

    def example(rng: random.Random):
        fields = make_zoom_example(rng)
        return fields.pop("image"), fields

    return write_task_splits(output_dir, "zoom", example, {"train": num_train, "test": num_test}, seed)


def tokenizer_training_corpus() -> Iterator[str]:
    """Texts the small test vocabulary is trained on: the protocol, the synthetic tasks and plain English."""
    protocol = ArftProtocol()
    yield protocol.system_prompt([ZoomTool()])
    yield "<search>query</search> <code>print(1)</code> <information></information> <answer></answer>"
    rng = random.Random(1234)
    for _ in range(300):
        example = make_zoom_example(rng)
        yield example["question"]
        yield from example["solution"]
        yield f"<information>The box {box_text(tuple(example['box']))} enlarged.</information>"
    yield " ".join(str(n) for n in range(1000))
    yield (
        "The quick brown fox jumps over the lazy dog. What is the name of the city, the river, the person, "
        "the year, the number, the color, the animal in this image? Search for the answer and write code to "
        "rotate, crop, enhance, brighten, or sharpen the image. import numpy as np from PIL import Image "
        "image = Image.open('path_to_input_image.jpg') image.save('path_to_output_image.jpg') print(result)"
    )
