"""The MAT loaders on files with the release's schema (tests/fixtures/mat), and their errors."""

import json
import shutil
from pathlib import Path

import pytest

from agentic_vlm.data import DatasetFormatError
from agentic_vlm.data.mat import load_mat_coding, load_mat_search, load_mat_training
from agentic_vlm.eval import load_benchmark

FIXTURES = Path(__file__).parent / "fixtures" / "mat"
RED, BLUE = (200, 0, 0), (0, 0, 200)  # processed and original images of the fixtures


def test_mat_coding_rows_keep_answers_types_and_splits_and_show_the_degraded_image():
    dataset = load_mat_coding(FIXTURES / "MAT-Coding.json")
    assert len(dataset) == 4
    assert dataset["id"] == ["12", "63", "71", "119"]
    assert dataset[0]["prompt"] == [{"role": "user", "content": "What is the serving size of the beverage?"}]
    assert dataset["answer"][2] == ["00134721", "134721"]
    assert dataset["type"] == [["rotation180"], ["none"], ["rotation90", "dark"], ["crop"]]
    assert dataset["split"] == ["simple", "simple", "hard", "hard"]
    colours = [row["images"][0].getpixel((0, 0)) for row in dataset]
    # The model restores the processed image; a crop question names a box of the original, as MAT evaluates it.
    assert colours == [RED, RED, RED, BLUE]
    assert dataset[3]["ori_image_path"].endswith("MAT-Coding-image/crop_8_ori.png")


def test_mat_search_rows_with_one_or_several_answers():
    dataset = load_mat_search(FIXTURES / "MAT-Search.json")
    assert dataset["id"] == ["0", "1", "2"]
    assert dataset["answer"] == [["Play well."], ["United States"], ["London", "City of London"]]
    assert dataset[1]["images"][0].size == (8, 8)
    assert "image_path" not in dataset.column_names and "question" not in dataset.column_names


def test_mat_coding_training_steps_are_grouped_into_one_start_point_per_trajectory():
    dataset = load_mat_training(FIXTURES / "rft_agent_code_sample.json")
    rows = {row["id"]: row for row in dataset}
    assert set(rows) == {"overexposure_60", "none_7"}
    speed = rows["overexposure_60"]
    assert speed["prompt"] == [{"role": "user", "content": "What is the speed limit?"}]
    assert speed["answer"] == "81"
    assert speed["type"] == ["overexposure"]
    assert speed["images"][0].getpixel((0, 0)) == RED  # the trajectory starts from the degraded image
    assert rows["none_7"]["answer"] == "Mary Shelley" and rows["none_7"]["type"] == ["none"]


def test_mat_search_training_file_in_json_lines():
    dataset = load_mat_training(FIXTURES / "rft_agent_search_sample.jsonl")
    assert dataset["id"] == ["wheel", "coin"]
    assert dataset["answer"] == ["River Thames", "none in particular"]
    assert dataset[0]["prompt"][0]["content"] == "Beside which river does the wheel in the image stand?"
    assert "type" not in dataset.column_names


def test_image_root_overrides_the_default_folders(tmp_path):
    shutil.copy(FIXTURES / "MAT-Search.json", tmp_path / "renamed.json")
    with pytest.raises(DatasetFormatError, match=r"renamed.json, row 1: field 'image_path': image search_0.png"):
        load_mat_search(tmp_path / "renamed.json")
    assert len(load_mat_search(tmp_path / "renamed.json", image_root=FIXTURES / "MAT-Search-image")) == 3


