"""Loaders for the high-resolution multiple-choice benchmarks that zoom models are compared on: V* Bench and HR-Bench.

Both give a dataset shaped like :func:`~agentic_vlm.data.load_jsonl_dataset`'s: a conversational ``prompt`` (the
question, then the options as "A. ...", one per line, then the instruction to answer with the letter), ``images``
(decoded lazily), ``answer`` = [the right letter, the right option's text] (what the ``choice`` metric reads), an
``id``, ``category``, and ``options`` (the texts, in the order shown).

- V* Bench (``craigwu/vstar_bench``): a folder with one subfolder per category (``direct_attributes``,
  ``relative_position``), holding for each item an image and a JSON file of the same name with ``question`` and
  ``options``, the right option first (V*'s own evaluation picks the option the model finds likeliest and counts
  option 0 as right). Shown first, the right option would be the answer to every item, so the options are rotated
  by an amount fixed by the item's id: the letter of the right answer varies, the same on every run.
- HR-Bench (``DreamMr/HR-Bench``, ``hr_bench_4k.tsv`` and ``hr_bench_8k.tsv``): a tab-separated file (or the same
  columns in parquet) with ``index``, ``question``, ``A``-``D``, ``answer`` (the letter), ``category`` (``FSP`` or
  ``FCP``), ``cycle_category`` (which rotation of the options the row is: every question appears once per rotation)
  and ``image`` (base64). Its evaluation scores each rotation separately and averages them, which, the rotations
  being of equal size, is the mean over all rows: the summary's figures, also reported per ``cycle_category``.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import string
import sys
import zlib
from pathlib import Path

from datasets import Dataset

from .records import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DatasetFormatError,
    collect_rows,
    embedded_image,
    image_problem,
    require,
    string_field,
    to_dataset,
)

INSTRUCTION = "Answer with the option's letter from the given choices directly."
VSTAR_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
HRBENCH_COLUMNS = ("index", "question", "answer", "category", "cycle_category", "image")


def choice_prompt(question: str, options: list[str]) -> list[dict]:
    lines = [question.strip(), *(f"{letter}. {option}" for letter, option in zip(string.ascii_uppercase, options, strict=False)),
             INSTRUCTION]
    return [{"role": "user", "content": "\n".join(lines)}]


def load_vstar(folder: str | Path, skip_bad_rows: bool = False,
               max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Dataset:
    """V* Bench from its published folder (see the module's docstring); an error names the item's JSON file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"V* Bench folder {folder} does not exist")
    items = [(annotation_file, category.name)
             for category in sorted(path for path in folder.iterdir() if path.is_dir())
             for annotation_file in sorted(category.glob("*.json"))]
    if not items:
        raise DatasetFormatError(f"{folder}: no items; V* Bench has a subfolder per category (direct_attributes, "
                                 "relative_position) of images with a JSON file each")
    bad_rows: list[str] | None = [] if skip_bad_rows else None
    rows = collect_rows(((str(item[0]), item) for item in items),
                        lambda item, where: _vstar_row(*item, max_image_pixels), bad_rows)
    return to_dataset(rows, folder, bad_rows)


def _vstar_row(annotation_file: Path, category: str, max_image_pixels: int) -> dict:
    where = "the file"
    try:
        record = json.loads(annotation_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DatasetFormatError(f"{annotation_file}: not valid JSON ({error.msg})") from None
    require(isinstance(record, dict), annotation_file, where, "expected a JSON object")
    question, options = string_field(record, "question", annotation_file, where), record.get("options")
    require(isinstance(options, list) and 2 <= len(options) <= 26 and all(isinstance(o, str) and o.strip()
                                                                          for o in options),
            annotation_file, where, "field 'options' must be a list of 2 to 26 non-empty strings, the right one first")
    images = [annotation_file.with_suffix(suffix) for suffix in VSTAR_IMAGE_SUFFIXES]
    image = next((path for path in images if path.is_file()), None)
    require(image is not None, annotation_file, where, f"no image beside it ({', '.join(p.name for p in images)})")
    problem = image_problem(image, str(image), max_image_pixels)
    require(problem is None, annotation_file, where, str(problem))
    item_id = f"{category}/{annotation_file.stem}"
    shift = zlib.crc32(item_id.encode()) % len(options)  # the right option (first) ends up at index `shift`
    shown = options[-shift:] + options[:-shift] if shift else list(options)
    return {"id": item_id, "prompt": choice_prompt(question, shown), "images": [str(image)],
            "answer": [string.ascii_uppercase[shift], options[0]], "category": category, "options": shown}


def load_hrbench(path: str | Path, skip_bad_rows: bool = False,
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Dataset:
    """HR-Bench 4K or 8K from its published TSV, or a parquet file with the same columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HR-Bench file {path} does not exist")
    records = _parquet_records(path) if path.suffix == ".parquet" else _tsv_records(path)
    bad_rows: list[str] | None = [] if skip_bad_rows else None
    rows = collect_rows(records, lambda record, where: _hrbench_row(record, path, where, max_image_pixels), bad_rows)
    return to_dataset(rows, path, bad_rows)


def _tsv_records(path: Path) -> list[tuple[str, dict]]:
    csv.field_size_limit(sys.maxsize)  # an 8K image in base64 is tens of megabytes in one field
    with open(path, encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file, delimiter="\t")
        _require_columns(path, reader.fieldnames or [])
        # The header is line 1; a record is named by the line it ends on (a quoted field may span lines).
        return [(f"line {reader.line_num}", record) for record in reader]


def _parquet_records(path: Path) -> list[tuple[str, dict]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    _require_columns(path, table.column_names)
    return [(f"row {number}", record) for number, record in enumerate(table.to_pylist(), start=1)]


def _require_columns(path: Path, columns: list[str]) -> None:
    missing = [column for column in HRBENCH_COLUMNS if column not in columns]
    if missing:
        raise DatasetFormatError(f"{path}: missing column(s) {missing}; HR-Bench has {list(HRBENCH_COLUMNS)} "
                                 "and the options A, B, C, D")


def _hrbench_row(record: dict, path: Path, where: str, max_image_pixels: int) -> dict:
    options = []
    for letter in string.ascii_uppercase:
        value = record.get(letter)
        if value is None or (isinstance(value, str) and not value.strip()):
            break
        options.append(str(value))
    require(len(options) >= 2, path, where, "needs the options A and B at least")
    letter = str(record["answer"]).strip()
    require(letter in string.ascii_uppercase[: len(options)], path, where,
            f"field 'answer' must be the letter of an option (A-{string.ascii_uppercase[len(options) - 1]}), "
            f"got {record['answer']!r}")
    question = string_field(record, "question", path, where)
    try:
        image = base64.b64decode(record["image"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise DatasetFormatError(f"{path}, {where}: field 'image' is not base64") from None
    return {"id": str(record["index"]), "prompt": choice_prompt(question, options),
            "images": [embedded_image(image, path, where, "image", max_image_pixels)], "answer": [letter, options[ord(letter) - ord("A")]],
            "category": str(record["category"]), "cycle_category": str(record["cycle_category"]), "options": options}
