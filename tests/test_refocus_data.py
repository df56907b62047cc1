"""ReFOCUS data: the synthetic charts and tables (boxes that match the drawing, solutions that reach the answer), the
shipped files, the tiny variant (its reference action run by the real tool), and the parquet loader on a fixture of
the published schema."""

import asyncio
import io
import json
import random
import re
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from agentic_vlm.data import DatasetFormatError, load_jsonl_dataset
from agentic_vlm.data import refocus as refocus_data
from agentic_vlm.data.refocus import (
    GRID_COLOR,
    TINY_LABELS,
    TINY_TOOL_SHARE,
    draw_bar_chart,
    draw_table,
    load_refocus_parquet,
    make_refocus_example,
    make_tiny_refocus_example,
    write_refocus_dataset,
)
from agentic_vlm.data.synthetic import COLORS
from agentic_vlm.protocols import VtoolProtocol
from agentic_vlm.rewards import build_reward_funcs
from agentic_vlm.tiny import build_tokenizer
from agentic_vlm.tools import Tool
from agentic_vlm.tools.base import ToolContext
from agentic_vlm.tools.code import SandboxUnavailableError
from agentic_vlm.tools.refocus import FUNCTION_NAMES, RefocusCodeTool, editing
from agentic_vlm.tools.refocus.tool import box_variables

SHIPPED = Path(__file__).parents[1] / "data" / "refocus"
SHIPPED_TINY = SHIPPED.with_name("refocus-tiny")


class CodeToolName(Tool):
    """Parsing and scoring need only the code tool's name; no sandbox is started."""

    name, description = "code", ""

    async def __call__(self, argument, context):
        raise AssertionError("not called")


PROTOCOL, TOOLS = VtoolProtocol(), [CodeToolName()]


def pixel_box(box: dict) -> tuple[int, int, int, int]:
    return box["x1"], box["y1"], box["x2"], box["y2"]


def replay(solution: list[str], image: Image.Image, metadata: dict) -> list[Image.Image]:
    """Run the solution's actions as the sandbox would (functions, image_k and box variables defined); returns the
    images each action displayed, in order."""
    images = [image]
    for turn in solution[:-1]:
        action = PROTOCOL.parse_action(turn, TOOLS)
        assert action.kind == "tool", turn
        shown = []
        namespace = {name: getattr(editing, name) for name in FUNCTION_NAMES}
        namespace |= {f"image_{number}": im for number, im in enumerate(images, start=1)}
        namespace |= {name: metadata[name] for name in box_variables(metadata)}
        namespace["display"] = shown.append
        exec(action.argument, namespace)
        assert len(shown) == 1
        images += shown
    return images[1:]


def test_tables_boxes_follow_the_grid():
    header, rows = ["Team", "Wins", "Goals"], [["Otters", "12", "7"], ["Comets", "9", "30"]]
    image, metadata = draw_table(header, rows)
    pixels = np.asarray(image)
    assert list(metadata["columns_bbox"]) == header
    assert list(metadata["rows_bbox"]) == ["Team", "Otters", "Comets"]  # keyed by first cell, header row first
    for box in metadata["columns_bbox"].values():
        x1, y1, x2, y2 = pixel_box(box)
        assert (pixels[y1 + 1:y2 - 1, x1] == GRID_COLOR).all()  # each column starts on a vertical grid line
    for box in metadata["rows_bbox"].values():
        x1, y1, x2, y2 = pixel_box(box)
        assert (pixels[y1, x1 + 1:x2 - 1] == GRID_COLOR).all()
    # the column boxes tile the table without overlapping, as the row boxes do
    columns = [pixel_box(box) for box in metadata["columns_bbox"].values()]
    assert all(left[2] == right[0] for left, right in zip(columns, columns[1:], strict=False))


