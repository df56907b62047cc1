"""Reading dataset files record by record, each checked field by field and its images decoded once, up front.

Every error is a :class:`DatasetFormatError` that names the file, the record ("row 3" of a JSON list or a parquet
file, "line 3" of a JSON-lines or TSV file) and the field, so that a malformed release is fixed in one look, and so
that a corrupt, empty or enormous image stops the run before any model loads, not at step 3 inside PIL. With
``skip_bad_rows`` a loader leaves the bad records out instead, and warns how many, with the first reasons.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import PIL.Image
import pyarrow as pa
from datasets import Dataset, Image, Sequence

from ..frames import MAX_ASPECT_RATIO

logger = logging.getLogger(__name__)

DEFAULT_MAX_IMAGE_PIXELS = PIL.Image.MAX_IMAGE_PIXELS
REASONS_SHOWN = 5


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
        report_skipped_rows(bad_rows, len(bad_rows), str(path))  # every record bad: the error that says so
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


def image_file(name: str, roots: list[Path], path: Path, where: str, field: str,
               max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> str:
    """The first existing file ``name`` under ``roots`` (or ``name`` itself when absolute), checked to decode."""
    candidates = [Path(name)] if Path(name).is_absolute() else [root / name for root in roots]
    found = next((candidate for candidate in candidates if candidate.is_file()), None)
    if found is None:
        looked = ", ".join(str(candidate.parent) for candidate in candidates)
        raise DatasetFormatError(f"{path}, {where}: field {field!r}: image {name} is not in {looked}")
    problem = image_problem(found, str(found), max_image_pixels)
    require(problem is None, path, where, f"field {field!r}: {problem}")
    return str(found)


def embedded_image(data: bytes, path: Path, where: str, field: str,
                   max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> dict:
    """An image held in the file itself, checked to decode, as ``{"bytes", "path"}`` (what datasets' ``Image``
    feature reads)."""
    problem = image_problem(io.BytesIO(data), "(embedded)", max_image_pixels)
    require(problem is None, path, where, f"field {field!r}: {problem}")
    return {"bytes": data, "path": None}


def image_problem(source, name: str, max_image_pixels: int) -> str | None:
    """What is wrong with the image at ``source`` (a path or a file object) called ``name``, or ``None``."""
    try:
        with warnings.catch_warnings(), PIL.Image.open(source) as opened:
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            width, height = opened.size  # from the header: a huge image is refused before it is decoded
            if width * height > max_image_pixels:
                return f"image {name} is {width}x{height}, more than max_image_pixels ({max_image_pixels})"
            if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
                return f"image {name} is {width}x{height}, an aspect ratio over {MAX_ASPECT_RATIO}"
            opened.load()
    except PIL.Image.DecompressionBombError as error:  # PIL refuses over twice its limit before reading the size
        return f"image {name} is larger than max_image_pixels ({max_image_pixels}): {error}"
    except (OSError, ValueError, SyntaxError) as error:
        return f"image {name} cannot be decoded ({type(error).__name__}: {error})"
    return None


def collect_rows(records: Iterable[tuple[str, object]], make_row: Callable[[object, str], dict],
                 bad_rows: list[str] | None) -> list[dict]:
    """``make_row(record, where)`` for each located record. A record it refuses (:class:`DatasetFormatError`) stops
    the load, or, when ``bad_rows`` is a list (``skip_bad_rows``), is left out and its reason appended there."""
    rows = []
    for where, record in records:
        try:
            rows.append(make_row(record, where))
        except DatasetFormatError as error:
            if bad_rows is None:
                raise DatasetFormatError(f"{error} (skip_bad_rows leaves such rows out)") from None
            bad_rows.append(str(error))
    return rows


def report_skipped_rows(reasons: list[str], total: int, source: str, units: str = "rows") -> None:
    """Warn how many of ``total`` rows (or other ``units``) were left out, with the first reasons; every one bad is
    an error."""
    if len(reasons) == total:
        raise DatasetFormatError(f"{source}: no good {units}; the first bad one: {reasons[0]}")
    logger.warning("skipped %d of %d %s in %s as bad; the first:\n  %s", len(reasons), total, units, source,
                   "\n  ".join(reasons[:REASONS_SHOWN]))


def to_dataset(rows: list[dict], path: Path, bad_rows: list[str] | None = None) -> Dataset:
    """Rows with ``prompt``, ``images`` (paths, or ``{"bytes", "path"}``) and ``answer`` as a dataset whose images
    decode lazily; ``bad_rows``, the reasons of the records left out, are reported here.

    When some answers are lists, every answer becomes a list (a dataset column has one type).
    """
    if bad_rows:
        report_skipped_rows(bad_rows, len(rows) + len(bad_rows), str(path))
    if not rows:
        raise DatasetFormatError(f"{path}: no rows")
    if any(isinstance(row["answer"], list) for row in rows):
        for row in rows:
            row["answer"] = row["answer"] if isinstance(row["answer"], list) else [row["answer"]]
    try:
        dataset = Dataset.from_list(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise DatasetFormatError(f"{path}: a field has different types in different rows ({error})") from None
    return dataset.cast_column("images", Sequence(Image()))