def _broken_copy(tmp_path, name, edit):
    """A copy of a fixture, next to the fixture's images, with ``edit`` applied to its records."""
    source = FIXTURES / name
    records = json.loads(source.read_text())
    edit(records)
    path = tmp_path / name
    path.write_text(json.dumps(records))
    shutil.copytree(FIXTURES / f"{source.stem}-image", tmp_path / f"{source.stem}-image")
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda rows: rows[1].pop("answers"), "row 2: field 'answers' must be a string or a non-empty list"),
        (lambda rows: rows[2].update(answers=[]), "row 3: field 'answers' must be a string or a non-empty list"),
        (lambda rows: rows[0].update(type="rotation180"), "row 1: field 'type' must be a non-empty list"),
        (lambda rows: rows[3].update(split=None), "row 4: field 'split' must be a non-empty string"),
        (lambda rows: rows[1].update(processed_image_path="gone.png"),
         "row 2: field 'processed_image_path': image gone.png is not in"),
        (lambda rows: rows.append("not an object"), "row 5: expected a JSON object"),
        (lambda rows: rows[0].update(id=None), "row 1: field 'id' must be a string or an integer"),
    ],
)
def test_mat_coding_errors_name_file_row_and_field(tmp_path, edit, message):
    path = _broken_copy(tmp_path, "MAT-Coding.json", edit)
    with pytest.raises(DatasetFormatError) as error:
        load_mat_coding(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_mat_coding_images_are_decoded_where_they_are_read_and_bad_records_can_be_skipped(tmp_path, caplog):
    path = _broken_copy(tmp_path, "MAT-Coding.json", lambda records: records[2].update(ori_image_path="empty.png"))
    (tmp_path / "MAT-Coding-image" / "empty.png").write_bytes(b"")
    with pytest.raises(DatasetFormatError, match=r"MAT-Coding.json, row 3: field 'ori_image_path': image "
                                                 r".*empty.png cannot be decoded"):
        load_mat_coding(path)
    records = json.loads(path.read_text())
    records[1]["type"] = "rotation180"
    path.write_text(json.dumps(records))
    with caplog.at_level("WARNING"):
        dataset = load_mat_coding(path, skip_bad_rows=True)
    assert dataset["id"] == [str(records[0]["id"]), str(records[3]["id"])]
    assert f"skipped 2 of 4 rows in {path} as bad" in caplog.text
    assert "row 2: field 'type' must be a non-empty list" in caplog.text and "row 3: field 'ori_image_path'" in caplog.text


def test_training_steps_that_are_malformed_are_skipped_with_their_trajectory(tmp_path, caplog):
    steps = json.loads((FIXTURES / "rft_agent_code_sample.json").read_text())
    steps[4]["solution"] = None  # none_7's answer step: its trajectory is left incomplete
    path = tmp_path / "rft_agent_code_sample.json"
    path.write_text(json.dumps(steps))
    shutil.copytree(FIXTURES / "rft_agent_code_sample_images", tmp_path / "rft_agent_code_sample_images")
    with pytest.raises(DatasetFormatError, match=r"row 5: field 'solution' must be a non-empty string"):
        load_mat_training(path)
    with caplog.at_level("WARNING"):
        dataset = load_mat_training(path, skip_bad_rows=True)
    assert dataset["id"] == ["overexposure_60"]
    # Steps (the file's records) and trajectories (the dataset's rows) are counted apart.
    assert f"skipped 1 of 5 steps in {path} as bad" in caplog.text
    assert f"skipped 1 of 2 trajectories in {path} as bad" in caplog.text
    assert "row 5: field 'solution' must be a non-empty string" in caplog.text
    assert "row 2: field 'solution': the steps of image 'none_7' need exactly one <answer> step" in caplog.text


def test_training_trajectory_without_an_answer_step_is_reported(tmp_path):
    steps = json.loads((FIXTURES / "rft_agent_code_sample.json").read_text())
    path = tmp_path / "rft_agent_code_sample.json"
    path.write_text(json.dumps([step for step in steps if step["image_path"] != "none_7_ori.png"]))
    shutil.copytree(FIXTURES / "rft_agent_code_sample_images", tmp_path / "rft_agent_code_sample_images")
    with pytest.raises(DatasetFormatError, match=r"row 2: field 'solution': the steps of image 'none_7' need exactly "
                                                 r"one <answer> step, found 0"):
        load_mat_training(path)


def test_malformed_json_is_reported_with_its_position(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"id": 1, "question": "q"},\n {"id": 2,, }]')
    with pytest.raises(DatasetFormatError, match=r"broken.json: not valid JSON \(.*line 2\)"):
        load_mat_search(path)


@pytest.mark.parametrize(
    ("name", "format", "metrics", "group_by", "tools"),
    [
        ("MAT-Coding.json", "mat-coding", ("exact_match", "f1_set"), ("split", "type"), ("code",)),
        ("MAT-Search.json", "mat-search", ("exact_match", "f1_set"), ("split",), ("search",)),
        ("rft_agent_code_sample.json", "mat-training", ("exact_match", "f1_set"), ("type",), ()),
    ],
)
def test_benchmark_format_is_recognised_from_the_fields(name, format, metrics, group_by, tools):
    benchmark = load_benchmark(str(FIXTURES / name))
    assert (benchmark.format, benchmark.metrics, benchmark.group_by, benchmark.tools) == (
        format, metrics, group_by, tools)
    assert len(benchmark.dataset) > 0
