"""vLLM colocated in the trainer (the CPU build of vLLM, fp32): multi-turn trajectories with tool images, sampled by
vLLM, scored by TRL's training forward pass.

One trainer (one vLLM engine: about a minute to start on 2 CPU cores) serves every test of the module. Its model is
the tiny model with the real Qwen2 vocabulary (pad tokens banned from sampling move vLLM's log-probabilities by
about 2 / vocabulary size: 1e-5 here), with sharpened weights; the trainer's copy is changed after vLLM loaded the
checkpoint, so only a working weight sync lets the two agree.
"""

import pytest
import torch
from datasets import Dataset
from vllm_helpers import ZoomEveryTurn, build_sharp_model, requires_vllm

from agentic_vlm.config import AgenticGRPOConfig
from agentic_vlm.rollout import vllm as rollout_vllm
from agentic_vlm.tiny import make_tiny_model
from agentic_vlm.tools import ZoomTool
from agentic_vlm.trainer import AgenticGRPOTrainer

pytestmark = requires_vllm


def no_reward(completions, **kwargs):
    return [0.0] * len(completions)


def colocated_trainer(tmp_path_factory, family: str):
    tiny = make_tiny_model(tmp_path_factory.mktemp(f"tiny-real-{family}"), vocab="real", family=family)
    model_dir = build_sharp_model(str(tiny), tmp_path_factory.mktemp(f"sharp-real-{family}"))
    args = AgenticGRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("out")), per_device_train_batch_size=4, num_generations=2,
        max_completion_length=480, max_turns=3, report_to="none", use_cpu=True, bf16=False,
        log_trajectories_steps=0, use_vllm=True, vllm_mode="colocate", vllm_dtype="float32",
        vllm_max_model_length=1024, vllm_importance_sampling_mode="token_truncate", seed=0,
    )
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": "unused"}], "answer": "red"}] * 4)
    trainer = AgenticGRPOTrainer(model=model_dir, reward_funcs=[no_reward], args=args, train_dataset=dataset,
                                 tools=[ZoomTool(min_side=56, max_side=112)], protocol=ZoomEveryTurn())
    # The trainer's weights move away from the checkpoint vLLM loaded (norms included): only the sync brings them.
    with torch.no_grad():
        for parameter in trainer.model.parameters():
            parameter.mul_(1.1 if parameter.dim() >= 2 else 0.9)
    trainer.model.train()
    return trainer


@pytest.fixture(scope="module")
def trainer(tmp_path_factory, zoom_example_module):
    return colocated_trainer(tmp_path_factory, "qwen2.5-vl")


@pytest.fixture(scope="module")
def zoom_example_module():
    import random

    from agentic_vlm.data.synthetic import make_zoom_example

    return make_zoom_example(random.Random(7))


@pytest.fixture(scope="module")
def rows(zoom_example_module):
    row = {"prompt": [{"role": "user", "content": "What color is the square?"}],
           "images": [zoom_example_module["image"]], "answer": "red"}
    return [dict(row) for _ in range(4)]


def logp_difference(trainer) -> float:
    return trainer._metrics["train"]["sampling/sampling_logp_difference/mean"][-1]


@pytest.mark.parametrize("schedule", ["continuous", "turn-synchronous"])
def test_vllm_log_probs_match_the_training_forward_pass(trainer, rows, schedule, monkeypatch):
    assert trainer.rollout_engine.generate_one is not None  # continuous is the default with vLLM
    if schedule == "turn-synchronous":
        monkeypatch.setattr(trainer.rollout_engine, "generate_one", None)
    check_log_probs_match(trainer, rows)


def test_vllm_log_probs_match_the_training_forward_pass_for_qwen3_vl(tmp_path_factory, rows):
    """The same on a tiny Qwen3-VL (deepstack features, interleaved rotary sections): vLLM's CPU backend serves it in
    fp32. (Qwen3.5 it serves only in bf16: its CPU causal-conv kernel has no fp32, so no 1e-4 comparison there.)"""
    check_log_probs_match(colocated_trainer(tmp_path_factory, "qwen3-vl"), rows)


