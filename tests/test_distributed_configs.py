"""The shipped DeepSpeed and accelerate configurations and launch scripts, checked without launching anything."""

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from agentic_vlm.config import AgenticGRPOConfig

LOCAL_SCRIPTS = Path(__file__).resolve().parents[1] / "local_scripts"
# name: (ZeRO stage, optimizer states and parameters offloaded to the CPU)
DEEPSPEED_CONFIGS = {"zero2": (2, False), "zero3": (3, False), "zero3_offload": (3, True)}


def autos(node, path=""):
    """The keys of a DeepSpeed config whose value is still "auto"."""
    if isinstance(node, dict):
        return [key for name, value in node.items() for key in autos(value, f"{path}.{name}".lstrip("."))]
    return [path] if node == "auto" else []


@pytest.mark.parametrize("name", DEEPSPEED_CONFIGS)
def test_deepspeed_config_leaves_auto_only_what_the_trainer_fills(name, tmp_path):
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, unset_hf_deepspeed_config

    stage, offload = DEEPSPEED_CONFIGS[name]
    # use_cpu: only so that bf16 may be asked for on a machine without a GPU
    args = AgenticGRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=2,
                             num_generations=8, max_grad_norm=1.0, learning_rate=1e-6, bf16=True, use_cpu=True,
                             report_to="none")
    qwen25_vl_7b = SimpleNamespace(config=SimpleNamespace(hidden_size=3584))
    config = HfTrainerDeepSpeedConfig(str(LOCAL_SCRIPTS / f"{name}.json"))
    try:  # what the trainer does with them, before DeepSpeed reads the config
        config.trainer_config_process(args)
        config.trainer_config_finalize(args, qwen25_vl_7b, num_training_steps=100)
    finally:
        unset_hf_deepspeed_config()  # the config registers itself globally: ZeRO-3 would change how models load
    assert autos(config.config) == []
    assert config.config["train_micro_batch_size_per_gpu"] == 4
    assert config.config["gradient_accumulation_steps"] == 2
    assert config.config["bf16"]["enabled"] is True
    zero = config.config["zero_optimization"]
    assert zero["stage"] == stage
    assert ("offload_optimizer" in zero and "offload_param" in zero) == offload
    if stage == 3:  # checkpoints then hold a whole model that from_pretrained loads, not only shards
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    if offload:  # ZeRO-Offload refuses a torch optimizer; this one becomes DeepSpeed's CPU Adam
        assert config.config["optimizer"]["type"] == "AdamW"


@pytest.mark.parametrize("name", DEEPSPEED_CONFIGS)
def test_accelerate_config_uses_the_deepspeed_config_of_its_name(name):
    config = yaml.safe_load((LOCAL_SCRIPTS / "accelerate" / f"{name}.yaml").read_text())
    assert config["distributed_type"] == "DEEPSPEED"
    deepspeed = config["deepspeed_config"]
    assert deepspeed["deepspeed_config_file"] == f"local_scripts/{name}.json"
    stage = json.loads((LOCAL_SCRIPTS / f"{name}.json").read_text())["zero_optimization"]["stage"]
    # ZeRO-3 shards the model as it loads, so that no process ever holds all of a 32B model
    assert deepspeed["zero3_init_flag"] == (stage == 3)


@pytest.fixture
def fake_launchers(tmp_path):
    """``torchrun``, ``accelerate`` and ``nvidia-smi`` stand-ins on the PATH: the launchers print their arguments,
    nvidia-smi lists eight GPUs."""
    for launcher in ("torchrun", "accelerate"):
        (tmp_path / launcher).write_text('#!/bin/sh\necho "$@"\n')
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\nfor i in 0 1 2 3 4 5 6 7; do echo GPU $i; done\n")
    for path in tmp_path.iterdir():
        path.chmod(0o755)
    return f"{tmp_path}{os.pathsep}{os.environ['PATH']}"


def run_script(name, path, *args, **env):
    result = subprocess.run(
        ["bash", str(LOCAL_SCRIPTS / name), *args], capture_output=True, text=True, timeout=30,
        env={"PATH": path, **env},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_torchrun_script_single_and_multi_node(fake_launchers):
    single = run_script("train_torchrun.sh", fake_launchers, "recipe.yaml", "--max_steps", "5")
    assert single == ["--nnodes", "1", "--node_rank", "0", "--nproc_per_node", "8", "--master_addr", "127.0.0.1",
                      "--master_port", "29500", "-m", "agentic_vlm.cli", "train", "recipe.yaml",
                      "--deepspeed", "local_scripts/zero3.json", "--max_steps", "5"]
    second_node = run_script("train_torchrun.sh", fake_launchers, "recipe.yaml", NNODES="2", NODE_RANK="1",
                             MASTER_ADDR="10.0.0.1", DEEPSPEED="local_scripts/zero3_offload.json")
    assert second_node[:10] == ["--nnodes", "2", "--node_rank", "1", "--nproc_per_node", "8",
                                "--master_addr", "10.0.0.1", "--master_port", "29500"]
    assert second_node[-2:] == ["--deepspeed", "local_scripts/zero3_offload.json"]
    plain_ddp = run_script("train_torchrun.sh", fake_launchers, "recipe.yaml", DEEPSPEED="")
    assert "--deepspeed" not in plain_ddp


def test_accelerate_script_single_and_multi_node(fake_launchers):
    single = run_script("train_accelerate.sh", fake_launchers, "recipe.yaml", "--max_steps", "5")
    assert single == ["launch", "--config_file", "local_scripts/accelerate/zero3.yaml", "--num_processes", "8",
                      "--num_machines", "1", "--machine_rank", "0", "--main_process_ip", "127.0.0.1",
                      "--main_process_port", "29500", "-m", "agentic_vlm.cli", "train", "recipe.yaml",
                      "--max_steps", "5"]
    second_node = run_script("train_accelerate.sh", fake_launchers, "recipe.yaml", ZERO="zero3_offload",
                             NUM_MACHINES="2", MACHINE_RANK="1", MAIN_PROCESS_IP="10.0.0.1")
    assert second_node[:11] == ["launch", "--config_file", "local_scripts/accelerate/zero3_offload.yaml",
                                "--num_processes", "16", "--num_machines", "2", "--machine_rank", "1",
                                "--main_process_ip", "10.0.0.1"]


@pytest.mark.parametrize("name", ["train_torchrun.sh", "train_accelerate.sh"])
def test_launch_script_without_a_recipe_prints_its_usage(name):
    result = subprocess.run(["bash", str(LOCAL_SCRIPTS / name)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "usage:" in result.stderr
