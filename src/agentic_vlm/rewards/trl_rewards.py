"""Reward functions with TRL's signature, and the registry that builds them by name.

Each factory takes the protocol, the tools and its own options, and returns ``f(prompts, completions, **kwargs)``
that gives one float per completion, or ``None`` where the reward does not apply to that row (TRL ignores it).
``completions[i]`` is a trajectory (see :mod:`.trajectory`); dataset columns arrive as keyword lists, one value per
completion. A function's ``__name__`` is its registry name, which TRL logs as ``rewards/<name>/mean``; TRL's
``reward_weights`` weighs them.

Columns read: ``answer`` (a string or a list of acceptable strings) for the answer rewards; ``boxes`` or ``box``,
and ``image_size`` = [width, height] (or the ``image``/``images`` column) for ``iou``; ``search_queries`` or
``solution`` for ``search_similarity``; ``question`` (else the prompt's last user message) for ``judge``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from functools import partial

from ..protocols.base import Protocol
from ..tools.base import Tool
from .answers import (
    NumericScheme,
    RefocusMatch,
    as_truth_list,
    exact_match,
    is_correct_item,
    items_are_numeric,
    numeric_item_score,
    refocus_item_score,
    score_answer,
    token_f1,
)
from .boxes import COORDINATES, COORDINATES_OF_FRAME, Coordinates, matched_iou, parse_boxes, to_pixels, truth_boxes
from .format import per_turn_format_score, strict_format_score
from .judge import (
    DEFAULT_PROMPT_TEMPLATE,
    DEFAULT_SYSTEM_PROMPT,
    JudgeClient,
    judge_messages,
    parse_verdict,
    question_text,
)
from .shaping import invalid_action_penalty, tool_use_bonus
from .similarity import cosine_similarity_table, load_sentence_encoder, query_similarity_score
from .text import F1Variant
from .trajectory import assistant_turns, final_answer, solution_turns, successful_tool_calls, tool_arguments

logger = logging.getLogger(__name__)

RewardFunc = Callable[..., list[float | None]]
AnswerScore = Callable[[str, list[str]], float]


def _answer_rewards(
    completions: list[list[dict]], ground_truths: Sequence, protocol: Protocol, score: AnswerScore
) -> list[float | None]:
    """``score(final answer, truths)`` per completion: ``None`` for a row without truth, 0.0 for no answer."""
    rewards = []
    for completion, cell in zip(completions, ground_truths, strict=True):
        truths = as_truth_list(cell)
        prediction = final_answer(completion, protocol)
        if not truths:
            rewards.append(None)
        elif prediction is None:
            rewards.append(0.0)
        else:
            rewards.append(score(prediction, truths))
    return rewards


def make_accuracy_reward(protocol: Protocol, tools: list[Tool], rel_tol: float = 0.0) -> RewardFunc:
    """1.0 when the final answer is right: by value for numeric truths (within ``rel_tol``), else by normalised
    exact match; parts joined by ``||`` are scored one by one (so the value is the fraction of right parts)."""
    correct = partial(is_correct_item, rel_tol=rel_tol)

    def accuracy(completions: list[list[dict]], answer: list, **kwargs) -> list[float | None]:
        return _answer_rewards(completions, answer, protocol, lambda p, truths: score_answer(p, truths, correct))

    return accuracy


def make_exact_match_reward(protocol: Protocol, tools: list[Tool]) -> RewardFunc:
    """SQuAD-normalised exact match of the final answer, best over the ground truths."""

    def exact_match_reward(completions: list[list[dict]], answer: list, **kwargs) -> list[float | None]:
        return _answer_rewards(completions, answer, protocol, exact_match)

    exact_match_reward.__name__ = "exact_match"
    return exact_match_reward


def make_f1_reward(protocol: Protocol, tools: list[Tool], variant: F1Variant = "multiset") -> RewardFunc:
    """Token F1 of the final answer, best over the ground truths; ``variant="set"`` is Visual-ARFT's."""
    if variant not in ("multiset", "set"):
        raise ValueError(f"unknown F1 variant {variant!r}; use 'multiset' or 'set'")

    def f1(completions: list[list[dict]], answer: list, **kwargs) -> list[float | None]:
        return _answer_rewards(completions, answer, protocol, partial(token_f1, variant=variant))

    return f1


