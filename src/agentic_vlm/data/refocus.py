"""ReFOCUS chart and table questions (VTool-R1): the published parquet files, and an offline synthetic look-alike.

A row's ``metadata`` holds the boxes, in pixels, of the image's labelled parts: ``columns_bbox`` and ``rows_bbox`` for
a table (rows keyed by their first cell, the header row included), ``x_values_bbox`` for a vertical bar chart and
``y_values_bbox`` for a horizontal one, each mapping a label to ``{"x1", "y1", "x2", "y2"}``. The code tool defines
them as variables in the sandbox (:mod:`agentic_vlm.tools.refocus`) and the prompt lists their labels. Datasets carry
the metadata as JSON text: its keys differ from row to row, which an Arrow struct column cannot hold.

- :func:`load_refocus_parquet`: a ReFOCUS parquet file (``metadata``, ``figure_id``, ``figure_path``, ``query``,
  ``answer``, ``images``), checked row by row, images included. An answer with ``|||`` is a list whose items are all required (VTool-R1
  asks its judge for "the same list" and its rule-based score gives credit per item); it becomes one answer of
  several parts joined by ``||``, which the metrics score part by part.
- :func:`write_refocus_dataset`: bar charts and tables drawn with PIL, deterministic by seed, with questions whose
  answers are numbers or labels read off the image, and reference solutions in the vtool protocol's format.

  ``variant="tiny"`` is a task that the tiny CPU model (:mod:`agentic_vlm.tiny`: random vision tower, no reading of
  rendered text) learns in minutes with the same tool: a vertical bar chart of 3-4 bars of different flat colours
  (the zoom task's six), labelled with bird names in random order, and the question "What color is the bar of the x
  value ["Robin"]?". Neither the prompt nor the image (whose labels the model cannot read) tells which bar is
  Robin's: without the tool the answer is a guess among the bars' colours. The tool's way writes the label into one
  action, ``display(focus_on_x_values_with_mask(image_1, ["Robin"], x_values_bbox))``, which blanks every other bar,
  so that the observation shows one colour, the answer.
  The five names are 3 to 7 tokens long in the tiny vocabulary, each a different length, so that questions differ in
  length and in several tokens, as the zoom task's boxes do: the tiny model then writes the right name after about a
  hundred steps. With one-token labels (letters, digits), whose questions differ in that one token only, it wrote the
  same label whatever the question, even after 600 steps (bench/RESULTS.md).
  Only 40% of the reference solutions (``TINY_TOOL_SHARE``) take the tool's way; the others answer at once, as a
  model that does not think of the tool would. A warm start on them teaches the tool and reading the masked chart,
  but leaves the model answering at once when it decodes greedily: a guess. What GRPO has to learn is the lesson of
  VTool-R1, that the tool pays (bench/RESULTS.md: the held-out accuracy goes from a guess to the tool's).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import PIL.Image
from datasets import Dataset
from PIL import ImageDraw, ImageFont

from ..rewards.answers import ITEM_SEPARATOR
from .records import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DatasetFormatError,
    collect_rows,
    embedded_image,
    image_file,
    require,
    to_dataset,
)
from .splits import write_task_splits
from .synthetic import COLORS

# The box fields the editing functions take, and how the prompt names their labels.
LABELLED_BOX_FIELDS = {
    "columns_bbox": "the columns",
    "rows_bbox": "the rows (by their first cell)",
    "x_values_bbox": "the x values",
    "y_values_bbox": "the y values",
}
REFOCUS_COLUMNS = ("metadata", "figure_id", "figure_path", "query", "answer", "images")
ANSWER_SEPARATOR = "|||"
BOX_KEYS = ("x1", "y1", "x2", "y2")


def refocus_question(question: str, metadata: dict) -> str:
    """The prompt text: the question, then the box variables and their labels, which the model's code names."""
    described = [
        f"{field} for {words} {json.dumps(list(metadata[field]), ensure_ascii=False)}"
        for field, words in LABELLED_BOX_FIELDS.items()
        if metadata.get(field)
    ]
    return f"{question}\nBoxes in pixels: {'; '.join(described)}."


