"""V* Bench and HR-Bench: loaders for their published layouts (fixtures of the same schema, images generated here),
the multiple-choice metric, tool-use figures, and `agentic-vlm eval --dataset vstar|hrbench4k` with tools and without.
"""

import base64
import csv
import io
import json
import string

import pytest
from PIL import Image

from agentic_vlm.cli import main
from agentic_vlm.data import DatasetFormatError
from agentic_vlm.data.highres import INSTRUCTION, load_hrbench, load_vstar
from agentic_vlm.eval import load_benchmark, read_run
from agentic_vlm.eval.metrics import choice_score, chosen_letter, tool_use

VSTAR_ITEMS = {
    "direct_attributes": [("sa_101", "What is the color of the umbrella?", ["red", "blue", "green", "white"]),
                          ("sa_102", "What is the material of the glove?", ["leather", "rubber", "cotton", "wool"]),
                          ("sa_103", "What is the color of the cup?", ["black", "yellow", "pink", "grey"])],
    "relative_position": [("sa_201", "Is the dog on the left or right side of the cat?", ["left", "right"]),
                          ("sa_202", "Is the bike on the left or right side of the car?", ["right", "left"])],
}


def write_vstar(folder):
    for category, items in VSTAR_ITEMS.items():
        (folder / category).mkdir(parents=True)
        for stem, question, options in items:
            Image.new("RGB", (96, 64), "red").save(folder / category / f"{stem}.jpg")
            (folder / category / f"{stem}.json").write_text(json.dumps(
                {"target_object": ["umbrella"], "bbox": [[10, 10, 5, 5]], "question": question, "options": options}))
    return folder