@pytest.mark.parametrize("horizontal", [False, True])
def test_each_bar_lies_inside_its_own_box(horizontal):
    color = (70, 130, 180)
    values = {"Jan": 10, "Feb": 90, "Mar": 45}
    image, metadata = draw_bar_chart("Visitors by month", values, horizontal, color)
    boxes = metadata["y_values_bbox" if horizontal else "x_values_bbox"]
    assert list(boxes) == list(values) and not metadata["x_values_bbox" if horizontal else "y_values_bbox"]
    bar = (np.asarray(image) == color).all(axis=-1)
    inside_any = np.zeros_like(bar)
    lengths = {}
    for label, box in boxes.items():
        x1, y1, x2, y2 = pixel_box(box)
        inside_any[y1:y2, x1:x2] = True
        in_box = bar[y1:y2, x1:x2]
        lengths[label] = in_box.any(axis=0).sum() if horizontal else in_box.any(axis=1).sum()
    assert not (bar & ~inside_any).any()  # no bar pixel outside the boxes
    assert lengths["Feb"] > lengths["Mar"] > lengths["Jan"] > 0  # bar lengths follow the values


def test_generation_is_deterministic_by_seed(tmp_path):
    first, second, other = (write_refocus_dataset(tmp_path / name, 4, 2, seed)
                            for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert (first / "train.jsonl").read_text() == (second / "train.jsonl").read_text()
    assert (first / "train.jsonl").read_text() != (other / "train.jsonl").read_text()
    for image in (first / "images").iterdir():
        assert image.read_bytes() == (second / "images" / image.name).read_bytes()


def test_reference_solutions_are_well_formed_and_reach_the_answer():
    (reward,) = build_reward_funcs(["refocus_accuracy"], PROTOCOL, TOOLS)
    rng = random.Random(3)
    for _ in range(24):
        example = make_refocus_example(rng)
        metadata = json.loads(example["metadata"])
        solution = example["solution"]
        turns = [PROTOCOL.turn_is_well_formed(turn, TOOLS, is_last=i == len(solution) - 1)
                 for i, turn in enumerate(solution)]
        assert all(turns), solution
        assert all(turn.endswith(PROTOCOL.stop_strings(TOOLS)[0]) for turn in solution[:-1])  # where generation stops
        edited = replay(solution, example["image"], metadata)
        assert all(image.size == example["image"].size for image in edited)
        assert not any(np.array_equal(np.asarray(image), np.asarray(example["image"])) for image in edited)
        completion = [{"role": "assistant", "content": turn} for turn in solution]
        assert reward(prompts=[None], completions=[completion], answer=[example["answer"]]) == [1.0]
        assert "Boxes in pixels:" in example["question"]


def test_shipped_data_loads_and_uses_every_function():
    assert sum(path.stat().st_size for path in SHIPPED.rglob("*") if path.is_file()) < 1_000_000
    train = load_jsonl_dataset(SHIPPED / "train.jsonl")
    assert len(train) == 64 and len(load_jsonl_dataset(SHIPPED / "test.jsonl")) == 16
    row = train[0]
    metadata = json.loads(row["metadata"])
    assert row["images"][0].size[0] > 100
    assert row["prompt"][0]["content"].startswith(("What", "Which"))
    assert set(metadata) & {"columns_bbox", "x_values_bbox", "y_values_bbox"}
    used = {name for solution in train["solution"] for turn in solution for name in re.findall(r"focus_on_\w+", turn)}
    assert used == set(FUNCTION_NAMES)
    assert max(len(solution) for solution in train["solution"]) == 3  # some answers take two actions


# ------------------------------------------------------------------------------------------------- the tiny variant
TINY_QUESTION = re.compile(r"What color is the bar of the x value \[\"(?P<label>\w+)\"\]\?")


def bar_colors(image: Image.Image) -> list[str]:
    """The colours of the zoom task's palette that fill a bar's worth of ``image`` (100 pixels or more)."""
    pixels = np.asarray(image.convert("RGB"))
    return [name for name, rgb in COLORS.items() if (pixels == rgb).all(axis=-1).sum() >= 100]


def asked_label(example: dict) -> str:
    return TINY_QUESTION.fullmatch(example["question"])["label"]


def test_tiny_variant_rows_are_well_formed_and_deterministic_by_seed(tmp_path):
    first, second, other = (write_refocus_dataset(tmp_path / name, 12, 4, seed, variant="tiny")
                            for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert (first / "train.jsonl").read_text() == (second / "train.jsonl").read_text()
    assert (first / "train.jsonl").read_text() != (other / "train.jsonl").read_text()
    for image in (first / "images").iterdir():
        assert image.read_bytes() == (second / "images" / image.name).read_bytes()
    (reward,) = build_reward_funcs(["refocus_accuracy"], PROTOCOL, TOOLS)
    rows = load_jsonl_dataset(first / "train.jsonl")
    assert len(rows) == 12 and len(load_jsonl_dataset(first / "test.jsonl")) == 4
    for row in rows:
        label = TINY_QUESTION.fullmatch(row["prompt"][0]["content"])["label"]
        boxes = json.loads(row["metadata"])["x_values_bbox"]
        assert 3 <= len(boxes) <= 4 and label in boxes and set(boxes) <= set(TINY_LABELS)
        colors = bar_colors(row["images"][0])
        assert len(colors) == len(boxes) and row["answer"] in colors  # one colour per bar; the answer is one of them
        *actions, answer = row["solution"]  # the tool's way, or an answer at once
        assert len(actions) <= 1 and PROTOCOL.turn_is_well_formed(answer, TOOLS, is_last=True)
        for action in actions:
            assert PROTOCOL.turn_is_well_formed(action, TOOLS, is_last=False)
            assert PROTOCOL.parse_action(action, TOOLS).argument == (
                f'display(focus_on_x_values_with_mask(image_1, ["{label}"], x_values_bbox))')
        # The reward takes the colour as written: the answer scores 1, another bar's colour or "Red" for red 0.
        replies = [row["solution"], [*actions, f"THOUGHT 1: x\nFINAL ANSWER: {row['answer'].title()}"],
                   *([*actions, f"THOUGHT 1: x\nFINAL ANSWER: {color}"] for color in colors if color != row["answer"])]
        completions = [[{"role": "assistant", "content": turn} for turn in reply] for reply in replies]
        assert reward(prompts=[None] * len(replies), completions=completions,
                      answer=[row["answer"]] * len(replies)) == [1.0] + [0.0] * (len(replies) - 1)


def test_tiny_reference_solutions_take_the_tool_on_a_share_of_the_charts():
    """TINY_TOOL_SHARE of them mask the other bars, the others answer at once; and the share changes no chart."""
    rng = random.Random(3)
    examples = [make_tiny_refocus_example(rng) for _ in range(2000)]
    with_tool = [example for example in examples if len(example["solution"]) == 2]
    assert abs(len(with_tool) / len(examples) - TINY_TOOL_SHARE) < 0.03
    for example in examples:
        if len(example["solution"]) == 1:
            assert example["solution"] == [f"THOUGHT 0: The bar is {example['answer']}.\nFINAL ANSWER: "
                                           f"{example['answer']}"]
    with patch.object(refocus_data, "TINY_TOOL_SHARE", 1.0):
        rng = random.Random(3)
        all_tool = [make_tiny_refocus_example(rng) for _ in range(50)]
    assert all(len(example["solution"]) == 2 for example in all_tool)
    for example, same in zip(examples, all_tool, strict=False):
        assert example["question"] == same["question"] and example["metadata"] == same["metadata"]
        assert example["image"].tobytes() == same["image"].tobytes()


def test_tiny_labels_are_each_a_different_number_of_tokens_of_the_tiny_vocabulary():
    """What the tiny model tells the questions apart by (see the module docstring)."""
    tokenizer = build_tokenizer("small")
    lengths = [len(tokenizer(f'["{label}"]')["input_ids"]) for label in TINY_LABELS]
    assert len(set(lengths)) == len(TINY_LABELS), dict(zip(TINY_LABELS, lengths, strict=True))


def test_tiny_reference_action_run_by_the_real_tool_leaves_only_the_answers_colour():
    try:
        tool = RefocusCodeTool(workers=1, timeout_s=5.0, memory_mb=256)
    except SandboxUnavailableError as error:
        pytest.skip(f"this host cannot isolate code: {error}")
    rng = random.Random(5)
    examples = [example for example in (make_tiny_refocus_example(rng) for _ in range(30))
                if len(example["solution"]) == 2][:6]

    async def run_actions():
        try:
            return [await tool(PROTOCOL.parse_action(example["solution"][0], TOOLS).argument,
                               ToolContext(trajectory_id=f"t{number}", images=[example["image"]],
                                           row={"metadata": example["metadata"]}, turn=0))
                    for number, example in enumerate(examples)]
        finally:
            await tool.aclose()

    for example, observation in zip(examples, asyncio.run(run_actions()), strict=True):
        assert observation.ok, observation.text
        (shown,) = observation.images
        assert len(bar_colors(example["image"])) >= 3
        assert bar_colors(shown) == [example["answer"]]
        answer_rgb = COLORS[example["answer"]]
        assert ((np.asarray(shown) == answer_rgb).all(axis=-1).sum()
                == (np.asarray(example["image"]) == answer_rgb).all(axis=-1).sum())  # the whole bar is kept


def test_tiny_prompt_text_tells_neither_the_colour_nor_where_the_bar_stands():
    """Without the tool the answer is a guess among the bars' colours: no lookup from the prompt text to the answer or
    to the asked bar's place from the left (which with the image would give the colour), learnt on 1,000 examples,
    beats chance on 250 others by much. Chance: 1/6 for the colour, about 0.29 for the place among 3-4 bars."""
    rng = random.Random(11)
    examples = [make_tiny_refocus_example(rng) for _ in range(1250)]

    def place(example: dict) -> int:
        boxes = json.loads(example["metadata"])["x_values_bbox"]
        return sorted(boxes, key=lambda label: boxes[label]["x1"]).index(asked_label(example))

    for key in (lambda example: example["question"], asked_label):
        for target in (lambda example: example["answer"], place):
            seen: dict = {}
            for example in examples[:1000]:
                seen.setdefault(key(example), []).append(target(example))
            everything = [value for values in seen.values() for value in values]
            lookup = {k: max(set(values), key=values.count) for k, values in seen.items()}
            fallback = max(set(everything), key=everything.count)
            hits = [lookup.get(key(example), fallback) == target(example) for example in examples[1000:]]
            assert sum(hits) / len(hits) < 0.4


def test_shipped_tiny_data_is_what_make_data_writes(tmp_path):
    assert sum(path.stat().st_size for path in SHIPPED_TINY.rglob("*") if path.is_file()) < 6_000_000
    generated = write_refocus_dataset(tmp_path / "tiny", seed=0, variant="tiny")  # the default counts
    for split, count in (("train", 768), ("test", 256)):
        assert (SHIPPED_TINY / f"{split}.jsonl").read_text() == (generated / f"{split}.jsonl").read_text()
        assert len(load_jsonl_dataset(SHIPPED_TINY / f"{split}.jsonl")) == count
    for name in ("refocus-train-00000.png", "refocus-test-00063.png"):
        shipped, made = (Image.open(folder / "images" / name) for folder in (SHIPPED_TINY, generated))
        assert np.array_equal(np.asarray(shipped), np.asarray(made))


def test_unknown_variant_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown ReFOCUS variant 'small'; use one of full, tiny"):
        write_refocus_dataset(tmp_path, variant="small")


# ------------------------------------------------------------------------------------------------- parquet loader
def png_bytes(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), color).save(buffer, format="PNG")
    return buffer.getvalue()


TABLE_METADATA = {"columns_bbox": {"Year": {"x1": 0, "y1": 0, "x2": 15, "y2": 20},
                                   "Sales": {"x1": 15, "y1": 0, "x2": 30, "y2": 20}},
                  "rows_bbox": {"Year": {"x1": 0, "y1": 0, "x2": 30, "y2": 10},
                                "2019": {"x1": 0, "y1": 10, "x2": 30, "y2": 20}}}
IMAGE_TYPE = pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))


