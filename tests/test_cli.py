"""The command line end to end, in a real subprocess, as a user runs it."""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from agentic_vlm.recipe import find_checkpoint, key_table

ROOT = Path(__file__).parents[1]


def agentic_vlm(*args, cwd=ROOT, timeout=300):
    result = subprocess.run([sys.executable, "-m", "agentic_vlm.cli", *args], cwd=cwd, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"agentic-vlm {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_quickstart_recipe_trains_writes_checkpoint_metrics_and_trajectories_and_resumes(tiny_model_dir, tmp_path):
    output = tmp_path / "run"
    common = ["--model_name_or_path", tiny_model_dir, "--output_dir", str(output), "--save_steps", "2",
              "--warmstart_steps", "2", "--per_device_train_batch_size", "8", "--log_trajectories_steps", "1",
              "--num_trajectories_to_log", "3", "--beta", "0.04", "--logging_steps", "1"]
    # From another folder: the recipe's data path is relative to the recipe.
    first = agentic_vlm("train", str(ROOT / "recipes" / "quickstart.yaml"), *common, "--max_steps", "2", cwd=tmp_path)
    assert (output / "checkpoint-2" / "model.safetensors").is_file()
    assert (output / "model.safetensors").is_file() and (output / "processor_config.json").is_file()
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["max_steps"] == 2  # the command line overrides the recipe's max_steps
    logged = [entry for entry in state["log_history"] if "reward" in entry]
    assert len(logged) >= 1
    # The KL term's reference is the warm-started model, as the policy is at the first step (TRL builds it from the
    # model's path, the weights before the warm start: 0.027 here).
    assert logged[0]["kl"] < 1e-6
    assert {"rewards/accuracy/mean", "rewards/format/mean", "rollout/turns", "tools/calls_per_trajectory"} <= set(
        logged[0])
    [log] = output.glob("trajectories-*.jsonl")
    assert f"trajectories of this run: {log}" in first.stdout  # said at the start
    assert "warm start" in first.stderr
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 6  # 3 trajectories at each of the two steps
    assert {"question", "answer", "prediction", "correct", "input_images", "rewards", "turns", "stop_reason"} <= set(
        lines[0])
    assert set(lines[0]["rewards"]) == {"accuracy", "format"}
    assert all((output / image).is_file() for line in lines for image in line["input_images"])

    import time

    time.sleep(1)  # the next run's log has another name (one per second)
    resumed = agentic_vlm("train", "recipes/quickstart.yaml", *common, "--max_steps", "3",
                          "--resume_from_checkpoint", "true")
    assert f"resuming from {output / 'checkpoint-2'} (the warm start is not run again)" in resumed.stdout
    assert "warm start" not in resumed.stderr
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    # The resumed run goes on from the checkpoint's weights (it went on from the base model's: transformers loaded
    # the checkpoint under other key names), one step of lr 1e-4 away, and from the saved warm-started reference.
    checkpoint, final = (load_file(folder / "model.safetensors") for folder in (output / "checkpoint-2", output))
    assert max((final[key] - checkpoint[key]).abs().max().item() for key in checkpoint) < 1e-3
    assert [entry["kl"] for entry in state["log_history"] if entry.get("step") == 3 and "kl" in entry][0] < 1e-3
    logs = sorted(output.glob("trajectories-*.jsonl"))
    assert len(logs) == 2 and logs[0] == log and len(log.read_text().splitlines()) == 6  # the first run's is untouched


def test_make_tiny_model_and_make_data(tmp_path):
    agentic_vlm("make-tiny-model", str(tmp_path / "model"))
    assert (tmp_path / "model" / "config.json").is_file()
    agentic_vlm("make-data", "zoom", str(tmp_path / "zoom"), "--train", "3", "--test", "2", "--seed", "0")
    shipped = (ROOT / "data" / "zoom" / "test.jsonl").read_text().splitlines()
    # Deterministic by seed: the generator reproduces the shipped data's first rows.
    generated = (tmp_path / "zoom" / "train.jsonl").read_text().splitlines()
    assert json.loads(generated[0]) == json.loads((ROOT / "data" / "zoom" / "train.jsonl").read_text().splitlines()[0])
    assert len(shipped) == 64
    no_variant = run_cli("make-data", "zoom", str(tmp_path / "zoom-tiny"), "--variant", "tiny")
    assert no_variant.returncode == 1 and "make-data zoom has no 'tiny' variant" in no_variant.stderr
    assert not (tmp_path / "zoom-tiny").exists()


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "agentic_vlm.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_help_lists_every_train_key_ours_first_and_imports_nothing_heavy():
    code = ("import sys; from agentic_vlm.cli import main; main(['train', '--help']); "
            "heavy = sorted(m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules); "
            "print('HEAVY', heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    listed = re.findall(r"^  (\w+)  \((?:required|default .*)\)$", result.stdout, flags=re.MULTILINE)
    table = key_table()
    assert listed == list(table) and len(listed) > 200
    assert listed.index("train_file") == 0 and listed.index("max_turns") < listed.index("learning_rate")
    assert "  tool_kwargs  (default {})" not in result.stdout  # shown as its real default, null
    for command in (["--help"], ["eval", "--help"], ["make-tiny-model", "--help"], ["train", "--help"]):
        assert run_cli(*command).returncode == 0


def test_every_eval_flag_has_help_and_a_default():
    from agentic_vlm.cli import build_parser

    parser = build_parser()
    [commands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    for action in commands.choices["eval"]._actions:
        assert action.help and action.help != argparse.SUPPRESS, action.dest
        assert action.required or action.default is not None or "default" in action.help, action.dest


def test_key_table_matches_the_real_configuration():
    from agentic_vlm.recipe import build_key_table

    assert build_key_table() == list(key_table().values()), "regenerate it: python -m agentic_vlm.recipe"


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fails the test if a command gets as far as loading a model: the errors below must come before."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the error was found")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", refuse)


def train_error(capsys, recipe: Path, *overrides: str) -> str:
    from agentic_vlm.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(recipe), *overrides])
    assert exit_info.value.code in (1, 2)
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("agentic-vlm: error: ") and "Traceback" not in "\n".join(error)
    return error[-1]