# ---------------------------------------------------------------------------------------------------------- loading
def load_refocus_parquet(path: str | Path, skip_bad_rows: bool = False,
                         max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Dataset:
    """Load a ReFOCUS parquet file as a dataset of prompts with images, ``answer`` (its items joined by ``||``),
    ``question``, ``metadata`` (JSON text) and ``figure_id``. Errors name the file, the row and the field.

    An image comes from the ``images`` cell (encoded bytes, as datasets writes them) or, where that is empty, from
    the file at ``figure_path`` (relative to the parquet file's folder, or absolute). ``query`` is taken to be the
    question alone; the prompt adds the list of labelled boxes.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ReFOCUS file {path} does not exist")
    parquet = pq.ParquetFile(path)
    missing = [column for column in REFOCUS_COLUMNS if column not in parquet.schema_arrow.names]
    if missing:
        raise DatasetFormatError(f"{path}: missing column(s) {missing}; a ReFOCUS file has {list(REFOCUS_COLUMNS)}")
    records = (record for batch in parquet.iter_batches(batch_size=256, columns=list(REFOCUS_COLUMNS))
               for record in batch.to_pylist())
    bad_rows: list[str] | None = [] if skip_bad_rows else None
    rows = collect_rows(((f"row {number}", record) for number, record in enumerate(records, start=1)),
                        lambda record, where: _refocus_row(record, path, where, max_image_pixels), bad_rows)
    return to_dataset(rows, path, bad_rows)


def _refocus_row(record: dict, path: Path, where: str, max_image_pixels: int) -> dict:
    def field_error(field: str, message: str) -> DatasetFormatError:
        return DatasetFormatError(f"{path}, {where}: field {field!r}: {message}")

    query, answer = record["query"], record["answer"]
    if not (isinstance(query, str) and query.strip()):
        raise field_error("query", "must be a non-empty string")
    if not isinstance(answer, str):
        raise field_error("answer", f"must be a string, got {type(answer).__name__}")
    items = [item.strip() for item in answer.split(ANSWER_SEPARATOR) if item.strip()]
    if not items:
        raise field_error("answer", "holds no answer")
    try:
        metadata = parse_metadata(record["metadata"])
    except ValueError as error:
        raise field_error("metadata", str(error)) from None
    images = _images(record["images"], record["figure_path"], path, where, max_image_pixels)
    return {
        "prompt": [{"role": "user", "content": refocus_question(query, metadata)}],
        "question": query,
        "answer": f" {ITEM_SEPARATOR} ".join(items),
        "images": images,
        "metadata": json.dumps(metadata),
        "figure_id": str(record["figure_id"]),
    }


def parse_metadata(cell: str | bytes | dict) -> dict:
    """A metadata cell as a dict, its labelled boxes checked; raises ``ValueError`` saying what is wrong."""
    if isinstance(cell, bytes):
        cell = cell.decode()
    if isinstance(cell, str):
        try:
            cell = json.loads(cell)
        except json.JSONDecodeError as error:
            raise ValueError(f"not valid JSON ({error.msg})") from None
    if not isinstance(cell, dict):
        raise ValueError(f"must be a JSON object, got {type(cell).__name__}")
    # Parquet files written from Python dicts store the keys a row lacks as nulls.
    metadata = {key: value for key, value in cell.items() if value is not None}
    if not any(metadata.get(field) for field in LABELLED_BOX_FIELDS):
        raise ValueError(f"has no boxes: none of {list(LABELLED_BOX_FIELDS)} is a non-empty mapping")
    for field in LABELLED_BOX_FIELDS:
        boxes = metadata.get(field, {})
        if not isinstance(boxes, dict):
            raise ValueError(f"{field} must map each label to its box, got {type(boxes).__name__}")
        for label, box in boxes.items():
            if not _is_box(box):
                raise ValueError(f"{field}[{label!r}] must be {{'x1', 'y1', 'x2', 'y2'}} or [x1, y1, x2, y2] in "
                                 f"pixels, got {box!r}")
    return metadata


def _is_box(box) -> bool:
    corners = [box.get(key) for key in BOX_KEYS] if isinstance(box, dict) else box
    return (
        isinstance(corners, list | tuple)
        and len(corners) == 4
        and all(isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
                for value in corners)
    )


def _images(cell, figure_path: str | None, path: Path, where: str, max_image_pixels: int) -> list[dict]:
    """The row's images as ``{"bytes", "path"}`` (what datasets' ``Image`` feature reads), each checked to decode: the
    encoded images of the ``images`` cell, or else the file at
    ``figure_path`` (relative to the parquet file's folder, or absolute)."""
    cells = [] if cell is None else cell if isinstance(cell, list) else [cell]
    images = []
    for number, entry in enumerate(cells):
        data = entry.get("bytes") if isinstance(entry, dict) else entry
        require(isinstance(data, bytes), path, where, f"field 'images': image {number} has no encoded bytes")
        images.append(embedded_image(data, path, where, "images", max_image_pixels))
    if images:
        return images
    require(bool(figure_path), path, where, "field 'images' is empty, and so is 'figure_path'")
    return [{"bytes": None, "path": image_file(figure_path, [path.parent], path, where, "figure_path", max_image_pixels)}]


# -------------------------------------------------------------------------------------------------------- synthetic
FONT_SIZE = 13
MARGIN = 10
CELL_PADDING = 8
ROW_HEIGHT = 22
SLOT_WIDTH = 56  # of a vertical bar chart's category
SLOT_HEIGHT = 30  # of a horizontal bar chart's category
BAR_COLORS = ((70, 130, 180), (60, 150, 90), (200, 120, 40), (130, 90, 170))
GRID_COLOR = (150, 150, 150)
HEADER_COLOR = (225, 225, 225)

# Entity column, its plural, the entities, and the numeric columns of a table.
TABLE_THEMES = (
    ("Team", "teams", ("Falcons", "Otters", "Comets", "Ravens", "Tigers", "Pilots", "Rovers", "Wolves"),
     ("Wins", "Losses", "Draws", "Goals", "Points")),
    ("City", "cities", ("Oslo", "Lyon", "Porto", "Turin", "Gdansk", "Malmo", "Bruges", "Graz"),
     ("Museums", "Parks", "Bridges", "Theatres", "Markets")),
    ("Shop", "shops", ("Alder", "Birch", "Cedar", "Maple", "Rowan", "Willow", "Hazel", "Aspen"),
     ("Staff", "Sales", "Returns", "Visitors", "Orders")),
)
# Category kind, the categories, and the quantity a bar chart shows. Labels are words: a numeric label ("2019")
# would be scored as a number by the rule-based reward.
CHART_THEMES = (
    ("month", ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), "Visitors"),
    ("fruit", ("Apple", "Pear", "Plum", "Kiwi", "Mango", "Lime", "Fig", "Peach"), "Sales"),
    ("region", ("North", "South", "East", "West", "Centre", "Coast", "Hills"), "Rainfall"),
)
STYLES = ("mask", "draw", "highlight")