def make_numeric_reward(
    protocol: Protocol, tools: list[Tool], scheme: NumericScheme = "tolerance", rel_tol: float = 0.05
) -> RewardFunc:
    """Closeness of a numeric final answer to a numeric truth; ``None`` for rows whose truths are not numbers.

    ``scheme="tolerance"``: 1.0 within ``rel_tol`` of the truth (ChartQA's relaxed accuracy at the default 5%).
    ``scheme="linear"``: VTool-R1's ``1 - |a - b| / max(|a|, |b|)``, clipped to [0, 1].
    """
    if scheme not in ("tolerance", "linear"):
        raise ValueError(f"unknown numeric scheme {scheme!r}; use 'tolerance' or 'linear'")
    item_score = partial(numeric_item_score, scheme=scheme, rel_tol=rel_tol)

    def numeric(completions: list[list[dict]], answer: list, **kwargs) -> list[float | None]:
        numeric_truths = [[truth for truth in as_truth_list(cell) if items_are_numeric(truth)] for cell in answer]
        return _answer_rewards(
            completions, numeric_truths, protocol, lambda p, truths: score_answer(p, truths, item_score)
        )

    return numeric


def make_refocus_accuracy_reward(
    protocol: Protocol,
    tools: list[Tool],
    scheme: NumericScheme = "linear",
    rel_tol: float = 0.05,
    match: RefocusMatch = "exact",
) -> RewardFunc:
    """VTool-R1's rule-based score of chart and table answers (:func:`~.answers.refocus_item_score`): numeric truths
    by relative error (``scheme`` and ``rel_tol`` as for ``numeric``; graded by default), other truths by exact match
    as written (``match="exact"``, VTool-R1's) or after SQuAD normalisation (``match="normalized"``), parts joined by
    ``||`` matched one to one, best over the acceptable answers."""
    if scheme not in ("tolerance", "linear"):
        raise ValueError(f"unknown numeric scheme {scheme!r}; use 'tolerance' or 'linear'")
    if match not in ("exact", "normalized"):
        raise ValueError(f"unknown ReFOCUS match {match!r}; use 'exact' or 'normalized'")
    item_score = partial(refocus_item_score, scheme=scheme, rel_tol=rel_tol, match=match)

    def refocus_accuracy(completions: list[list[dict]], answer: list, **kwargs) -> list[float | None]:
        return _answer_rewards(completions, answer, protocol, lambda p, truths: score_answer(p, truths, item_score))

    return refocus_accuracy


def _image_sizes(columns: dict, count: int) -> list[tuple[int, int] | None]:
    """(width, height) per row, from an ``image_size`` column or else the first image of the row."""
    if "image_size" in columns:
        return [tuple(size) if size is not None else None for size in columns["image_size"]]
    if "image" in columns:
        return [image.size if image is not None else None for image in columns["image"]]
    if "images" in columns:
        return [images[0].size if images else None for images in columns["images"]]
    return [None] * count


def make_iou_reward(
    protocol: Protocol, tools: list[Tool], coordinates: Coordinates | None = None, iou_threshold: float = 0.0
) -> RewardFunc:
    """Matched IoU of the boxes in the final answer with the ground-truth boxes (in pixels of the original image).

    ``coordinates`` is how the model writes boxes: by default its family's frame, which the trainer and the evaluator
    set as ``iou.image_view`` (Qwen2.5-VL: ``"resized_pixels"``, pixels of the image as its processor resized it;
    Qwen2-VL and Qwen3-VL: ``"norm1000"``), or ``"pixel"`` when the reward is called on its own. Give it to override:
    ``"pixel"``, ``"resized_pixels"``, ``"norm1000"`` or ``"norm1"``; all but pixels are converted with the row's
    image size. Matched pairs below ``iou_threshold`` count 0.
    """
    if coordinates is not None and coordinates not in COORDINATES:
        raise ValueError(f"unknown box coordinates {coordinates!r}; use one of {', '.join(COORDINATES)}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")

    def iou(completions: list[list[dict]], **kwargs) -> list[float | None]:
        column = "boxes" if "boxes" in kwargs else "box"
        if column not in kwargs:
            raise ValueError("the iou reward needs a `boxes` (or `box`) dataset column")
        view = iou.image_view
        frame = coordinates or (COORDINATES_OF_FRAME[view.box_frame] if view is not None else "pixel")
        rewards = []
        for completion, cell, size in zip(
            completions, kwargs[column], _image_sizes(kwargs, len(completions)), strict=True
        ):
            truths = truth_boxes(cell)
            prediction = final_answer(completion, protocol)
            if truths is None:
                rewards.append(None)
            elif prediction is None:
                rewards.append(0.0)
            else:
                predicted = [to_pixels(box, frame, size, view) for box in parse_boxes(prediction)]
                rewards.append(matched_iou(predicted, truths, iou_threshold))
        return rewards

    iou.image_view = None  # how the model sees images and writes boxes: set by the trainer and the evaluator
    return iou