RECIPE = """model_name_or_path: {model}
train_file: {data}/train.jsonl
use_cpu: true
max_steps: 1
output_dir: out
"""


@pytest.mark.parametrize(("extra", "overrides", "expected"), [
    ("max_turnz: 3\n", [], "recipe.yaml: unknown key max_turnz; did you mean max_turns?"),
    ("", ["--learning_rat", "1"], "command line: unknown key --learning_rat; did you mean --learning_rate?"),
    ("reward_funcs: [acuracy, format]\n", [], "unknown reward function 'acuracy'; did you mean 'accuracy'?"),
    ("learning_rate: -1.0e-4\n", [], "learning_rate must be positive, got -0.0001"),
    ("warmstart_lr_scheduler_type: cosine_with_warmup\n", [],
     "warmstart_lr_scheduler_type must be one of constant, linear, cosine, got 'cosine_with_warmup'"),
    ("", ["--num_generations", "1"], "at least 2 generations per prompt"),
    ("tool_kwargs: {search: {max_results: 3}}\n", [], "tool_kwargs has options for ['search'], which are not among "
                                                       "the tools ['zoom']"),
    ("tool_kwargs: {zoom: {max_sid: 3}}\n", [], "tool_kwargs['zoom']: ['max_sid'] are not options of ZoomTool"),
    ("tools: [code]\ntool_kwargs: {code: {timeout: 10}}\n", [], "tool_kwargs['code']: "),
    ("tools: [no_such_pkg.tools:Calc]\n", [], "cannot import Calc from no_such_pkg.tools"),
    ("", ["--model_name_or_path", "./no/such/model"], "model ./no/such/model does not exist"),
    ("", ["--resume_from_checkpoint", "latest"], "has no checkpoint-N folder"),
])
def test_recipe_errors_are_one_line_before_any_model_loads(extra, overrides, expected, tiny_model_dir,
                                                           zoom_data_dir, tmp_path, capsys, no_model_loading):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir, data=zoom_data_dir) + extra)
    assert expected in train_error(capsys, recipe, *overrides)


