"""The synthetic coding task: deterministic, shipped in sync, and every reference solution really restores its image;
its tiny variant: the reference code, run in the sandbox, shows the answer, which the prompt does not give."""

import asyncio
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agentic_vlm.data import load_jsonl_dataset
from agentic_vlm.data.coding_task import (
    CROP_ZOOM,
    make_coding_example,
    make_tiny_coding_example,
    write_coding_dataset,
)
from agentic_vlm.data.synthetic import COLORS, box_text, cell_boxes
from agentic_vlm.protocols import ArftProtocol
from agentic_vlm.tools import Tool, build_tools
from agentic_vlm.tools.base import ToolContext
from agentic_vlm.tools.code import SandboxUnavailableError
from agentic_vlm.tools.code.tool import extract_code

SHIPPED = Path(__file__).parents[1] / "data" / "coding"
# Mean absolute difference to the clean image, out of 255, after the JPEG the code saves: rotations, stretches and the
# median filter undo their degradation up to rounding; sharpening undoes a blur only in part; a crop is enlarged and
# shrunk back here.
ERROR_LIMITS = {"blur": 5.0, "crop": 8.0}
ALL_TYPES = {"rotation90", "rotation180", "dark", "overexposure", "blur", "noise", "crop"}


def examples_covering_every_degradation(count=60, seed=3):
    rng = random.Random(seed)
    examples = [make_coding_example(rng) for _ in range(count)]
    assert {name for example in examples for name in example.type} == ALL_TYPES
    assert {example.split for example in examples} == {"simple", "hard"}
    return examples


class CodeActionOnly(Tool):
    """The code tool's action name, for parsing; the code runs in-process below, not in the sandbox."""

    name = "code"
    description = "python"

    async def __call__(self, argument, context):
        raise AssertionError("not called")


def run_reference_code(example, workdir: Path) -> Image.Image:
    """Run the solution's code in-process, as the code tool runs it: the input image is the file
    path_to_input_image.jpg (written losslessly, whatever its name says) and the output is read back."""
    action = ArftProtocol().parse_action(example.solution[0], [CodeActionOnly()])
    assert action.kind == "tool" and action.name == "code"
    workdir.mkdir()
    example.image.save(workdir / "path_to_input_image.jpg", format="PNG")
    previous = os.getcwd()
    os.chdir(workdir)
    try:
        exec(compile(extract_code(action.argument), "<solution>", "exec"), {})
    finally:
        os.chdir(previous)
    return Image.open(workdir / "path_to_output_image.jpg").convert("RGB")


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


def test_reference_solutions_restore_the_clean_image(tmp_path):
    for number, example in enumerate(examples_covering_every_degradation()):
        restored = run_reference_code(example, tmp_path / str(number))
        if "crop" in example.type:  # the box, enlarged: shrunk back, it is the box of the canvas
            assert restored.size == (example.clean.width * 3, example.clean.height * 3)
            restored = restored.resize(example.clean.size, Image.Resampling.BOX)
        assert restored.size == example.clean.size, example.type
        error = mean_difference(restored, example.clean)
        assert error < max(ERROR_LIMITS.get(name, 2.5) for name in example.type), (example.type, error)
        if example.type == ["blur"]:
            assert error < 0.75 * mean_difference(example.image, example.clean)
        assert example.solution[1].endswith(f"<answer>{example.answer}</answer>")


def test_rows_are_deterministic_by_seed(tmp_path):
    first = write_coding_dataset(tmp_path / "a", num_train=6, num_test=4, seed=5)
    second = write_coding_dataset(tmp_path / "b", num_train=6, num_test=4, seed=5)
    for split in ("train", "test"):
        assert (first / f"{split}.jsonl").read_text() == (second / f"{split}.jsonl").read_text()
    for name in os.listdir(first / "images"):
        assert (first / "images" / name).read_bytes() == (second / "images" / name).read_bytes()
    other = write_coding_dataset(tmp_path / "c", num_train=6, num_test=4, seed=6)
    assert (other / "train.jsonl").read_text() != (first / "train.jsonl").read_text()


def test_shipped_data_is_the_generator_output_and_small(tmp_path):
    regenerated = write_coding_dataset(tmp_path / "coding")  # the defaults and seed 0, as shipped
    for split in ("train", "test"):
        assert (regenerated / f"{split}.jsonl").read_text() == (SHIPPED / f"{split}.jsonl").read_text()
    size = sum(path.stat().st_size for path in SHIPPED.rglob("*") if path.is_file())
    assert size < 1.5e6


def test_shipped_test_split_loads_with_types_splits_and_solutions():
    dataset = load_jsonl_dataset(SHIPPED / "test.jsonl")
    assert len(dataset) == 48
    assert {name for types in dataset["type"] for name in types} == ALL_TYPES
    crop = next(row for row in dataset if row["type"] == ["crop"])
    assert crop["box"] is not None and str(crop["box"])[1:-1] in crop["prompt"][0]["content"]
    lines = [json.loads(line) for line in (SHIPPED / "test.jsonl").read_text().splitlines()]
    assert all(len(line["solution"]) == 2 and "path_to_output_image.jpg" in line["solution"][0] for line in lines)


@pytest.mark.parametrize("seed", [0, 1])
def test_answers_are_the_rendered_text(seed):
    example = make_coding_example(random.Random(seed))
    assert example.answer in example.solution[1]
    assert example.answer.lower() == example.answer  # words and numbers: exact match needs no case folding


