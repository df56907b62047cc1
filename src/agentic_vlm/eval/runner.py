"""Roll out a model over a dataset with the same engine as training, and score the trajectories."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Iterator

from tqdm.auto import tqdm

from ..protocols.base import Protocol
from ..rollout import RolloutEngine, SamplingSettings, Trajectory, TransformersTurnGenerator
from ..tools.base import Tool
from ..warmstart import prompt_messages


def rollout_dataset(
    model,
    processing_class,
    protocol: Protocol,
    tools: list[Tool],
    dataset,
    *,
    batch_size: int = 16,
    max_turns: int = 4,
    max_completion_length: int = 1024,
    sampling: SamplingSettings | None = None,
    tool_timeout: float = 60.0,
    progress: bool = True,
) -> Iterator[tuple[list[dict], list[Trajectory]]]:
    """Yield ``(rows, trajectories)`` batch by batch; greedy decoding unless ``sampling`` says otherwise."""
    generator = TransformersTurnGenerator(
        processing_class, model.config, protocol.stop_strings(tools), sampling or SamplingSettings(do_sample=False)
    )
    engine = RolloutEngine(
        processing_class, protocol, tools, functools.partial(generator.generate, model),
        max_turns=max_turns, max_completion_length=max_completion_length, tool_timeout=tool_timeout,
    )
    model.eval()
    try:
        with tqdm(total=len(dataset), desc="rollouts", disable=not progress) as bar:
            for start in range(0, len(dataset), batch_size):
                rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
                yield rows, engine.run([prompt_messages(row) for row in rows], rows)
                bar.update(len(rows))
    finally:
        engine.close()


def mean_rewards(rollouts, reward_funcs) -> dict[str, float]:
    """Mean of each reward function over all rollouts (rows where a reward returns ``None`` are left out)."""
    totals = {func.__name__: [0.0, 0] for func in reward_funcs}
    for rows, trajectories in rollouts:
        completions = [t.completion_messages() for t in trajectories]
        columns = {key: [row[key] for row in rows] for key in rows[0] if key != "prompt"}
        prompts = [row["prompt"] for row in rows]
        for func in reward_funcs:
            values = func(prompts=prompts, completions=completions, **columns)
            if inspect.isawaitable(values):  # async rewards (the judge)
                values = asyncio.run(values)
            for value in values:
                if value is not None:
                    totals[func.__name__][0] += value
                    totals[func.__name__][1] += 1
    return {name: total / count if count else float("nan") for name, (total, count) in totals.items()}