def _font() -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_SIZE)


def _box(x1: float, y1: float, x2: float, y2: float) -> dict:
    return {"x1": round(x1), "y1": round(y1), "x2": round(x2), "y2": round(y2)}


def _labels(labels: list[str]) -> str:
    return json.dumps(labels, ensure_ascii=False)


def _action(number: int, thought: str, lines: list[str]) -> str:
    code = "\n".join(lines)
    return f"THOUGHT {number}: {thought}\nACTION {number}:\n```python\n{code}\n```\n"


def _answer(number: int, thought: str, answer: str) -> str:
    return f"THOUGHT {number}: {thought}\nFINAL ANSWER: {answer}"


def draw_table(header: list[str], rows: list[list[str]]) -> tuple[PIL.Image.Image, dict]:
    """A table image and its metadata (``columns_bbox``, and ``rows_bbox`` keyed by each row's first cell)."""
    font = _font()
    widths = [
        round(max(font.getlength(text) for text in [name, *(row[c] for row in rows)])) + 2 * CELL_PADDING
        for c, name in enumerate(header)
    ]
    lefts = [MARGIN + sum(widths[:c]) for c in range(len(header))]
    right, bottom = MARGIN + sum(widths), MARGIN + ROW_HEIGHT * (len(rows) + 1)
    image = PIL.Image.new("RGB", (right + MARGIN, bottom + MARGIN), "white")
    pen = ImageDraw.Draw(image)
    pen.rectangle((MARGIN, MARGIN, right, MARGIN + ROW_HEIGHT), fill=HEADER_COLOR)
    for r, cells in enumerate([header, *rows]):
        top = MARGIN + r * ROW_HEIGHT
        for left, text in zip(lefts, cells, strict=True):
            pen.text((left + CELL_PADDING, top + ROW_HEIGHT / 2), text, fill="black", font=font, anchor="lm")
        pen.line((MARGIN, top, right, top), fill=GRID_COLOR)
    pen.line((MARGIN, bottom, right, bottom), fill=GRID_COLOR)
    for x in [*lefts, right]:
        pen.line((x, MARGIN, x, bottom), fill=GRID_COLOR)
    metadata = {
        "type": "table",
        "columns_bbox": {name: _box(left, MARGIN, left + width, bottom)
                         for name, left, width in zip(header, lefts, widths, strict=True)},
        "rows_bbox": {cells[0]: _box(MARGIN, MARGIN + r * ROW_HEIGHT, right, MARGIN + (r + 1) * ROW_HEIGHT)
                      for r, cells in enumerate([header, *rows])},
    }
    return image, metadata


