"""demo/run_demo.py with the tiny model, offline, run as a script (in this process, which has the libraries
imported already): it prints the trajectory and saves it."""

import json
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_demo_prints_the_turns_and_saves_the_trajectory_and_its_page(tiny_model_dir, tmp_path, monkeypatch, capsys):
    image = ROOT / "data" / "zoom" / "images" / "zoom-test-00000.png"
    question = "What color is the cell inside the box [149, 149, 224, 224]?"
    monkeypatch.setattr(sys, "argv", [
        "run_demo.py", "--model", tiny_model_dir, "--image", str(image), "--question", question, "--tools", "zoom",
        "--output", str(tmp_path / "demo"), "--max-turns", "2", "--max-completion-length", "48", "--device", "cpu",
    ])
    runpy.run_path(str(ROOT / "demo" / "run_demo.py"), run_name="__main__")
    [record] = [json.loads(line) for line in (tmp_path / "demo" / "trajectory.jsonl").read_text().splitlines()]
    assert record["question"] == question and record["input_images"] == [str(image)]
    assert 1 <= len(record["turns"]) <= 2 and record["stop_reason"] in ("answer", "length", "max_turns")
    printed = capsys.readouterr().out
    assert f"Question: {question}" in printed and "--- turn 1 (model) ---" in printed
    assert record["turns"][0]["text"] in printed
    assert f"Stopped by: {record['stop_reason']}" in printed
    for turn in record["turns"]:  # whatever the random model did, the images its tools returned were saved
        for saved in turn.get("images", []):
            assert Path(saved).is_file() and f"[image saved: {saved}]" in printed
    page = (tmp_path / "demo" / "trajectory.html").read_text()
    assert 'src="data:image/png;base64,' in page and "Turn 1" in page
