"""Check every row's images before training or evaluation starts, instead of failing at step 3 inside PIL.

Loaders check the fields of each record as they read it; images are decoded lazily, so a corrupt, empty or enormous
image would surface only when its batch comes up. :func:`check_images` decodes every image once, up front, and
either stops at the first bad one, naming the file, the row, the field and the image, or (``skip_bad_rows``) leaves
the bad rows out and reports how many, with the first few reasons.
"""

from __future__ import annotations

import io
import logging
import warnings

import datasets
import PIL.Image
from datasets import Dataset, Image, Sequence

from ..frames import MAX_ASPECT_RATIO
from ..rewards.answers import as_truth_list
from .records import DatasetFormatError

logger = logging.getLogger(__name__)

REASONS_SHOWN = 5


def image_problem(image: dict, max_image_pixels: int) -> str | None:
    """What is wrong with one encoded image (``{"path", "bytes"}`` as datasets stores it), or ``None``."""
    name = image.get("path") or "(embedded bytes)"
    try:
        source = io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]
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


def check_images(dataset: Dataset, source: str, *, skip_bad_rows: bool = False,
                 max_image_pixels: int = PIL.Image.MAX_IMAGE_PIXELS, column: str = "images") -> Dataset:
    """``dataset`` after decoding every image of ``column`` once; rows are numbered from 1 in the order the file
    holds them. A bad image raises :class:`DatasetFormatError` naming ``source``, the row (and its ``id``), the field
    and the image; with ``skip_bad_rows`` the bad rows are dropped and a warning gives their count and first reasons."""
    if column not in dataset.column_names:
        return dataset
    quiet = not datasets.utils.are_progress_bars_disabled()
    if quiet:  # the cast is instant; its progress bar would only clutter the console
        datasets.utils.disable_progress_bars()
    try:
        encoded = dataset.cast_column(column, Sequence(Image(decode=False)))[column]
    finally:
        if quiet:
            datasets.utils.enable_progress_bars()
    ids = dataset["id"] if "id" in dataset.column_names else None
    good, reasons = [], []
    for index, images in enumerate(encoded):
        problems = [problem for image in images or [] if (problem := image_problem(image, max_image_pixels))]
        if not problems:
            good.append(index)
            continue
        where = f"row {index + 1}" + (f" (id {ids[index]})" if ids is not None else "")
        reason = f"{source}, {where}: field {column!r}: {problems[0]}"
        if not skip_bad_rows:
            raise DatasetFormatError(reason + " (skip_bad_rows leaves such rows out)")
        reasons.append(reason)
    if not reasons:
        return dataset
    report_skipped_rows(reasons, len(dataset), source)
    return dataset.select(good)


def report_skipped_rows(reasons: list[str], total: int, source: str) -> None:
    """Warn how many of ``total`` rows were left out, with the first reasons; every row bad is an error."""
    if len(reasons) == total:
        raise DatasetFormatError(f"{source}: every row is bad; the first: {reasons[0]}")
    logger.warning("skipped %d bad row(s) of %d in %s; the first:\n  %s", len(reasons), total, source,
                   "\n  ".join(reasons[:REASONS_SHOWN]))


def check_answers(dataset, source: str, column: str = "answer") -> None:
    """Raise :class:`DatasetFormatError` naming the row if an ``answer`` cell is not one the rewards can read (a
    string, a number, a list of them, SQuAD's ``{"text": [...]}`` or ``None``; see
    :func:`~agentic_vlm.rewards.answers.as_truth_list`), so that it fails before training, not at its batch."""
    if not isinstance(dataset, Dataset) or column not in dataset.column_names:
        return
    for index, cell in enumerate(dataset[column]):
        try:
            as_truth_list(cell)
        except ValueError as error:
            raise DatasetFormatError(f"{source}, row {index + 1}: field {column!r}: {error}") from None
