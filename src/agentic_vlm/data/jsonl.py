"""Load a task file (JSON lines) into a dataset of conversational prompts with images, as TRL's trainers expect.

Each line is an object with ``question`` (str), ``answer`` (str, or a list of acceptable answers) and optionally
``images`` (paths relative to the file, or absolute), ``id`` and any other fields, which are kept as columns and
reach the reward functions by name. Errors name the file, the line and the field.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from .records import answers_field, image_file, read_records, require, string_field, to_dataset


def load_jsonl_dataset(path: str | Path) -> Dataset:
    path = Path(path)
    rows = []
    for where, record in read_records(path):
        question = string_field(record, "question", path, where)
        answer = answers_field(record, "answer", path, where)
        images = record.get("images", [])
        require(isinstance(images, list) and all(isinstance(p, str) for p in images), path, where,
                "field 'images' must be a list of paths")
        extra = {key: value for key, value in record.items() if key not in ("question", "answer", "images")}
        rows.append({
            "prompt": [{"role": "user", "content": question}],
            "images": [image_file(image, [path.parent], path, where, "images") for image in images],
            "answer": answer,
            **extra,
        })
    return to_dataset(rows, path)
