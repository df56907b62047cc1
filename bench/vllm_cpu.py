"""Quickstart training steps on CPU: vLLM colocate (the CPU build, fp32) against the transformers ``generate`` path.

Runs ``agentic-vlm train recipes/quickstart.yaml`` twice, as a user would, with the same seed, model and data: once
as is, once with ``--use_vllm true --vllm_mode colocate``. Prints, side by side, the process wall time (vLLM's
start-up included), TRL's ``step_time`` per GRPO step (generation, tools, scoring and the optimizer step; the first
step is reported apart: it also pushes the warm-started weights to vLLM), and, for vLLM, TRL's
``sampling/sampling_logp_difference``.

    python bench/vllm_cpu.py [--steps 4] [--warmstart_steps 20] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def train(model_dir: str, output_dir: Path, steps: int, warmstart_steps: int, batch: int, vllm: bool) -> dict:
    command = [sys.executable, "-m", "agentic_vlm.cli", "train", "recipes/quickstart.yaml", "--model_name_or_path",
               model_dir, "--output_dir", str(output_dir), "--max_steps", str(steps), "--warmstart_steps",
               str(warmstart_steps), "--per_device_train_batch_size", str(batch), "--logging_steps", "1",
               "--save_steps", str(steps + 1), "--log_trajectories_steps", "0"]
    if vllm:
        command += ["--use_vllm", "true", "--vllm_mode", "colocate"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    steps_logged = [entry for entry in history if "step_time" in entry]
    return {
        "wall": wall,
        "step_times": [entry["step_time"] for entry in steps_logged],
        "turns": statistics.mean(entry["rollout/turns"] for entry in steps_logged),
        "model_tokens": statistics.mean(entry["completions/mean_length"] for entry in steps_logged),
        "logp_difference": [entry.get("sampling/sampling_logp_difference/mean") for entry in steps_logged],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmstart_steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()

    from agentic_vlm.tiny import make_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(make_tiny_model(Path(tmp) / "model", vocab="small"))
        runs = {name: train(model_dir, Path(tmp) / name, args.steps, args.warmstart_steps, args.batch, vllm)
                for name, vllm in (("transformers", False), ("vllm", True))}

    print(f"quickstart on CPU: {args.steps} GRPO steps of {args.batch} trajectories after {args.warmstart_steps} "
          "warm-start steps")
    print(f"{'':34}{'transformers':>14}{'vLLM colocate':>15}")
    rows = [
        ("process wall time (s)", lambda r: r["wall"]),
        ("first step (s)", lambda r: r["step_times"][0]),
        ("later steps, mean (s)", lambda r: statistics.mean(r["step_times"][1:] or r["step_times"])),
        ("turns per trajectory", lambda r: r["turns"]),
        ("model tokens per trajectory", lambda r: r["model_tokens"]),
    ]
    for label, value in rows:
        print(f"{label:34}{value(runs['transformers']):14.2f}{value(runs['vllm']):15.2f}")
    differences = ", ".join(f"{d:.2e}" for d in runs["vllm"]["logp_difference"])
    print(f"vLLM sampling/sampling_logp_difference/mean per step: {differences}")
    later = statistics.mean(runs["vllm"]["step_times"][1:] or runs["vllm"]["step_times"])
    later_hf = statistics.mean(runs["transformers"]["step_times"][1:] or runs["transformers"]["step_times"])
    print(f"vLLM/transformers time per later step: {later / later_hf:.2f}")


if __name__ == "__main__":
    main()