def check_log_probs_match(trainer, rows):
    syncs = trainer.vllm_generation.weight_syncs
    trainer.state.global_step += 1  # a new step: its weights are pushed once, before the first turn
    batch = trainer._generate_and_score_completions(rows)
    trajectories = trainer._rollout_trajectories
    assert [t.row for t in trajectories] == rows  # in the order of the prompts
    assert trainer.vllm_generation.weight_syncs == syncs + 1  # one push for all the turns of the rollout
    for trajectory in trajectories:
        assert [turn.action.kind for turn in trajectory.turns] == ["tool", "tool", "tool"]
        assert len(trajectory.images) == 3  # the prompt's image and one per zoom that was shown
    model_tokens = (batch["completion_mask"] * batch["tool_mask"]).sum().item()
    assert model_tokens > 40
    image_token_id = trainer.model.config.image_token_id
    assert (batch["completion_ids"] == image_token_id).sum() > 0  # tool images sit in the completions
    difference = logp_difference(trainer)
    assert difference <= 1e-4, difference
    assert trainer._metrics["train"]["sampling/sampling_logp_difference/max"][-1] < 1e-2


def test_placeholders_expanded_twice_are_caught_and_would_corrupt_training(trainer, rows, monkeypatch):
    # Handing vLLM the engine's ids as they are (TRL's own behaviour): vLLM expands each image's placeholder again.
    monkeypatch.setattr(rollout_vllm, "collapse_image_placeholders", lambda ids, tokens: list(ids))
    with pytest.raises(rollout_vllm.PromptMismatchError, match=r"trajectory [0-9a-f]{32}, turn 0: .* image tokens"):
        trainer._generate_and_score_completions(rows)

    # Without the run-time check, training would go on silently on different ids: the log-prob test catches it.
    monkeypatch.setattr(rollout_vllm, "check_expanded_prompt", lambda request, ids, tokens: None)
    trainer._generate_and_score_completions(rows)
    assert logp_difference(trainer) > 1e-2


def test_pad_tokens_are_never_sampled(trainer, rows, monkeypatch):
    """A model that puts nearly all its probability on an image or video pad token, whatever the context."""
    model = trainer.model
    lm_head = model.lm_head.weight
    pads = [model.config.image_token_id, model.config.video_token_id]
    saved = lm_head.detach().clone()
    direction = torch.randn(lm_head.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lm_head.zero_()
        lm_head[pads[0]] = 100 * direction  # one of the two pads dominates, whichever the sign of h . direction
        lm_head[pads[1]] = -100 * direction
    generator = trainer._vllm_turn_generator
    try:
        trainer.vllm_generation.sync_weights()
        prompt = [{"role": "user", "content": [{"type": "image", "image": rows[0]["images"][0]},
                                               {"type": "text", "text": "What color is the square?"}]}]
        request = trainer.rollout_engine._start([prompt], [rows[0]])[0].request(16)
        ids, _ = generator([request] * 4, 16)
        assert sum(len(row) for row in ids) > 16
        assert not any(token in pads for row in ids for token in row)

        monkeypatch.setattr(generator, "banned_tokens", [])  # the check has teeth: without the ban, pads come out
        ids, _ = generator([request] * 4, 16)
        assert sum(token in pads for row in ids for token in row) > 32
    finally:
        with torch.no_grad():
            lm_head.copy_(saved)
        trainer.vllm_generation.sync_weights()


def test_quickstart_trains_with_vllm_colocate(tiny_model_dir, tmp_path):
    """The command a user types, on CPU: the warm start moves the weights away from the checkpoint vLLM loaded, and an
    optimizer step moves them again; the sampling log-probabilities of both steps show that vLLM had them."""
    import json
    import os
    import subprocess
    import sys

    from vllm_helpers import REPO

    output = tmp_path / "run"
    command = [sys.executable, "-m", "agentic_vlm.cli", "train", "recipes/quickstart.yaml", "--use_vllm", "true",
               "--vllm_mode", "colocate", "--model_name_or_path", tiny_model_dir, "--output_dir", str(output),
               "--max_steps", "2", "--warmstart_steps", "2", "--logging_steps", "1", "--save_steps", "10",
               "--per_device_train_batch_size", "8"]
    # A fresh process, as a user starts it: not the rendezvous variables this test process set for its own engine.
    env = {key: value for key, value in os.environ.items()
           if key not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE")}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    state = json.loads((output / "trainer_state.json").read_text())
    logged = [entry for entry in state["log_history"] if "sampling/sampling_logp_difference/mean" in entry]
    assert [entry["step"] for entry in logged] == [1, 2]
    for entry in logged:
        # The pad ban alone moves vLLM's log-probabilities by about 2 / 1046 with this small vocabulary; stale
        # weights (no sync after the warm start or after step 1) by far more.
        assert entry["sampling/sampling_logp_difference/mean"] < 1e-2, entry
        assert entry["tools/calls_per_trajectory"] >= 0.0
