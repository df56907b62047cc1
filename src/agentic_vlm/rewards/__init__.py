"""Rule-based rewards with TRL's reward-function signature."""

from .text import exact_match, normalize_answer
from .trl_rewards import REWARD_FACTORIES, build_reward_funcs

__all__ = ["REWARD_FACTORIES", "build_reward_funcs", "exact_match", "normalize_answer"]