def draw_bar_chart(
    title: str, values: dict[str, int], horizontal: bool, color, bar_width: int = 30
) -> tuple[PIL.Image.Image, dict]:
    """A bar chart with its values written at the bars, and its metadata (``x_values_bbox`` for vertical bars,
    ``y_values_bbox`` for horizontal ones; each box spans the category's bar, value and label). ``color`` is the
    bars' RGB colour, or a mapping from each label to its bar's; ``bar_width`` is that of vertical bars (at most
    ``SLOT_WIDTH``; horizontal ones are 18 pixels high)."""
    font = _font()
    top = MARGIN + 26  # below the title
    scale = 100  # values are below 100
    if horizontal:
        label_width = round(max(font.getlength(label) for label in values)) + CELL_PADDING
        axis_x, bar_room = MARGIN + label_width, 200
        width, height = axis_x + bar_room + 40, top + SLOT_HEIGHT * len(values) + MARGIN
    else:
        axis_y, bar_room = 200, 200 - top - 20
        width, height = 2 * MARGIN + 20 + SLOT_WIDTH * len(values), axis_y + 26
    image = PIL.Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(image)
    pen.text((width / 2, MARGIN), title, fill="black", font=font, anchor="mt")
    bar_colors = color if isinstance(color, dict) else dict.fromkeys(values, color)
    boxes = {}
    for slot, (label, value) in enumerate(values.items()):
        length = bar_room * value / scale
        if horizontal:
            y1 = top + slot * SLOT_HEIGHT
            middle = y1 + SLOT_HEIGHT / 2
            pen.rectangle((axis_x, middle - 9, axis_x + length, middle + 9), fill=bar_colors[label])
            pen.text((axis_x - 4, middle), label, fill="black", font=font, anchor="rm")
            pen.text((axis_x + length + 4, middle), str(value), fill="black", font=font, anchor="lm")
            boxes[label] = _box(MARGIN, y1, width - MARGIN, y1 + SLOT_HEIGHT)
        else:
            x1 = MARGIN + 20 + slot * SLOT_WIDTH
            middle = x1 + SLOT_WIDTH / 2
            pen.rectangle((middle - bar_width / 2, axis_y - length, middle + bar_width / 2, axis_y),
                          fill=bar_colors[label])
            pen.text((middle, axis_y - length - 3), str(value), fill="black", font=font, anchor="mb")
            pen.text((middle, axis_y + 5), label, fill="black", font=font, anchor="mt")
            boxes[label] = _box(x1, top, x1 + SLOT_WIDTH, height - 2)
    if horizontal:
        pen.line((axis_x, top, axis_x, height - MARGIN), fill="black")
    else:
        pen.line((MARGIN + 16, axis_y, width - MARGIN, axis_y), fill="black")
    metadata = {
        "type": "h_bar" if horizontal else "v_bar",
        "x_values_bbox": {} if horizontal else boxes,
        "y_values_bbox": boxes if horizontal else {},
    }
    return image, metadata