def png_base64(color: str, size=(80, 60)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def hrbench_rows() -> list[dict]:
    """Two questions, each in two rotations of its options (HR-Bench's cycles), one per category."""
    questions = [("FSP", "What is written on the sign?", ["STOP", "GO", "WAIT", "EXIT"], "blue"),
                 ("FCP", "How many boats are left of the pier?", ["1", "2", "3", "4"], "green")]
    rows = []
    for cycle in range(2):
        for number, (category, question, options, color) in enumerate(questions):
            shown = options[cycle:] + options[:cycle]  # the right one is options[0]
            rows.append({"index": cycle * 10 + number, "question": question, **dict(zip("ABCD", shown, strict=True)),
                         "answer": "ABCD"[shown.index(options[0])], "category": category,
                         "cycle_category": f"cycle{cycle}", "image": png_base64(color)})
    return rows


def write_tsv(path, rows):
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_vstar_loader_rotates_the_options_and_keeps_the_right_one(tmp_path):
    dataset = load_vstar(write_vstar(tmp_path / "vstar_bench"))
    assert len(dataset) == 5
    row = dataset[0]
    assert (row["id"], row["category"]) == ("direct_attributes/sa_101", "direct_attributes")
    letter, text = row["answer"]
    assert text == "red" and row["options"][string.ascii_uppercase.index(letter)] == "red"
    assert row["prompt"][0]["content"] == "\n".join(["What is the color of the umbrella?", *(
        f"{letter}. {option}" for letter, option in zip("ABCD", row["options"], strict=True)), INSTRUCTION])
    assert row["images"][0].size == (96, 64)
    for row, (category, stem, options) in zip(dataset, [(category, stem, options) for category, items in
                                                         VSTAR_ITEMS.items() for stem, _, options in items],
                                               strict=True):
        assert row["id"] == f"{category}/{stem}"
        assert sorted(row["options"]) == sorted(options) and row["answer"][1] == options[0]
    # not always the first letter (V* lists the right option first), and the same on every load
    assert len({row["answer"][0] for row in dataset}) > 1
    assert load_vstar(tmp_path / "vstar_bench")["answer"] == dataset["answer"]


def test_vstar_errors_name_the_file(tmp_path):
    folder = write_vstar(tmp_path / "vstar_bench")
    (folder / "relative_position" / "sa_201.json").write_text(json.dumps({"question": "Where?", "options": ["x"]}))
    with pytest.raises(DatasetFormatError, match="sa_201.json.*'options' must be a list of 2 to 26"):
        load_vstar(folder)
    (folder / "relative_position" / "sa_201.json").write_text(json.dumps({"question": "Where?", "options": ["a", "b"]}))
    (folder / "relative_position" / "sa_201.jpg").unlink()
    with pytest.raises(DatasetFormatError, match="sa_201.json.*no image beside it"):
        load_vstar(folder)
    (folder / "relative_position" / "sa_201.jpg").write_bytes(b"")  # an empty download
    with pytest.raises(DatasetFormatError, match=r"sa_201.json, the file: image .*sa_201.jpg cannot be decoded"):
        load_vstar(folder)


def test_vstar_and_hrbench_bad_items_can_be_skipped(tmp_path, caplog):
    folder = write_vstar(tmp_path / "vstar_bench")
    (folder / "relative_position" / "sa_201.json").write_text("{")
    rows = hrbench_rows()
    rows[2]["image"] = base64.b64encode(b"not a png").decode()
    tsv = write_tsv(tmp_path / "hr.tsv", rows)
    with pytest.raises(DatasetFormatError, match=r"hr.tsv, line 4: field 'image': image \(embedded\) cannot be "
                                                 r"decoded .*\(skip_bad_rows leaves such rows out\)"):
        load_hrbench(tsv)
    with caplog.at_level("WARNING"):
        vstar = load_vstar(folder, skip_bad_rows=True)
        hrbench = load_hrbench(tsv, skip_bad_rows=True)
    assert len(vstar) == 4 and "relative_position/sa_201" not in vstar["id"]
    assert hrbench["id"] == ["0", "1", "11"]
    assert f"skipped 1 of 5 rows in {folder} as bad" in caplog.text and "sa_201.json: not valid JSON" in caplog.text
    assert f"skipped 1 of 4 rows in {tsv} as bad" in caplog.text


def test_hrbench_loader_reads_the_tsv_and_its_base64_images(tmp_path):
    dataset = load_hrbench(write_tsv(tmp_path / "hr_bench_4k.tsv", hrbench_rows()))
    assert dataset["id"] == ["0", "1", "10", "11"]
    assert dataset["answer"] == [["A", "STOP"], ["A", "1"], ["D", "STOP"], ["D", "1"]]
    assert dataset["category"] == ["FSP", "FCP", "FSP", "FCP"]
    assert dataset["cycle_category"] == ["cycle0", "cycle0", "cycle1", "cycle1"]
    assert dataset[2]["options"] == ["GO", "WAIT", "EXIT", "STOP"]
    assert dataset[0]["images"][0].getpixel((0, 0)) == (0, 0, 255)
    assert dataset[0]["prompt"][0]["content"].startswith("What is written on the sign?\nA. STOP\nB. GO\n")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"answer": "E"}, "line 3: field 'answer' must be the letter of an option"),
        ({"image": "not base64!"}, "line 3: field 'image' is not base64"),
        ({"question": " "}, "line 3: field 'question' must be a non-empty string"),
    ],
)
def test_hrbench_errors_name_file_row_and_field(tmp_path, change, message):
    rows = hrbench_rows()
    rows[1] |= change
    path = write_tsv(tmp_path / "hr.tsv", rows)
    with pytest.raises(DatasetFormatError, match=message):
        load_hrbench(path)
    rows = [{key: value for key, value in row.items() if key != "cycle_category"} for row in hrbench_rows()]
    with pytest.raises(DatasetFormatError, match=r"missing column\(s\) \['cycle_category'\]"):
        load_hrbench(write_tsv(tmp_path / "no_cycle.tsv", rows))


def test_formats_are_recognised_and_named_benchmarks_are_found(tmp_path):
    write_vstar(tmp_path / "vstar_bench")
    write_tsv(tmp_path / "hr_bench_8k.tsv", hrbench_rows())
    vstar = load_benchmark("vstar", data_dir=tmp_path)
    assert (vstar.format, vstar.metrics, vstar.group_by, vstar.tools) == ("vstar", ("choice",), ("category",),
                                                                          ("zoom", "code"))
    hrbench = load_benchmark(str(tmp_path / "hr_bench_8k.tsv"))
    assert (hrbench.format, hrbench.group_by) == ("hrbench", ("category", "cycle_category"))
    with pytest.raises(FileNotFoundError, match="hrbench4k is read from .*hr_bench_4k.tsv: download its release"):
        load_benchmark("hrbench4k", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("prediction", "score"),
    [("B", 1.0), ("(B)", 1.0), ("B. blue", 1.0), ("b", 0.0), ("The answer is B.", 1.0), ("Answer: (B)", 1.0),
     ("blue", 1.0), ("The blue.", 1.0), ("The blue one", 0.0), ("A", 0.0), ("A. red", 0.0), ("Blue is my guess", 0.0), ("", 0.0),
     ("A blue", 1.0)],  # the right option's text with an article, not the letter A
)
def test_choice_score(prediction, score):
    assert choice_score(prediction, ["B", "blue"]) == score


