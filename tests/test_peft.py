"""LoRA on the language model's linear layers of the tiny Qwen2.5-VL, trained by the agentic trainer with multi-turn
rollouts (three zoom calls, then an answer; see ``tests/train_worker.py``): in one process, and under ZeRO-3 on two.

Only adapter weights may change. At the first step LoRA's B matrices start at zero, so A gets no gradient and only the
B matrices move: every one of them must.
"""

import json
import math

import pytest
import torch
from launcher import check_finished, every_rank_done, launch, torchrun, worker_args
from train_worker import build_trainer, gathered_parameters


def assert_only_lora_b_changed(initial: dict, final: dict) -> None:
    changed = {name for name in initial if not torch.equal(initial[name], final[name])}
    lora_b = {name for name in initial if ".lora_B." in name}
    assert len(lora_b) == 2 * 7  # two decoder layers, seven linear layers each
    assert changed == lora_b


def test_lora_trains_only_the_adapters_in_one_process(tiny_model_dir, zoom_data_dir, tmp_path):
    trainer = build_trainer(tiny_model_dir, f"{zoom_data_dir}/train.jsonl", str(tmp_path), max_steps=1, lora=True)
    trainable = [name for name, parameter in trainer.model.named_parameters() if parameter.requires_grad]
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    assert all(".language_model." in name for name in trainable)  # the vision tower is not adapted

    initial = gathered_parameters(trainer)
    trainer.train()
    assert trainer.rollout_engine.generate.calls == [2, 2, 2, 2]
    for trajectory in trainer._rollout_trajectories:
        assert [turn.action.kind for turn in trajectory.turns] == ["tool", "tool", "tool", "answer"]
        assert len(trajectory.images) == 4  # the prompt's image and one per zoom, all in the forward pass
    assert math.isfinite(trainer.state.log_history[0]["loss"])
    assert_only_lora_b_changed(initial, gathered_parameters(trainer))


@pytest.mark.distributed
@pytest.mark.slow
def test_lora_under_zero3(tiny_model_dir, zoom_data_dir, tmp_path):
    args = worker_args(tiny_model_dir, f"{zoom_data_dir}/train.jsonl", tmp_path, "--max-steps", "1",
                       "--deepspeed", "local_scripts/zero3.json", "--lora")
    run = launch(torchrun(2, args), tmp_path / "launch.log")
    check_finished(run, every_rank_done(run, 2))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["zero_stage"] == 3
    assert summary["generation_calls"] == [[2, 2, 2, 2], [2, 2, 2, 2]]
    assert math.isfinite(summary["losses"]["1"])
    assert_only_lora_b_changed(torch.load(tmp_path / "initial_params.pt"), torch.load(tmp_path / "final_params.pt"))