def make_table_example(rng: random.Random) -> dict:
    """A table and a question about it: a lookup (two actions), a comparison, a total, or a list of rows."""
    entity, plural, names, metrics = rng.choice(TABLE_THEMES)
    entities = rng.sample(names, rng.randint(4, 6))
    columns = rng.sample(metrics, 3)
    values = {column: dict(zip(entities, rng.sample(range(1, 100), len(entities)), strict=True)) for column in columns}
    image, metadata = draw_table([entity, *columns], [[name, *(str(values[c][name]) for c in columns)]
                                                      for name in entities])
    metric = rng.choice(columns)
    column_style, row_style = rng.choice(STYLES), rng.choice(STYLES)
    focus_columns = f"focus_on_columns_with_{column_style}(image_1, {_labels([entity, metric])}, columns_bbox)"
    kind = rng.choice(("lookup", "compare", "total", "list"))
    if kind == "lookup":
        name = rng.choice(entities)
        answer = str(values[metric][name])
        question = f"What is the {metric} of {name}?"
        solution = [
            _action(0, f"I need the {metric} column; first I set the other columns aside.",
                    [f"image_2 = {focus_columns}", "display(image_2)"]),
            _action(1, f"Now I pick out the row of {name}.",
                    [f"display(focus_on_rows_with_{row_style}(image_2, {_labels([name])}, rows_bbox))"]),
            _answer(2, f"The {metric} of {name} is {answer}.", answer),
        ]
        return _example(image, metadata, question, answer, solution)
    if kind == "list":
        count = rng.randint(2, 3)
        ranked = sorted(entities, key=lambda name: values[metric][name], reverse=True)
        threshold = values[metric][ranked[count]]
        chosen = [name for name in entities if values[metric][name] > threshold]  # in table order
        answer = f" {ITEM_SEPARATOR} ".join(chosen)
        question = f"Which {plural} have more than {threshold} {metric}? List all of them."
        solution = [
            _action(0, f"I compare the {metric} of every row, so I focus on that column.",
                    [f"display({focus_columns})"]),
            _answer(1, f"The {plural} above {threshold} are {', '.join(chosen)}.", answer),
        ]
        return _example(image, metadata, question, answer, solution)
    first, second = rng.sample(entities, 2)
    if kind == "compare":
        answer = max((first, second), key=lambda name: values[metric][name])
        question = f"Which has more {metric}, {first} or {second}?"
    else:
        answer = str(values[metric][first] + values[metric][second])
        question = f"What is the total {metric} of {first} and {second}?"
    solution = [
        _action(0, f"I need the {metric} of {first} and {second}, so I focus on that column and those rows.",
                [f"image_2 = {focus_columns}",
                 f"display(focus_on_rows_with_{row_style}(image_2, {_labels([first, second])}, rows_bbox))"]),
        _answer(1, f"{first} has {values[metric][first]} and {second} has {values[metric][second]}.", answer),
    ]
    return _example(image, metadata, question, answer, solution)


def make_chart_example(rng: random.Random) -> dict:
    """A vertical or horizontal bar chart and a question: one bar's value, the highest bar, or a difference."""
    category, labels, quantity = rng.choice(CHART_THEMES)
    count = rng.randint(4, 6)
    start = rng.randrange(len(labels) - count + 1)
    values = dict(zip(labels[start:start + count], rng.sample(range(5, 96), count), strict=True))
    horizontal = rng.random() < 0.5
    image, metadata = draw_bar_chart(f"{quantity} by {category}", values, horizontal, rng.choice(BAR_COLORS))
    axis = "y_values" if horizontal else "x_values"
    style = rng.choice(STYLES)

    def focus(chosen: list[str]) -> str:
        return f"display(focus_on_{axis}_with_{style}(image_1, {_labels(chosen)}, {axis}_bbox))"

    kind = rng.choice(("value", "highest", "difference"))
    if kind == "value":
        label = rng.choice(list(values))
        answer, question = str(values[label]), f"What is the {quantity} of {label}?"
        solution = [_action(0, f"I look at the bar of {label} alone.", [focus([label])]),
                    _answer(1, f"The bar of {label} is labelled {answer}.", answer)]
    elif kind == "highest":
        first, second = sorted(values, key=values.get, reverse=True)[:2]
        answer, question = first, f"Which {category} has the highest {quantity}?"
        solution = [_action(0, f"The longest bars look like {first} and {second}; I compare them.",
                            [focus([first, second])]),
                    _answer(1, f"{first} has {values[first]} and {second} has {values[second]}.", answer)]
    else:
        first, second = rng.sample(list(values), 2)
        answer = str(abs(values[first] - values[second]))
        question = f"What is the difference in {quantity} between {first} and {second}?"
        solution = [_action(0, f"I focus on the bars of {first} and {second}.", [focus([first, second])]),
                    _answer(1, f"{first} has {values[first]} and {second} has {values[second]}.", answer)]
    return _example(image, metadata, question, answer, solution)


