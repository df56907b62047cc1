"""Evaluation during training (a recipe's ``eval_file``): live rollouts on the eval split, its reward logged as
``eval_reward``, and ``load_best_model_at_end`` ending on the best checkpoint's weights, not the last step's; and a
checkpoint that lacks a weight is refused, not completed with random values."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageTextToText

from agentic_vlm.config import AgenticGRPOConfig
from agentic_vlm.data import load_jsonl_dataset
from agentic_vlm.trainer import AgenticGRPOTrainer


def test_eval_rewards_are_logged_and_the_best_checkpoint_is_loaded_at_the_end(tiny_model_dir, zoom_data_dir,
                                                                                tmp_path):
    evaluated_at = set()

    def first_evaluation_is_best(completions, split, trainer_state, **_):
        """Random on training rows (so that every step moves the weights); 1 at the first evaluation, 0 after."""
        if split[0] == "train":
            return torch.rand(len(completions)).tolist()
        evaluated_at.add(trainer_state.global_step)
        return [1.0 if trainer_state.global_step == 1 else 0.0] * len(completions)

    train = load_jsonl_dataset(f"{zoom_data_dir}/train.jsonl").select(range(4))
    test = load_jsonl_dataset(f"{zoom_data_dir}/test.jsonl").select(range(2))
    args = AgenticGRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4,
                             per_device_eval_batch_size=4, max_steps=2, max_turns=2, max_completion_length=32,
                             learning_rate=1e-2, eval_strategy="steps", eval_steps=1, save_steps=1,
                             load_best_model_at_end=True, metric_for_best_model="reward", greater_is_better=True,
                             logging_steps=1, log_trajectories_steps=0, report_to="none", seed=0)
    trainer = AgenticGRPOTrainer(model=tiny_model_dir, reward_funcs=[first_evaluation_is_best], args=args,
                                 train_dataset=train.add_column("split", ["train"] * 4),
                                 eval_dataset=test.add_column("split", ["test"] * 2))
    trainer.train()

    assert evaluated_at == {1, 2}
    assert [entry["eval_reward"] for entry in trainer.state.log_history if "eval_reward" in entry] == [1.0, 0.0]
    assert trainer.state.best_model_checkpoint == str(tmp_path / "checkpoint-1")
    best, last = (AutoModelForImageTextToText.from_pretrained(tmp_path / name).state_dict()
                  for name in ("checkpoint-1", "checkpoint-2"))
    final = trainer.model.state_dict()
    assert max((final[name] - best[name]).abs().max().item() for name in final) < 1e-6
    assert max((final[name] - last[name]).abs().max().item() for name in final) > 1e-3


def test_a_checkpoint_without_one_of_the_models_weights_is_refused(tiny_model_dir, zoom_data_dir, tmp_path):
    args = AgenticGRPOConfig(output_dir=str(tmp_path / "run"), per_device_train_batch_size=2, num_generations=2,
                             max_steps=1, report_to="none")
    trainer = AgenticGRPOTrainer(model=tiny_model_dir, reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
                                 args=args, train_dataset=load_jsonl_dataset(f"{zoom_data_dir}/train.jsonl"))
    checkpoint = tmp_path / "checkpoint-1"
    trainer.model.save_pretrained(checkpoint)
    weights = load_file(checkpoint / "model.safetensors")
    dropped = next(name for name in weights if "visual" in name)
    del weights[dropped]
    save_file(weights, checkpoint / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="does not hold this model's weights") as error:
        trainer._load_from_checkpoint(str(checkpoint))
    assert "missing_keys" in str(error.value)
