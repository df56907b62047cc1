"""DeepSpeed ZeRO-3 on two CPU processes (gloo): turns in lockstep, checkpoints, resume.

Rank 0's trajectories call the zoom tool three times before they answer, rank 1's answer at once
(``tests/train_worker.py``). Generation takes the trainer's real path, so every generation call gathers ZeRO-3's
sharded parameters, an all-gather that every rank must join, and ``generate`` (with ``synced_gpus``) keeps the ranks
stepping together within the call. What ``synced_gpus`` cannot do is make a rank that has finished its rollouts
join another call: that is the rollout engine's lockstep.
"""

import json
import math

import pytest
import torch
from launcher import accelerate_launch, check_finished, every_rank_done, launch, torchrun, worker_args

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

ONE_ROLLOUT = [2, 2, 2, 2]  # four generation calls of two rows: rank 0's three tool calls and its answer


def read_summary(output_dir):
    return json.loads((output_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def zero3_run(tiny_model_dir, zoom_data_dir, tmp_path_factory):
    """Two steps under ``accelerate launch`` with the shipped ZeRO-3 configuration, a checkpoint after each."""
    output_dir = tmp_path_factory.mktemp("zero3")
    args = worker_args(tiny_model_dir, f"{zoom_data_dir}/train.jsonl", output_dir, "--max-steps", "2",
                       "--save-steps", "1")
    run = launch(accelerate_launch("local_scripts/accelerate/zero3.yaml", 2, args), output_dir / "launch.log")
    check_finished(run, every_rank_done(run, 2))
    return output_dir


def test_lockstep_every_rank_makes_every_generation_call_and_trains(zero3_run):
    summary = read_summary(zero3_run)
    assert summary["zero_stage"] == 3
    assert summary["turns"] == {"1": 2.5, "2": 2.5}  # four turns on rank 0, one on rank 1
    # Rank 1's trajectories were done after one turn, yet it joined all of rank 0's calls, with as many rows.
    assert summary["generation_calls"] == [ONE_ROLLOUT * 2, ONE_ROLLOUT * 2]
    assert summary["global_step"] == 2
    assert len(summary["losses"]) == 2 and all(math.isfinite(loss) for loss in summary["losses"].values())
    initial = torch.load(zero3_run / "initial_params.pt")
    final = torch.load(zero3_run / "final_params.pt")
    unchanged = [name for name in initial if torch.equal(initial[name], final[name])]
    assert unchanged == []


def test_without_lockstep_rank_0_waits_in_a_parameter_gather_rank_1_never_joins(
    tiny_model_dir, zoom_data_dir, tmp_path
):
    """The same run with each rank generating for its own trajectories only. Rank 0 starts its second generation
    call with ZeRO-3's all-gather of the weights; rank 1, whose trajectories are done, has left the rollout for the
    next collective of the step. TORCH_DISTRIBUTED_DEBUG=DETAIL makes torch compare the ranks' collectives before
    running them, and name both. (Without it, gloo aborts on the size mismatch; NCCL checks nothing and hangs until
    the process group's timeout.)"""
    args = worker_args(tiny_model_dir, f"{zoom_data_dir}/train.jsonl", tmp_path, "--max-steps", "1",
                       "--deepspeed", "local_scripts/zero3.json", "--no-lockstep")
    run = launch(torchrun(2, args), tmp_path / "launch.log", env={"TORCH_DISTRIBUTED_DEBUG": "DETAIL"})
    assert run.returncode is not None and run.returncode != 0, run.report()
    assert "[rank 0] generation call 2:" in run.output, run.report()
    assert "[rank 1] generation call 2:" not in run.output, run.report()
    assert "Detected mismatch between collectives" in run.output, run.report()
    rank_0_trace = [line for line in run.output.splitlines() if line.startswith("[rank0]:")]
    assert any("_unwrap_model_for_generation" in line for line in rank_0_trace), run.report()  # the weights' gather


def test_checkpoint_holds_the_trained_weights_for_from_pretrained(zero3_run):
    from transformers import AutoModelForImageTextToText

    # stage3_gather_16bit_weights_on_model_save: the shards are gathered into a whole model at each save
    model = AutoModelForImageTextToText.from_pretrained(zero3_run / "checkpoint-2", dtype="auto")
    final = torch.load(zero3_run / "final_params.pt")
    loaded = dict(model.named_parameters())
    assert loaded.keys() == final.keys()
    for name, parameter in loaded.items():
        assert parameter.dtype == torch.bfloat16 and torch.equal(parameter, final[name]), name


def test_resume_continues_with_the_same_optimizer_state_and_step(zero3_run, tiny_model_dir, zoom_data_dir, tmp_path):
    """From the first step's checkpoint, one more step must land on the uninterrupted run's weights, bit for bit.
    Adam's second update depends on the first step's moments and on the step count (bias correction): a resume that
    lost the optimizer state or the step would not reproduce them."""
    args = worker_args(tiny_model_dir, f"{zoom_data_dir}/train.jsonl", tmp_path, "--max-steps", "2",
                       "--deepspeed", "local_scripts/zero3.json",
                       "--resume-from-checkpoint", str(zero3_run / "checkpoint-1"))
    run = launch(torchrun(2, args), tmp_path / "launch.log")
    check_finished(run, every_rank_done(run, 2))
    summary = read_summary(tmp_path)
    assert summary["global_step"] == 2
    assert summary["generation_calls"] == [ONE_ROLLOUT, ONE_ROLLOUT]  # only the second step ran
    assert summary["losses"]["2"] == read_summary(zero3_run)["losses"]["2"]
    resumed = torch.load(tmp_path / "final_params.pt")
    uninterrupted = torch.load(zero3_run / "final_params.pt")
    mismatched = [name for name in uninterrupted if not torch.equal(resumed[name], uninterrupted[name])]
    assert mismatched == []


def test_the_train_command_runs_under_torchrun_with_zero3_on_cpu_ranks(tiny_model_dir, zoom_data_dir, tmp_path):
    """``agentic-vlm train`` as a user launches it. ZeRO-3 shards the model as it loads, which starts DeepSpeed's
    process group; on CPU ranks it must be gloo, set up before the load (DeepSpeed would pick NCCL)."""
    output_dir = tmp_path / "run"
    args = ["-m", "agentic_vlm.cli", "train", "recipes/quickstart.yaml", "--model_name_or_path", tiny_model_dir,
            "--train_file", f"{zoom_data_dir}/train.jsonl", "--deepspeed", "local_scripts/zero3.json",
            "--warmstart_steps", "0", "--max_steps", "1", "--per_device_train_batch_size", "4",
            "--num_generations", "4", "--output_dir", str(output_dir), "--save_steps", "1"]
    run = launch(torchrun(2, args), tmp_path / "launch.log")
    state = output_dir / "trainer_state.json"
    check_finished(run, state.exists() and (output_dir / "model.safetensors").exists())  # written last
    assert json.loads(state.read_text())["global_step"] == 1
    assert (output_dir / "checkpoint-1" / "model.safetensors").exists()
