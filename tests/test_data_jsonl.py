import json
from pathlib import Path

import pytest
from PIL import Image

from agentic_vlm.data import DatasetFormatError, load_jsonl_dataset
from agentic_vlm.eval import load_benchmark


def write(path, rows):
    path.write_text("\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n")
    return path


def test_loads_prompts_images_and_extra_columns(tmp_path):
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "a.png")
    path = write(tmp_path / "t.jsonl", [
        {"question": "What?", "answer": "x", "images": ["a.png"], "box": [1, 2, 3, 4]},
        {"question": "Which?", "answer": ["y", "z"]},
    ])
    dataset = load_jsonl_dataset(path)
    assert dataset[0]["prompt"] == [{"role": "user", "content": "What?"}]
    assert dataset[0]["images"][0].getpixel((0, 0)) == (1, 2, 3)
    assert dataset[0]["box"] == [1, 2, 3, 4]
    assert dataset[1]["images"] == []
    assert dataset[0]["answer"] == ["x"] and dataset[1]["answer"] == ["y", "z"]  # one type: lists


def test_squad_dict_answer_loads_as_its_texts(tmp_path):
    path = write(tmp_path / "squad.jsonl", [{"question": "Where?", "answer": {"text": ["Paris", "paris"],
                                                                              "answer_start": [3, 9]}}])
    assert load_jsonl_dataset(path)[0]["answer"] == ["Paris", "paris"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ({"answer": "x"}, "line 2: field 'question' must be a non-empty string"),
        ({"question": "q", "answer": {"a": 1}}, "line 2: field 'answer': an answer given as a dict needs SQuAD's"),
        ({"question": "q", "answer": [["a"]]}, "line 2: field 'answer' must be a string or a non-empty list"),
        ({"question": "q", "answer": "a", "images": "a.png"}, "line 2: field 'images' must be a list of paths"),
        ({"question": "q", "answer": "a", "images": ["missing.png"]}, "line 2: field 'images': image missing.png is not in"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path, row, message):
    path = write(tmp_path / "bad.jsonl", [{"question": "fine", "answer": "a"}, row])
    with pytest.raises(DatasetFormatError) as error:
        load_jsonl_dataset(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_shipped_zoom_task_loads():
    dataset = load_jsonl_dataset(Path(__file__).parents[1] / "data" / "zoom" / "test.jsonl")
    assert len(dataset) == 64
    row = dataset[0]
    assert row["images"][0].size == (224, 224)
    assert row["answer"] in row["solution"][-1]


def test_inconsistent_field_types_are_named(tmp_path):
    path = write(tmp_path / "mixed.jsonl", [{"question": "a", "answer": "x", "box": [1, 2]},
                                            {"question": "b", "answer": "y", "box": "left"}])
    with pytest.raises(DatasetFormatError, match="different types in different rows"):
        load_jsonl_dataset(path)


def test_bad_lines_can_be_skipped_with_a_count_and_the_first_reasons(tmp_path, caplog):
    good = [{"id": "a", "question": "q", "answer": "x"}, {"id": "b", "question": "r", "answer": "y"}]
    path = tmp_path / "some-bad.jsonl"
    path.write_text("\n".join([json.dumps(good[0]), "{not json", json.dumps({"answer": "x"}), "[1]",
                               json.dumps(good[1])]) + "\n")
    with pytest.raises(DatasetFormatError, match=r"line 2: not valid JSON"):
        load_jsonl_dataset(path)
    with caplog.at_level("WARNING"):
        dataset = load_jsonl_dataset(path, skip_bad_rows=True)
    assert dataset["id"] == ["a", "b"]
    assert "skipped 3 of 5 rows" in caplog.text
    for reason in ("line 2: not valid JSON", "line 3: field 'question' must be a non-empty string",
                   "line 4: expected a JSON object"):
        assert f"{path}, {reason}" in caplog.text
    # The same through load_benchmark (what train and eval call): the format is told from the first good record.
    assert load_benchmark(str(path), skip_bad_rows=True).dataset["id"] == ["a", "b"]
    path.write_text(json.dumps({"answer": "x"}) + "\n")
    with pytest.raises(DatasetFormatError, match=r"no good rows; the first bad one: .*line 1: field 'question'"):
        load_jsonl_dataset(path, skip_bad_rows=True)