def test_bad_images_are_found_before_training_and_can_be_skipped(tiny_model_dir, zoom_data_dir, tmp_path, capsys,
                                                                 no_model_loading):
    from PIL import Image

    from agentic_vlm.data import load_jsonl_dataset

    rows = [json.loads(line) for line in (Path(zoom_data_dir) / "train.jsonl").read_text().splitlines()]
    source = Path(zoom_data_dir) / rows[0]["images"][0]
    (tmp_path / "corrupt.png").write_bytes(source.read_bytes()[:200])  # a truncated download
    (tmp_path / "empty.png").write_bytes(b"")
    Image.new("1", (20000, 20000)).save(tmp_path / "huge.png")  # 400 M pixels in a few kilobytes
    for row, bad in zip(rows[1:4], ("corrupt.png", "empty.png", "huge.png"), strict=True):
        row["images"] = [str(tmp_path / bad)]
    for row in rows:
        row["images"] = [str(Path(zoom_data_dir) / image) for image in row["images"]]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir, data=tmp_path))
    error = train_error(capsys, recipe)
    assert f"{data}, line 2: field 'images': image {tmp_path / 'corrupt.png'} cannot be decoded" in error

    (tmp_path / "two.jsonl").write_text("\n".join(json.dumps(row) for row in (rows[0], rows[3])) + "\n")
    with pytest.raises(ValueError, match=r"two.jsonl, line 2: field 'images': .*huge.png is larger than max_image_pix"):
        load_jsonl_dataset(tmp_path / "two.jsonl")
    with pytest.raises(ValueError, match=r"line 1: field 'images': image .* is 224x224, more than max_image_pixels \(9"):
        load_jsonl_dataset(tmp_path / "two.jsonl", max_image_pixels=9)
    kept = load_jsonl_dataset(data, skip_bad_rows=True)
    assert kept["id"] == [rows[0]["id"], *(row["id"] for row in rows[4:])]
    assert [image.size for image in kept[0]["images"]] == [Image.open(source).size]


def test_tracebacks_only_with_debug(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train_file: data/zoom/train.jsonl\nuse_cpu: true\nmax_turnz: 3\n")
    quiet = run_cli("train", str(recipe))
    assert quiet.returncode == 2
    assert quiet.stderr.strip() == f"agentic-vlm: error: {recipe}: unknown key max_turnz; did you mean max_turns?"
    loud = run_cli("train", str(recipe), "--debug")
    assert loud.returncode == 2 and "Traceback" in loud.stderr and "max_turnz" in loud.stderr


def test_find_checkpoint_takes_true_latest_or_a_folder(tmp_path):
    for step in (5, 40, 100):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-old").mkdir()
    assert find_checkpoint("true", str(tmp_path)) == str(tmp_path / "checkpoint-100")
    assert find_checkpoint("latest", str(tmp_path)) == str(tmp_path / "checkpoint-100")
    assert find_checkpoint(str(tmp_path / "checkpoint-5"), str(tmp_path)) == str(tmp_path / "checkpoint-5")
    assert find_checkpoint(None, str(tmp_path)) is None
    with pytest.raises(ValueError, match="is not a folder"):
        find_checkpoint(str(tmp_path / "checkpoint-7"), str(tmp_path))


def test_a_hub_model_that_cannot_be_fetched_fails_at_once(monkeypatch):
    from huggingface_hub import constants

    from agentic_vlm.recipe import RecipeError, check_model_exists

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(RecipeError, match=r"model someone/no-such-model is not a local folder and not in the hub "
                                          r"cache, and the hub \(http://127.0.0.1:9\) cannot be reached"):
        check_model_exists("someone/no-such-model")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RecipeError, match="HF_HUB_OFFLINE is set"):
        check_model_exists("someone/no-such-model")
