"""Evaluation: the training rollout engine over a dataset, and its metrics."""

from .runner import mean_rewards, rollout_dataset

__all__ = ["mean_rewards", "rollout_dataset"]