def set_image_view(reward_funcs, image_view) -> None:
    """Tell the rewards that read boxes (``iou``) how the model sees images and writes boxes, where not yet told."""
    for reward_func in reward_funcs:
        if getattr(reward_func, "image_view", False) is None:
            reward_func.image_view = image_view


def make_format_reward(protocol: Protocol, tools: list[Tool], per_turn: bool = False) -> RewardFunc:
    """1.0 when every turn follows the protocol and the last one answers; ``per_turn=True``: the fraction of
    well-formed turns."""
    score = per_turn_format_score if per_turn else strict_format_score

    def format(completions: list[list[dict]], **kwargs) -> list[float | None]:  # noqa: A001 - the metric's name
        return [score(assistant_turns(completion), protocol, tools) for completion in completions]

    return format


def make_search_similarity_reward(
    protocol: Protocol,
    tools: list[Tool],
    tool_name: str = "search",
    min_similarity: float = 0.5,
    model_path: str | None = None,
    device: str = "cpu",
) -> RewardFunc:
    """Matched embedding similarity of the model's ``tool_name`` queries to the reference queries.

    References come from a ``search_queries`` column (a string or a list), else from the ``tool_name`` actions of a
    ``solution`` column; rows without any give ``None``. Similarities below ``min_similarity`` count 0 (0.5, as
    Visual-ARFT). ``model_path`` is a local sentence-transformers directory (default: the packaged MiniLM).
    """
    if tool_name not in [tool.name for tool in tools]:
        raise ValueError(f"search_similarity scores the queries of the tool {tool_name!r}, which is not among {tools}")
    if not 0.0 <= min_similarity <= 1.0:
        raise ValueError(f"min_similarity must be in [0, 1], got {min_similarity}")
    encoder = load_sentence_encoder(model_path, device)

    def references_of(columns: dict) -> list[list[str]]:
        if "search_queries" in columns:
            return [as_truth_list(cell) for cell in columns["search_queries"]]
        if "solution" in columns:
            return [
                tool_arguments(solution_turns(cell, protocol, tools), protocol, tools, tool_name) if cell else []
                for cell in columns["solution"]
            ]
        raise ValueError("the search_similarity reward needs a `search_queries` or a `solution` dataset column")

    def search_similarity(completions: list[list[dict]], **kwargs) -> list[float | None]:
        references = references_of(kwargs)
        queries = [
            tool_arguments(assistant_turns(completion), protocol, tools, tool_name) for completion in completions
        ]
        similarity = cosine_similarity_table(encoder, [text for row in queries + references for text in row])
        return [
            query_similarity_score(row_queries, row_references, similarity, min_similarity) if row_references else None
            for row_queries, row_references in zip(queries, references, strict=True)
        ]

    return search_similarity