def test_chosen_letter():
    assert chosen_letter("  (C) because it is round") == "C"
    assert chosen_letter("I pick option D") == "D"
    assert chosen_letter("Because of the light") is None
    assert chosen_letter("A red car") is None and chosen_letter("B ") == "B"


def record(item_id, score, tool_calls):
    turns = [{"action": "tool", "observation": "...", "error": None}] * tool_calls + [{"action": "answer"}]
    return {"id": item_id, "scores": {"choice": score}, "turns": turns}


def test_tool_use_counts_gain_harm_and_call_rate_item_by_item():
    with_tools = [record("a", 1.0, 1), record("b", 1.0, 0), record("c", 0.0, 2), record("d", 0.0, 0),
                  record("e", 1.0, 1)]
    without = [record("a", 0.0, 0), record("b", 1.0, 0), record("c", 1.0, 0), record("d", 0.0, 0),
               record("x", 1.0, 0)]  # e has no counterpart, x none with tools: both left out
    figures = tool_use(with_tools, without, "choice")
    assert figures == {"metric": "choice", "items": 4, "accuracy_with_tools": 0.5, "accuracy_without_tools": 0.5,
                       "tool_gain": 0.25, "tool_harm": 0.25, "tool_call_rate": 0.5}
    with pytest.raises(ValueError, match="none of this run's items"):
        tool_use(with_tools, [record("z", 1.0, 0)], "choice")


@pytest.mark.parametrize(("benchmark", "baseline"), [("vstar", "pass"), ("hrbench4k", "run")])
def test_cli_eval_with_tools_and_without(benchmark, baseline, tiny_model_dir, tmp_path, capsys):
    """One command runs the items with tools, then without (``baseline="pass"``, the default); or the run without tools
    is made first with --no-tools and given with --without-tools (``"run"``)."""
    write_vstar(tmp_path / "vstar_bench")
    write_tsv(tmp_path / "hr_bench_4k.tsv", hrbench_rows())
    common = ["eval", "--model", tiny_model_dir, "--dataset", benchmark, "--data-dir", str(tmp_path), "--limit", "4",
              "--batch-size", "4", "--max-turns", "2", "--max-completion-length", "24"]
    with_tools = tmp_path / "with.jsonl"
    if baseline == "pass":
        without = tmp_path / "with.no-tools.jsonl"
        main([*common, "--output", str(with_tools)])
    else:
        without = tmp_path / "without.jsonl"
        main([*common, "--no-tools", "--output", str(without)])
        main([*common, "--output", str(with_tools), "--without-tools", str(without)])
    summary = json.loads(with_tools.with_suffix(".summary.json").read_text())
    assert summary["tools"] == ["zoom", "code"] and summary["metrics"] == ["choice"]
    assert summary["pass"] == "with tools"
    baseline_summary = json.loads(without.with_suffix(".summary.json").read_text())
    assert baseline_summary["tools"] == [] and baseline_summary["pass"] == "without tools"
    assert baseline_summary["overall"]["tool_call_rate"] == 0.0
    records, baseline = read_run(with_tools), {r["id"]: r for r in read_run(without)}
    assert set(baseline) == {r["id"] for r in records}
    right = [(r["scores"]["choice"] == 1.0, baseline[r["id"]]["scores"]["choice"] == 1.0) for r in records]
    assert summary["tool_use"] == pytest.approx({
        "run_without_tools": str(without), "metric": "choice", "items": 4,
        "accuracy_with_tools": sum(w for w, _ in right) / 4, "accuracy_without_tools": sum(o for _, o in right) / 4,
        "tool_gain": sum(w and not o for w, o in right) / 4, "tool_harm": sum(o and not w for w, o in right) / 4,
        "tool_call_rate": sum(any(t["action"] == "tool" for t in r["turns"]) for r in records) / 4})
    assert set(summary["by_category"]) == {r["category"] for r in records}
    if benchmark == "hrbench4k":
        assert set(summary["by_cycle_category"]) == {"cycle0", "cycle1"}
    assert "tools, on 4 items (choice)" in capsys.readouterr().out
