"""Writing a synthetic task to disk: one JSONL file per split and the rows' images as PNG files beside them."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image


def write_task_splits(
    output_dir: str | Path,
    prefix: str,
    make_example: Callable[[random.Random], tuple[Image.Image, dict]],
    counts: dict[str, int],
    seed: int,
) -> Path:
    """Write ``<split>.jsonl`` for each split of ``counts`` (in order, from one generator seeded with ``seed``) and
    the images under ``output_dir/images``. ``make_example(rng)`` returns a row's image and its other fields; each
    row gets an ``id`` (``<prefix>-<split>-<index>``) and ``images`` (its image's path, relative to the file)."""
    output_dir = Path(output_dir)
    (output_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for split, count in counts.items():
        with open(output_dir / f"{split}.jsonl", "w") as file:
            for index in range(count):
                image, fields = make_example(rng)
                item_id = f"{prefix}-{split}-{index:05d}"
                image_path = f"images/{item_id}.png"
                image.save(output_dir / image_path, optimize=True)
                file.write(json.dumps({"id": item_id, "images": [image_path], **fields}) + "\n")
    return output_dir
