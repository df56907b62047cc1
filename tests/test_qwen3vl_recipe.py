"""The tiny Qwen3-VL recipe with the hermes protocol trains on a CPU, as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_qwen3vl_zoom_cpu_recipe_trains_two_steps(tiny_model_dirs, tmp_path):
    output = tmp_path / "run"
    command = [sys.executable, "-m", "agentic_vlm.cli", "train", str(ROOT / "recipes" / "qwen3vl_zoom_cpu.yaml"),
               "--model_name_or_path", tiny_model_dirs["qwen3-vl"], "--output_dir", str(output), "--max_steps", "2",
               "--save_steps", "2", "--per_device_train_batch_size", "4", "--num_generations", "2",
               "--log_trajectories_steps", "1", "--num_trajectories_to_log", "2"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (output / "checkpoint-2" / "model.safetensors").is_file()
    state = json.loads((output / "trainer_state.json").read_text())
    logged = [entry for entry in state["log_history"] if "reward" in entry]
    assert logged and {"rewards/accuracy/mean", "rewards/format/mean", "rollout/turns"} <= set(logged[0])
    [log] = output.glob("trajectories-*.jsonl")
    first = json.loads(log.read_text().splitlines()[0])
    assert first["turns"] and first["stop_reason"] in {"answer", "length", "max_turns"}
