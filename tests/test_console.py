"""What a training run shows: one compact line per logging step, tool failures counted over real tool calls only
(not over invalid actions), a model card that names the base model, and a warning at the start when a rollout batch
holds more trajectories than a code tool keeps sessions."""

import asyncio

import pytest

from agentic_vlm.config import AgenticGRPOConfig
from agentic_vlm.console import log_line
from agentic_vlm.data import load_jsonl_dataset
from agentic_vlm.rollout import ScriptedTurnGenerator
from agentic_vlm.trainer import AgenticGRPOTrainer


def test_log_line_is_one_compact_line():
    logs = {"loss": 0.01234, "grad_norm": 0.5, "learning_rate": 1e-4, "reward": 0.4125, "reward_std": 0.21,
            "rewards/accuracy/mean": 0.375, "rewards/accuracy/std": 0.5, "rewards/format/mean": 0.95,
            "rollout/turns": 2.1, "tools/calls_per_trajectory": 1.0, "tools/failure_frequency": 0.0,
            "tools/invalid_action_frequency": 0.05, "completions/mean_length": 52.4, "epoch": 0.1,
            "num_tokens": 12345.0, "kl": 0.0, "entropy": 3.2, "clip_ratio/region_mean": 0.0}
    line = log_line(logs, 5, 40)
    assert line == ("step 5/40  reward 0.412 ± 0.210 (accuracy 0.38, format 0.95)  loss 0.0123  turns 2.10  "
                    "tool calls 1.00  tool failures 0.00  invalid actions 0.05  tokens 52  grad 0.5  lr 0.0001")
    assert log_line({"eval_reward": 0.5, "eval_loss": 0.1}, 10, 40) == "eval step 10/40  reward 0.500  loss 0.1000"


@pytest.fixture(scope="module")
def run_without_tool_calls(tiny_model_dir, zoom_data_dir, tmp_path_factory):
    """One GRPO step whose every turn is an invalid action: no tool ever runs."""
    output_dir = tmp_path_factory.mktemp("console-run")
    args = AgenticGRPOConfig(output_dir=str(output_dir), per_device_train_batch_size=4, num_generations=4,
                             max_steps=1, max_turns=2, max_completion_length=64, logging_steps=1,
                             log_trajectories_steps=0, save_strategy="no", report_to="none", seed=0)
    dataset = load_jsonl_dataset(f"{zoom_data_dir}/train.jsonl").select(range(2))
    trainer = AgenticGRPOTrainer(model=tiny_model_dir, args=args, train_dataset=dataset)
    trainer.rollout_engine.generate = ScriptedTurnGenerator(
        trainer.processing_class, trainer.protocol.stop_strings(trainer.tools),
        script=lambda request: "<think>hm</think><lens>[0, 0, 9, 9]</lens>")
    trainer.train()
    trainer.create_model_card(model_name="console-run")  # as TRL does at each checkpoint
    return trainer


def test_invalid_actions_are_not_counted_as_tool_failures(run_without_tool_calls):
    [logged] = [entry for entry in run_without_tool_calls.state.log_history if "reward" in entry]
    assert logged["tools/invalid_action_frequency"] == 1.0 and logged["tools/calls_per_trajectory"] == 0.0
    assert logged["tools/failure_frequency"] == 0.0


def test_the_model_card_names_the_base_model(run_without_tool_calls, tiny_model_dir):
    card = (run_without_tool_calls.args.output_dir + "/README.md")
    text = open(card).read()
    assert "[None]" not in text and "base_model: None" not in text
    assert f"the local model `{tiny_model_dir}`" in text


def test_the_printed_line_replaces_the_dict(tiny_model_dir, zoom_data_dir, tmp_path, capfd):
    args = AgenticGRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2,
                             max_steps=1, max_turns=1, max_completion_length=16, logging_steps=1, disable_tqdm=True,
                             log_trajectories_steps=0, save_strategy="no", report_to="none", seed=0)
    dataset = load_jsonl_dataset(f"{zoom_data_dir}/train.jsonl").select(range(1))
    AgenticGRPOTrainer(model=tiny_model_dir, args=args, train_dataset=dataset).train()
    printed = capfd.readouterr().out
    assert "step 1/1  reward " in printed and "tool failures" in printed
    assert "{'loss'" not in printed and "'rewards/accuracy/mean'" not in printed


def test_a_rollout_batch_larger_than_the_code_tools_sessions_is_warned_at_start(tiny_model_dir, zoom_data_dir,
                                                                                 tmp_path, caplog):
    from agentic_vlm.tools.code import CodeTool, SandboxUnavailableError

    args = AgenticGRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=2,
                             tools=["code"], report_to="none", use_cpu=True)
    dataset = load_jsonl_dataset(f"{zoom_data_dir}/train.jsonl").select(range(4))
    for persistent, warned in ((True, True), (False, False)):
        try:
            tool = CodeTool(persistent=persistent, max_sessions=2, workers=1)
        except SandboxUnavailableError as error:
            pytest.skip(f"this host cannot isolate code: {error}")
        caplog.clear()
        with caplog.at_level("WARNING", logger="agentic_vlm.trainer"):
            AgenticGRPOTrainer(model=tiny_model_dir, args=args, train_dataset=dataset, tools=[tool])
        asyncio.run(tool.aclose())
        message = "keeps the variables of at most 2 trajectories (max_sessions), but each rollout batch runs 4 at once"
        assert (message in caplog.text) == warned