def refocus_records(**changes) -> list[dict]:
    records = [
        {"metadata": json.dumps(TABLE_METADATA), "figure_id": "t1", "figure_path": "t1.png",
         "query": "What were the sales in 2019?", "answer": "12|||Oslo",
         "images": [{"bytes": png_bytes("red"), "path": None}]},
        {"metadata": json.dumps({"type": "v_bar", "x_values_bbox": {"Jan": [0, 0, 30, 20]}, "y_values_bbox": {}}),
         "figure_id": "c1", "figure_path": "c1.png", "query": "What is the value of Jan?", "answer": "3",
         "images": []},
    ]
    records[1] |= changes
    return records


def write_parquet(path: Path, records: list[dict], drop: str | None = None) -> Path:
    schema = pa.schema([("metadata", pa.string()), ("figure_id", pa.string()), ("figure_path", pa.string()),
                        ("query", pa.string()), ("answer", pa.string()), ("images", IMAGE_TYPE)])
    table = pa.Table.from_pylist(records, schema=schema)
    pq.write_table(table.drop_columns([drop]) if drop else table, path)
    return path


def test_parquet_loads_prompts_answers_boxes_and_images(tmp_path):
    Image.new("RGB", (30, 20), "blue").save(tmp_path / "c1.png")  # the second row has no image bytes
    dataset = load_refocus_parquet(write_parquet(tmp_path / "table_test.parquet", refocus_records()))
    table, chart = dataset[0], dataset[1]
    assert table["prompt"] == [{"role": "user", "content": (
        'What were the sales in 2019?\nBoxes in pixels: columns_bbox for the columns ["Year", "Sales"]; '
        'rows_bbox for the rows (by their first cell) ["Year", "2019"].')}]
    assert table["question"] == "What were the sales in 2019?"
    assert table["answer"] == "12 || Oslo"  # a list, every item required
    assert json.loads(table["metadata"]) == TABLE_METADATA and table["figure_id"] == "t1"
    assert table["images"][0].getpixel((0, 0)) == (255, 0, 0)
    assert chart["images"][0].getpixel((0, 0)) == (0, 0, 255)  # read from figure_path
    assert chart["prompt"][0]["content"].endswith('x_values_bbox for the x values ["Jan"].')


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metadata": "{not json"}, "row 2: field 'metadata': not valid JSON"),
        ({"metadata": "[1, 2]"}, "row 2: field 'metadata': must be a JSON object, got list"),
        ({"metadata": json.dumps({"type": "v_bar"})}, "row 2: field 'metadata': has no boxes"),
        ({"metadata": json.dumps({"x_values_bbox": {"Jan": [0, 0, 30]}})},
         "row 2: field 'metadata': x_values_bbox['Jan'] must be"),
        ({"metadata": json.dumps({"rows_bbox": [[0, 0, 1, 1]]})}, "rows_bbox must map each label to its box"),
        ({"query": " "}, "row 2: field 'query': must be a non-empty string"),
        ({"answer": "|||"}, "row 2: field 'answer': holds no answer"),
        ({"images": [{"bytes": b"not an image", "path": None}]},
         "row 2: field 'images': image (embedded) cannot be decoded (UnidentifiedImageError"),
        ({"images": [{"bytes": png_bytes("red")[:60], "path": None}]},
         "row 2: field 'images': image (embedded) cannot be decoded"),  # a truncated image: its header reads
        ({"images": [], "figure_path": "missing.png"}, "row 2: field 'figure_path': image missing.png is not in"),
        ({"images": [], "figure_path": None}, "row 2: field 'images' is empty, and so is 'figure_path'"),
    ],
)
def test_parquet_errors_name_file_row_and_field(tmp_path, changes, message):
    path = write_parquet(tmp_path / "bad.parquet", refocus_records(**changes))
    with pytest.raises(DatasetFormatError) as error:
        load_refocus_parquet(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_parquet_missing_columns_are_named(tmp_path):
    path = write_parquet(tmp_path / "no_query.parquet", refocus_records(), drop="query")
    with pytest.raises(DatasetFormatError, match=r"missing column\(s\) \['query'\]"):
        load_refocus_parquet(path)


def test_parquet_bad_rows_can_be_skipped(tmp_path, caplog):
    path = write_parquet(tmp_path / "bad.parquet", refocus_records(images=[{"bytes": b"GIF89a", "path": None}]))
    with caplog.at_level("WARNING"):
        dataset = load_refocus_parquet(path, skip_bad_rows=True)
    assert dataset["figure_id"] == ["t1"]
    assert f"skipped 1 of 2 rows in {path} as bad" in caplog.text
    assert f"{path}, row 2: field 'images': image (embedded) cannot be decoded" in caplog.text
