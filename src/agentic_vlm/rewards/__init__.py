"""Rule-based rewards: pure scoring functions, and TRL reward functions built from them by name.

Scoring (pure, usable for evaluation too): :mod:`.text` (normalisation, EM, F1), :mod:`.answers` (several ground
truths, ``||`` parts, numeric-aware correctness), :mod:`.numeric`, :mod:`.boxes` (parsing, IoU, matching),
:mod:`.format`, :mod:`.similarity`, :mod:`.judge`, :mod:`.shaping`. TRL adapters and the registry:
:mod:`.trl_rewards`.
"""

from .answers import exact_match, is_correct_item, score_answer, split_items, token_f1
from .boxes import box_iou, matched_iou, parse_boxes
from .numeric import parse_number
from .text import exact_match_score, normalize_answer, token_f1_score
from .trl_rewards import REWARD_FACTORIES, build_reward_funcs

__all__ = [
    "REWARD_FACTORIES",
    "box_iou",
    "build_reward_funcs",
    "exact_match",
    "exact_match_score",
    "is_correct_item",
    "matched_iou",
    "normalize_answer",
    "parse_boxes",
    "parse_number",
    "score_answer",
    "split_items",
    "token_f1",
    "token_f1_score",
]
