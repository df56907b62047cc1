"""The trajectory viewer: a self-contained page of a scripted run (tests/scripted_eval.py), checked as HTML and in a
real headless browser, whose filters come from the URL fragment."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scripted_eval import ScriptedEvaluation, write_task_file

from agentic_vlm.cli import main

CHROMIUM = "/usr/bin/chromium"
# Expected visible items per filter: a and b are right; c is wrong, d never answers, e's zoom failed and it is wrong.
VISIBLE = {"correct": "ab", "wrong": "cde", "tool-errors": "e"}


@pytest.fixture(scope="module")
def page(tiny_model_dir, zoom_data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("viewer")
    task_file = write_task_file(folder / "tasks.jsonl", Path(zoom_data_dir) / "images" / "zoom-test-00000.png")
    ScriptedEvaluation(tiny_model_dir, task_file).run(folder / "run.jsonl")
    main(["view", str(folder / "run.jsonl"), "-o", str(folder / "page.html")])
    # Moved away from the run's images: the page must not need them.
    moved = tmp_path_factory.mktemp("elsewhere") / "page.html"
    shutil.move(folder / "page.html", moved)
    shutil.rmtree(folder / "run-images")
    return moved


def test_page_is_self_contained_with_every_turn_and_image(page):
    html = page.read_text()
    assert len(re.findall(r'<article class="trajectory"', html)) == 5
    # 5 question images, and the zooms that worked: a and c once, d twice (its third turn ran out of turns).
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', html)) == 5 + 4
    assert not re.search(r'(src|href)="(?!data:|#)', html) and "<link" not in html  # nothing loaded from elsewhere
    assert "&lt;zoom&gt;[0, 0, 74, 74]&lt;/zoom&gt;" in html  # the model's text, escaped
    assert "has no area inside the" in html  # e's tool error
    for label, count in (("Correct", 2), ("Wrong", 3), ("Tool errors", 1)):
        assert f">{label} ({count})</a>" in html
    assert "<th>exact_match</th>" in html and "split = hard" in html  # the summary beside the run


def view(*args):
    result = subprocess.run([sys.executable, "-m", "agentic_vlm.cli", "view", *args], capture_output=True, text=True,
                            timeout=120)
    return result.returncode, result.stderr


def test_view_of_wrong_inputs_is_one_clear_error(zoom_data_dir, tmp_path):
    png = Path(zoom_data_dir) / "images" / "zoom-test-00000.png"
    missing = tmp_path / "missing.jsonl"
    for path, message in ((png, "is not a text file of JSON lines"), (missing, "does not exist"),
                          (Path(zoom_data_dir) / "test.jsonl", "line 1: not a trajectory (no 'turns')")):
        code, stderr = view(str(path))
        assert code == 1 and message in stderr and str(path) in stderr, stderr
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1


def test_view_reads_a_last_line_without_newline(tmp_path):
    record = {"id": "only", "question": "q?", "answer": "a", "prediction": "a", "correct": True,
              "turns": [{"text": "<answer>a</answer>", "action": "answer", "tool": None, "argument": "a"}]}
    run = tmp_path / "run.jsonl"
    run.write_text(json.dumps({**record, "id": "first"}) + "\n" + json.dumps(record))  # no final newline
    code, stderr = view(str(run))
    assert code == 0, stderr
    html = run.with_suffix(".html").read_text()
    assert 'id="item-first"' in html and 'id="item-only"' in html


def browser(page: Path, *args: str, tmp_path: Path) -> str:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path}",
               *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
@pytest.mark.parametrize("filter", ["correct", "wrong", "tool-errors"])
def test_filters_hide_trajectories_in_a_real_browser(page, filter, tmp_path):
    dom = browser(page, "--dump-dom", f"{page.as_uri()}#filter={filter}", tmp_path=tmp_path)
    articles = re.findall(r'<article class="trajectory" id="item-(\w)"[^>]*?( hidden="")?>', dom)
    assert [item for item, hidden in articles if not hidden] == list(VISIBLE[filter])
    assert re.search(rf'<a href="#filter={filter}" data-filter="{filter}" class="active">', dom)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_page_renders_to_a_screenshot(page, tmp_path):
    screenshot = tmp_path / "page.png"
    browser(page, "--hide-scrollbars", f"--screenshot={screenshot}", "--window-size=1200,2000", page.as_uri(),
            tmp_path=tmp_path)
    assert screenshot.stat().st_size > 20_000  # text, tables and images, not a blank page


def test_large_images_are_embedded_as_smaller_jpegs(tmp_path):
    import base64
    import io

    import numpy as np
    from PIL import Image

    from agentic_vlm.eval.viewer import LARGE_IMAGE_SIDE, render_page

    noise = np.random.default_rng(0).integers(0, 256, (1600, 1200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "photo.png")  # several megabytes
    record = {"id": "x", "input_images": ["photo.png"], "turns": []}
    html = render_page([record], tmp_path, "big")
    [encoded] = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', html)
    embedded = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert max(embedded.size) == LARGE_IMAGE_SIDE and embedded.size[0] < embedded.size[1]