def test_make_data_coding_command_writes_the_task(tmp_path):
    from agentic_vlm.cli import main

    main(["make-data", "coding", str(tmp_path / "cli"), "--train", "3", "--test", "2", "--seed", "0"])
    shipped_first_row = (SHIPPED / "train.jsonl").read_text().splitlines()[0]
    assert (tmp_path / "cli" / "train.jsonl").read_text().splitlines()[0] == shipped_first_row
    assert len((tmp_path / "cli" / "test.jsonl").read_text().splitlines()) == 2
    assert len(os.listdir(tmp_path / "cli" / "images")) == 5


# The tiny variant, which the CPU recipe trains on: a colour cell to crop, an answer the crop shows.
SHIPPED_TINY = Path(__file__).parents[1] / "data" / "coding-tiny"


def test_tiny_rows_are_well_formed_and_deterministic_by_seed(tmp_path):
    first = write_coding_dataset(tmp_path / "a", num_train=6, num_test=4, seed=5, variant="tiny")
    second = write_coding_dataset(tmp_path / "b", num_train=6, num_test=4, seed=5, variant="tiny")
    for split in ("train", "test"):
        assert (first / f"{split}.jsonl").read_text() == (second / f"{split}.jsonl").read_text()
    assert sorted(os.listdir(first / "images")) == sorted(os.listdir(second / "images"))
    for name in os.listdir(first / "images"):
        assert (first / "images" / name).read_bytes() == (second / "images" / name).read_bytes()
    other = write_coding_dataset(tmp_path / "c", num_train=6, num_test=4, seed=6, variant="tiny")
    assert (other / "train.jsonl").read_text() != (first / "train.jsonl").read_text()
    for line in (first / "train.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row["id"].startswith("coding-tiny-train-") and row["type"] == ["crop"] and row["answer"] in COLORS
        assert tuple(row["box"]) in cell_boxes() and box_text(row["box"]) in row["question"]
        code_turn, answer_turn = row["solution"]
        assert f"x1, y1, x2, y2 = {box_text(row['box'])}" in code_turn and "path_to_output_image.jpg" in code_turn
        assert answer_turn.endswith(f"<answer>{row['answer']}</answer>")
    with pytest.raises(ValueError, match="unknown coding variant 'small'"):
        write_coding_dataset(tmp_path / "d", variant="small")


def test_shipped_tiny_data_is_the_make_data_output_and_small(tmp_path):
    from agentic_vlm.cli import main

    main(["make-data", "coding", str(tmp_path / "tiny"), "--variant", "tiny"])  # the defaults and seed 0, as shipped
    for split, count in (("train", 256), ("test", 64)):
        text = (tmp_path / "tiny" / f"{split}.jsonl").read_text()
        assert text == (SHIPPED_TINY / f"{split}.jsonl").read_text() and len(text.splitlines()) == count
    size = sum(path.stat().st_size for path in SHIPPED_TINY.rglob("*") if path.is_file())
    assert size < 1.5e6


def test_tiny_answers_are_not_in_the_prompt():
    """Without the tool the answer is a guess: the question names only the box, whose colour varies from image to
    image, and the whole image holds several colours."""
    rows = [json.loads(line) for line in (SHIPPED_TINY / "train.jsonl").read_text().splitlines()]
    answers_by_question = {}
    for row in rows:
        answers_by_question.setdefault(row["question"], []).append(row["answer"])
        assert not any(color in row["question"] for color in COLORS)
    best_guesses = sum(max(answers.count(color) for color in COLORS) for answers in answers_by_question.values())
    assert best_guesses / len(rows) < 0.35  # the best answer per question text (chance is 1/6)
    for row in rows[:16]:
        image = Image.open(SHIPPED_TINY / row["images"][0]).convert("RGB")
        assert len({nearest_color(image.crop(box)) for box in cell_boxes()}) >= 2


def nearest_color(image: Image.Image) -> str:
    """The colour of COLORS nearest to the image's median pixel (the median ignores the grey border and noise)."""
    median = np.median(np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3), axis=0)
    return min(COLORS, key=lambda name: float(np.abs(median - np.array(COLORS[name])).sum()))


def test_tiny_reference_code_run_in_the_sandbox_shows_the_answer():
    """The reference code, run live by the code tool, returns one image: the cell, enlarged, filled by the answered
    colour."""
    rng = random.Random(0)
    examples = [make_tiny_coding_example(rng) for _ in range(12)]
    assert len({example.answer for example in examples}) >= 4 and len({str(example.box) for example in examples}) >= 4
    try:
        (tool,) = build_tools(["code"], {"code": {"workers": 2, "timeout_s": 10}})
    except SandboxUnavailableError as error:
        pytest.skip(f"this host cannot isolate code: {error}")

    async def run_all():
        actions = [ArftProtocol().parse_action(example.solution[0], [tool]) for example in examples]
        assert all(action.kind == "tool" and action.name == "code" for action in actions)
        try:
            return await asyncio.gather(*(
                tool(action.argument, ToolContext(trajectory_id=str(index), images=[example.image]))
                for index, (action, example) in enumerate(zip(actions, examples, strict=True))))
        finally:
            await tool.aclose()

    for example, observation in zip(examples, asyncio.run(run_all()), strict=True):
        assert observation.error is None and len(observation.images) == 1, observation.text
        (crop,) = observation.images
        assert crop.size == (example.clean.width * CROP_ZOOM, example.clean.height * CROP_ZOOM)
        pixels = np.asarray(crop.convert("RGB"), dtype=np.float32).reshape(-1, 3)
        filled = np.abs(pixels - np.array(COLORS[example.answer])).max(axis=1) < 40  # JPEG-saved, noise-speckled
        assert nearest_color(crop) == example.answer and filled.mean() > 0.75, (example.answer, filled.mean())