def make_judge_reward(
    protocol: Protocol,
    tools: list[Tool],
    base_url: str,
    model: str,
    api_key_env: str | None = None,
    max_concurrency: int = 16,
    timeout: float = 60.0,
    max_retries: int = 2,
    retry_backoff: float = 0.5,
    max_tokens: int = 128,
    cache_path: str | None = None,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
) -> RewardFunc:
    """1.0 when an LLM judge finds the final answer right, 0.0 when wrong or missing, ``None`` when the judge could not
    be reached or its verdict is unclear; logs ``judge/failure_rate`` and ``judge/unclear_rate``.

    ``api_key_env`` names the environment variable holding the key (none is sent by default, so that a key meant for
    one provider never reaches another server). ``prompt_template`` has the fields {question}, {reference} and
    {prediction}.
    """
    api_key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not api_key:
        raise ValueError(f"the judge's api_key_env names {api_key_env!r}, which is not set")
    client = JudgeClient(
        base_url,
        model,
        api_key=api_key,
        max_concurrency=max_concurrency,
        timeout=timeout,
        max_retries=max_retries,
        retry_backoff=retry_backoff,
        max_tokens=max_tokens,
        cache_path=cache_path,
    )

    async def judge(
        prompts: list, completions: list[list[dict]], answer: list, log_metric: Callable | None = None, **kwargs
    ) -> list[float | None]:
        questions = kwargs.get("question") or [None] * len(completions)
        rewards: list[float | None] = []
        pending: dict[int, list[dict]] = {}  # completion index -> judge request
        for index, (completion, cell) in enumerate(zip(completions, answer, strict=True)):
            truths = as_truth_list(cell)
            prediction = final_answer(completion, protocol)
            if not truths:
                rewards.append(None)
            elif prediction is None or not prediction.strip():
                rewards.append(0.0)  # nothing to judge: a non-answer is wrong, with or without a judge
            else:
                rewards.append(None)
                question = questions[index] or question_text(prompts[index])
                pending[index] = judge_messages(question, truths, prediction, system_prompt, prompt_template)
        if not pending:
            return rewards
        replies = await client.complete_all(list(pending.values()))
        failed = unclear = 0
        for index, reply in zip(pending, replies, strict=True):
            verdict = None if reply is None else parse_verdict(reply)
            failed += reply is None
            unclear += reply is not None and verdict is None
            rewards[index] = None if verdict is None else float(verdict)
        if failed:
            logger.warning("LLM judge: %d of %d requests failed; their rewards are None", failed, len(pending))
        if log_metric is not None:
            log_metric("judge/failure_rate", failed / len(pending))
            log_metric("judge/unclear_rate", unclear / len(pending))
        return rewards

    return judge


def make_tool_use_bonus_reward(protocol: Protocol, tools: list[Tool], rel_tol: float = 0.0) -> RewardFunc:
    """1.0 when the final answer is fully right (as ``accuracy`` with this ``rel_tol``) and a tool ran successfully."""
    correct = partial(is_correct_item, rel_tol=rel_tol)

    def tool_use_bonus_reward(completions: list[list[dict]], answer: list, **kwargs) -> list[float | None]:
        accuracy = _answer_rewards(completions, answer, protocol, lambda p, truths: score_answer(p, truths, correct))
        return [
            None if score is None else tool_use_bonus(score == 1.0, successful_tool_calls(completion))
            for score, completion in zip(accuracy, completions, strict=True)
        ]

    tool_use_bonus_reward.__name__ = "tool_use_bonus"
    return tool_use_bonus_reward


def make_invalid_action_penalty_reward(protocol: Protocol, tools: list[Tool]) -> RewardFunc:
    """Minus the number of turns without a valid action (weigh it with a positive weight)."""

    def invalid_action_penalty_reward(completions: list[list[dict]], **kwargs) -> list[float | None]:
        return [invalid_action_penalty(assistant_turns(completion), protocol, tools) for completion in completions]

    invalid_action_penalty_reward.__name__ = "invalid_action_penalty"
    return invalid_action_penalty_reward


REWARD_FACTORIES: dict[str, Callable[..., RewardFunc]] = {
    "accuracy": make_accuracy_reward,
    "exact_match": make_exact_match_reward,
    "f1": make_f1_reward,
    "numeric": make_numeric_reward,
    "refocus_accuracy": make_refocus_accuracy_reward,
    "iou": make_iou_reward,
    "format": make_format_reward,
    "search_similarity": make_search_similarity_reward,
    "judge": make_judge_reward,
    "tool_use_bonus": make_tool_use_bonus_reward,
    "invalid_action_penalty": make_invalid_action_penalty_reward,
}


def build_reward_funcs(
    names: Sequence[str], protocol: Protocol, tools: list[Tool], options: dict[str, dict] | None = None
) -> list[RewardFunc]:
    """The reward functions ``names``, in order; ``options[name]`` are keyword arguments of that reward's factory."""
    options = options or {}
    unknown = [name for name in [*names, *options] if name not in REWARD_FACTORIES]
    if unknown:
        raise ValueError(f"unknown reward function(s) {unknown}; available: {sorted(REWARD_FACTORIES)}")
    unused = [name for name in options if name not in names]
    if unused:
        raise ValueError(f"options given for reward(s) {unused} that are not among the rewards {list(names)}")
    return [REWARD_FACTORIES[name](protocol, tools, **options.get(name, {})) for name in names]
