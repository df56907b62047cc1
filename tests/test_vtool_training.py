"""A VTool-R1 training step end to end: the tiny Qwen2.5-VL, the vtool protocol, the ReFOCUS code tool on the real
sandbox, the synthetic charts and tables, and TRL's GRPO step.

The model's turns are the rows' reference solutions, written by a scripted generator (sampling them from a random
model would almost never produce an action); everything else is real: the sandbox edits the images live, and TRL
scores, masks and trains the sequences. Every token of every model turn is trained, the first action's included
(VTool-R1 trains only the tokens after its one tool call); only the observations are masked.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from test_refocus_data import replay
from transformers import AutoModelForImageTextToText, AutoProcessor

from agentic_vlm.config import AgenticGRPOConfig
from agentic_vlm.data import load_jsonl_dataset
from agentic_vlm.data.refocus import write_refocus_dataset
from agentic_vlm.eval import write_html
from agentic_vlm.protocols import get_protocol
from agentic_vlm.rollout import ScriptedTurnGenerator
from agentic_vlm.tools import build_tools
from agentic_vlm.tools.code import SandboxUnavailableError
from agentic_vlm.trainer import AgenticGRPOTrainer
from agentic_vlm.warmstart import supervised_warm_start


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    data_dir = write_refocus_dataset(tmp_path_factory.mktemp("refocus"), num_train=8, num_test=0, seed=0)
    dataset = load_jsonl_dataset(data_dir / "train.jsonl")
    # One question that takes two actions and one that takes one.
    two_actions = next(i for i, solution in enumerate(dataset["solution"]) if len(solution) == 3)
    one_action = next(i for i, solution in enumerate(dataset["solution"]) if len(solution) == 2)
    dataset = dataset.select([two_actions, one_action])
    args = AgenticGRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("vtool-run")),
        per_device_train_batch_size=4,
        num_generations=2,
        max_steps=1,
        max_turns=3,
        max_completion_length=768,
        protocol="vtool",
        # The protocol's own prompt (tested in test_vtool_protocol) is ~1,700 tokens of the small test vocabulary;
        # a short one keeps this CPU step fast without changing what it checks.
        system_prompt="Edit the image with the ReFOCUS functions in ```python blocks, then write FINAL ANSWER:.",
        tools=["refocus"],
        tool_kwargs={"refocus": {"workers": 2, "timeout_s": 10.0}},
        reward_funcs=["refocus_accuracy", "format"],
        logging_steps=1,
        log_trajectories_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=0,
    )
    try:
        tools = build_tools(args.tools, args.tool_kwargs)
    except SandboxUnavailableError as error:
        pytest.skip(f"this host cannot isolate code: {error}")
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    # As `agentic-vlm train` does: a warm start on the same tools first. It closes its rollout engine, and the tools
    # with it; GRPO's calls must still run (they once all failed with "the tool is closed").
    supervised_warm_start(model, processor, get_protocol("vtool"), tools, dataset, steps=1, batch_size=2,
                          max_completion_length=768, system_prompt=args.system_prompt)
    trainer = AgenticGRPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                                 tools=tools)
    script = ScriptedTurnGenerator(trainer.processing_class, trainer.protocol.stop_strings(trainer.tools),
                                   script=lambda request: request.row["solution"][request.turn])
    trainer.rollout_engine.generate = script
    trainer.train()
    return trainer, lambda row, turn: script.turn_ids(row["solution"][turn])


def test_every_action_ran_in_the_sandbox_and_returned_the_edited_image(trained):
    trainer, _ = trained
    trajectories = trainer._rollout_trajectories
    assert sorted(len(t.turns) for t in trajectories) == [2, 2, 3, 3]
    for trajectory in trajectories:
        row = trajectory.row
        assert trajectory.stop_reason == "answer"
        assert [turn.action.kind for turn in trajectory.turns] == ["tool"] * (len(row["solution"]) - 1) + ["answer"]
        expected = replay(row["solution"], row["images"][0], json.loads(row["metadata"]))
        returned = [image for turn in trajectory.turns[:-1] for image in turn.observation.images]
        assert all(turn.observation.ok for turn in trajectory.turns[:-1])
        assert len(returned) == len(expected)
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(returned, expected, strict=True))
        assert trajectory.images[1:] == returned  # in the model's context, after the question's image


def test_every_model_token_of_every_turn_is_trained_and_observations_are_not(trained):
    trainer, scripted_ids = trained
    tokenizer = trainer.processing_class.tokenizer
    image_pad = trainer.model.config.image_token_id
    for trajectory in trainer._rollout_trajectories:
        runs, start = [], 0  # maximal runs of equal mask value
        for end in range(1, len(trajectory.tool_mask) + 1):
            if end == len(trajectory.tool_mask) or trajectory.tool_mask[end] != trajectory.tool_mask[start]:
                runs.append((trajectory.tool_mask[start], trajectory.completion_ids[start:end]))
                start = end
        model_runs = [ids for from_model, ids in runs if from_model]
        observation_runs = [ids for from_model, ids in runs if not from_model]
        turns = len(trajectory.row["solution"])
        assert [from_model for from_model, _ in runs] == [1, 0] * (turns - 1) + [1]
        assert model_runs == [scripted_ids(trajectory.row, turn) for turn in range(turns)]
        for ids in observation_runs:
            text = tokenizer.decode(ids)
            assert text.startswith("<|im_end|>\n<|im_start|>user\nOBSERVATION: Execution success.")
            assert image_pad in ids and text.endswith("<|im_start|>assistant\n")


def test_the_step_scored_the_answers_and_logged_the_tool_use(trained):
    trainer, _ = trained
    logs = {key: value for entry in trainer.state.log_history for key, value in entry.items()}
    assert logs["rewards/refocus_accuracy/mean"] == 1.0 and logs["rewards/format/mean"] == 1.0
    assert logs["tools/failure_frequency"] == 0.0 and logs["tools/invalid_action_frequency"] == 0.0
    assert logs["tools/calls_per_trajectory"] == 1.5
    assert np.isfinite(logs["train_loss"])
    log = Path(trainer.trajectory_log_path)
    assert log.parent == Path(trainer.args.output_dir) and log.name.startswith("trajectories-")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert {record["rewards"]["refocus_accuracy"] for record in records} == {1.0}
    # As informative as an evaluation's records: input and tool images saved, the prediction and its verdict.
    for record in records:
        assert record["step"] == 0 and record["prediction"] and record["correct"] is True
        assert record["prediction"] in record["answer"]
        saved = [*record["input_images"], *(image for turn in record["turns"] for image in turn.get("images", []))]
        assert len(saved) > len(record["input_images"]) >= 1
        assert all((log.parent / image).is_file() for image in saved)
    html = write_html(log).read_text()
    assert "Not scored" not in html and "not saved" not in html and "missing image" not in html
    assert html.count('data-verdict="correct"') == len(records)
    assert html.count("<img ") == sum(1 + sum(len(turn.get("images", [])) for turn in record["turns"])
                                      for record in records)
