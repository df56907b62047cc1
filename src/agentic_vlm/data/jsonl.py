"""Load a task file (JSON lines) into a dataset of conversational prompts with images, as TRL's trainers expect.

Each line is an object with ``question`` (str), ``answer`` (str, or a list of acceptable answers) and optionally
``images`` (paths relative to the file, or absolute), ``id`` and any other fields, which are kept as columns and
reach the reward functions by name. Errors name the file, the line and the field.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from datasets import Dataset, Image, Sequence


class DatasetFormatError(ValueError):
    """A task file is malformed; the message names the file, the line and the field."""


def _require(condition: bool, path: Path, line: int, message: str) -> None:
    if not condition:
        raise DatasetFormatError(f"{path}, line {line}: {message}")


def load_jsonl_dataset(path: str | Path) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} does not exist")
    rows = []
    with open(path) as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetFormatError(f"{path}, line {line_number}: not valid JSON ({error.msg})") from None
            _require(isinstance(row, dict), path, line_number, "expected a JSON object")
            question = row.pop("question", None)
            _require(isinstance(question, str) and question.strip() != "", path, line_number,
                     "field 'question' must be a non-empty string")
            answer = row.get("answer")
            _require(isinstance(answer, str) or (isinstance(answer, list) and all(isinstance(a, str) for a in answer)),
                     path, line_number, "field 'answer' must be a string or a list of strings")
            images = row.pop("images", [])
            _require(isinstance(images, list) and all(isinstance(p, str) for p in images), path, line_number,
                     "field 'images' must be a list of paths")
            resolved = []
            for image in images:
                image_path = Path(image) if Path(image).is_absolute() else path.parent / image
                _require(image_path.is_file(), path, line_number, f"field 'images': file {image_path} does not exist")
                resolved.append(str(image_path))
            rows.append({"prompt": [{"role": "user", "content": question}], "images": resolved, **row})
    if not rows:
        raise DatasetFormatError(f"{path}: no rows")
    if any(isinstance(row["answer"], list) for row in rows):  # one column type: lists of acceptable answers
        for row in rows:
            row["answer"] = row["answer"] if isinstance(row["answer"], list) else [row["answer"]]
    try:
        dataset = Dataset.from_list(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise DatasetFormatError(f"{path}: a field has different types in different rows ({error})") from None
    # Decoded lazily, row by row, when the trainer reads them.
    return dataset.cast_column("images", Sequence(Image()))
