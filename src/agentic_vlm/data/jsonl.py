"""Load a task file (JSON lines) into a dataset of conversational prompts with images, as TRL's trainers expect.

Each line is an object with ``question`` (str), ``answer`` (str, or a list of acceptable answers) and optionally
``images`` (paths relative to the file, or absolute), ``id`` and any other fields, which are kept as columns and
reach the reward functions by name. Errors name the file, the line and the field.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from .records import (
    DEFAULT_MAX_IMAGE_PIXELS,
    answers_field,
    collect_rows,
    image_file,
    read_records,
    require,
    string_field,
    to_dataset,
)


def load_jsonl_dataset(path: str | Path, skip_bad_rows: bool = False,
                       max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Dataset:
    """The task file ``path``, every image decoded once; a bad line raises :class:`DatasetFormatError`, or with
    ``skip_bad_rows`` is left out (a warning gives how many, with the first reasons)."""
    path = Path(path)
    bad_rows: list[str] | None = [] if skip_bad_rows else None
    rows = collect_rows(read_records(path, bad_rows),
                        lambda record, where: _task_row(record, path, where, max_image_pixels), bad_rows)
    return to_dataset(rows, path, bad_rows)


def _task_row(record: dict, path: Path, where: str, max_image_pixels: int) -> dict:
    question = string_field(record, "question", path, where)
    answer = answers_field(record, "answer", path, where)
    images = record.get("images", [])
    require(isinstance(images, list) and all(isinstance(p, str) for p in images), path, where,
            "field 'images' must be a list of paths")
    extra = {key: value for key, value in record.items() if key not in ("question", "answer", "images")}
    return {
        "prompt": [{"role": "user", "content": question}],
        "images": [image_file(image, [path.parent], path, where, "images", max_image_pixels) for image in images],
        "answer": answer,
        **extra,
    }