def _example(image: PIL.Image.Image, metadata: dict, question: str, answer: str, solution: list[str]) -> dict:
    return {"image": image, "question": refocus_question(question, metadata), "answer": answer,
            "metadata": json.dumps(metadata), "solution": solution}


def make_refocus_example(rng: random.Random) -> dict:
    """One example, a table or a chart with equal odds: ``image``, ``question`` (with the box labels),
    ``answer``, ``metadata`` (JSON text) and ``solution`` (the reference turns)."""
    return make_table_example(rng) if rng.random() < 0.5 else make_chart_example(rng)


# The tiny variant: its labels, each a different number of tokens (see the module docstring), and bars nearly as wide
# as their slots (a bar as wide reaches a pixel into the next slot, which its mask leaves) and nearly as tall as the
# chart, so that the one bar a mask leaves shows a large patch of its colour in the tiny model's few image tokens.
TINY_LABELS = ("Jay", "Robin", "Quail", "Magpie", "Nightingale")
TINY_BAR_WIDTH = SLOT_WIDTH - 4
TINY_VALUES = range(80, 100)
TINY_TOOL_SHARE = 0.4  # of the reference solutions: the others answer at once (see the module docstring)


def make_tiny_refocus_example(rng: random.Random) -> dict:
    """One example of the tiny variant (see the module docstring): the fields of :func:`make_refocus_example`."""
    labels = rng.sample(TINY_LABELS, rng.randint(3, 4))
    colors = dict(zip(labels, rng.sample(list(COLORS), len(labels)), strict=True))
    values = dict(zip(labels, rng.sample(TINY_VALUES, len(labels)), strict=True))
    bar_colors = {label: COLORS[name] for label, name in colors.items()}
    image, metadata = draw_bar_chart("Birds counted", values, False, bar_colors, TINY_BAR_WIDTH)
    label = rng.choice(labels)
    answer = colors[label]
    solution = [
        _action(0, "I mask the other bars.",
                [f"display(focus_on_x_values_with_mask(image_1, {_labels([label])}, x_values_bbox))"]),
        _answer(1, f"The bar is {answer}.", answer),
    ]
    # No list of the labels: which of the five a chart has changes the question's length more than the asked one does.
    question = f"What color is the bar of the x value {_labels([label])}?"
    if rng.random() >= TINY_TOOL_SHARE:  # always drawn: another share changes no chart and no question
        solution = [_answer(0, f"The bar is {answer}.", answer)]
    return {"image": image, "question": question, "answer": answer, "metadata": json.dumps(metadata),
            "solution": solution}


VARIANTS = {"full": (make_refocus_example, 64, 16), "tiny": (make_tiny_refocus_example, 768, 256)}


def write_refocus_dataset(output_dir: str | Path, num_train: int | None = None, num_test: int | None = None,
                          seed: int = 0, variant: str = "full") -> Path:
    """Write ``train.jsonl``, ``test.jsonl`` and their PNG images under ``output_dir`` (loadable with
    :func:`agentic_vlm.data.load_jsonl_dataset`). ``variant`` is ``"full"`` (charts and tables; 64 and 16 rows by
    default) or ``"tiny"`` (the colours of bars; 768 and 256)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ReFOCUS variant {variant!r}; use one of {', '.join(VARIANTS)}")
    make_example, default_train, default_test = VARIANTS[variant]

    def example(rng: random.Random):
        fields = make_example(rng)
        return fields.pop("image"), fields

    counts = {"train": default_train if num_train is None else num_train,
              "test": default_test if num_test is None else num_test}
    return write_task_splits(output_dir, "refocus", example, counts, seed)
