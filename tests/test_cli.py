"""The command line end to end, in a real subprocess, as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def agentic_vlm(*args, cwd=ROOT, timeout=300):
    result = subprocess.run([sys.executable, "-m", "agentic_vlm.cli", *args], cwd=cwd, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"agentic-vlm {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_quickstart_recipe_trains_and_writes_checkpoint_metrics_and_trajectories(tiny_model_dir, tmp_path):
    output = tmp_path / "run"
    agentic_vlm("train", "recipes/quickstart.yaml", "--model_name_or_path", tiny_model_dir,
                "--output_dir", str(output), "--max_steps", "2", "--save_steps", "2", "--warmstart_steps", "2",
                "--per_device_train_batch_size", "8", "--log_trajectories_steps", "1", "--num_trajectories_to_log", "3")
    assert (output / "checkpoint-2" / "model.safetensors").is_file()
    assert (output / "model.safetensors").is_file() and (output / "processor_config.json").is_file()
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["max_steps"] == 2  # the command line overrides the recipe's max_steps
    logged = [entry for entry in state["log_history"] if "reward" in entry]
    assert len(logged) >= 1
    assert {"rewards/accuracy/mean", "rewards/format/mean", "rollout/turns", "tools/calls_per_trajectory"} <= set(
        logged[0])
    lines = [json.loads(line) for line in (output / "trajectories.jsonl").read_text().splitlines()]
    assert len(lines) == 6  # 3 trajectories at each of the two steps
    assert {"question", "answer", "rewards", "turns", "stop_reason"} <= set(lines[0])
    assert set(lines[0]["rewards"]) == {"accuracy", "format"}


def test_make_tiny_model_and_make_data(tmp_path):
    agentic_vlm("make-tiny-model", str(tmp_path / "model"))
    assert (tmp_path / "model" / "config.json").is_file()
    agentic_vlm("make-data", "zoom", str(tmp_path / "zoom"), "--train", "3", "--test", "2", "--seed", "0")
    shipped = (ROOT / "data" / "zoom" / "test.jsonl").read_text().splitlines()
    # Deterministic by seed: the generator reproduces the shipped data's first rows.
    generated = (tmp_path / "zoom" / "train.jsonl").read_text().splitlines()
    assert json.loads(generated[0]) == json.loads((ROOT / "data" / "zoom" / "train.jsonl").read_text().splitlines()[0])
    assert len(shipped) == 64


def test_bad_recipe_key_is_reported(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train_file: data/zoom/train.jsonl\nuse_cpu: true\nbf16: false\nmax_turnz: 3\n")
    result = subprocess.run([sys.executable, "-m", "agentic_vlm.cli", "train", str(recipe)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "max_turnz" in result.stderr
