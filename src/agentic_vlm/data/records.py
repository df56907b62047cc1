"""Reading published dataset files: a JSON list of objects or JSON lines, checked field by field.

Every error is a :class:`DatasetFormatError` that names the file, the record ("row 3" of a JSON list, "line 3" of a
JSON-lines file) and the field, so that a malformed release is fixed in one look.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from datasets import Dataset, Image, Sequence


class DatasetFormatError(ValueError):
    """A dataset file is malformed; the message names the file, the record and the field."""


def read_records(path: str | Path, bad_rows: list[str] | None = None) -> list[tuple[str, dict]]:
    """The objects of ``path`` with where each one is: a JSON file holding a list, or a JSON-lines file. With
    ``bad_rows``, a line that is not valid JSON or not an object is left out and its reason appended there."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise DatasetFormatError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
        located = [(f"row {number}", item) for number, item in enumerate(items, start=1)]
    else:
        located = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                located.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as error:
                reason = f"{path}, line {number}: not valid JSON ({error.msg})"
                if bad_rows is None:
                    raise DatasetFormatError(reason) from None
                bad_rows.append(reason)
    objects = []
    for where, item in located:
        if isinstance(item, dict):
            objects.append((where, item))
        elif bad_rows is None:
            raise DatasetFormatError(f"{path}, {where}: expected a JSON object")
        else:
            bad_rows.append(f"{path}, {where}: expected a JSON object")
    if not objects and bad_rows:
        raise DatasetFormatError(f"{path}: every row is bad; the first: {bad_rows[0]}")
    if not objects:
        raise DatasetFormatError(f"{path}: no rows")
    return objects


def require(condition: bool, path: Path, where: str, message: str) -> None:
    if not condition:
        raise DatasetFormatError(f"{path}, {where}: {message}")


def string_field(record: dict, name: str, path: Path, where: str) -> str:
    """``record[name]``, which must be a non-empty string."""
    value = record.get(name)
    require(isinstance(value, str) and value.strip() != "", path, where, f"field {name!r} must be a non-empty string")
    return value


def answers_field(record: dict, name: str, path: Path, where: str) -> str | list[str]:
    """``record[name]``: one answer or a non-empty list of acceptable answers (SQuAD's ``{"text": [...]}`` too).
    Numbers are read as their text."""
    value = record.get(name)
    if isinstance(value, dict):
        require(isinstance(value.get("text"), list | str), path, where,
                f"field {name!r}: an answer given as a dict needs SQuAD's 'text' key, a string or a list of strings")
        value = value["text"]
    if isinstance(value, list):
        require(bool(value) and all(isinstance(item, str | int | float) for item in value), path, where,
                f"field {name!r} must be a string or a non-empty list of strings")
        return [str(item) for item in value]
    require(isinstance(value, str | int | float) and not isinstance(value, bool), path, where,
            f"field {name!r} must be a string or a non-empty list of strings")
    return str(value)


def image_file(name: str, roots: list[Path], path: Path, where: str, field: str) -> str:
    """The first existing file ``name`` under ``roots`` (or ``name`` itself when absolute)."""
    candidates = [Path(name)] if Path(name).is_absolute() else [root / name for root in roots]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    looked = ", ".join(str(candidate.parent) for candidate in candidates)
    raise DatasetFormatError(f"{path}, {where}: field {field!r}: image {name} is not in {looked}")


def to_dataset(rows: list[dict], path: Path) -> Dataset:
    """Rows with ``prompt``, ``images`` (paths) and ``answer`` as a dataset whose images decode lazily.

    When some answers are lists, every answer becomes a list (a dataset column has one type).
    """
    if any(isinstance(row["answer"], list) for row in rows):
        for row in rows:
            row["answer"] = row["answer"] if isinstance(row["answer"], list) else [row["answer"]]
    try:
        dataset = Dataset.from_list(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise DatasetFormatError(f"{path}: a field has different types in different rows ({error})") from None
    return dataset.cast_column("images", Sequence(Image()))
