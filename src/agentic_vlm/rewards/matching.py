"""One-to-one matching of predictions to references, for rewards over several items (boxes, answers, queries).

Scoring each prediction against its best reference would pay a model for repeating one good item; matching each
reference at most once, and dividing by the larger count, makes a missing item and a superfluous one cost the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

# More predicted items than this (answer parts, boxes) score 0: no benchmark asks for that many, a model that writes
# them is degenerate, and scoring each of a megabyte of "||" parts would take seconds per completion.
MAX_PREDICTED_ITEMS = 256

P = TypeVar("P")
R = TypeVar("R")


def max_weight_matching(weights: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """The pairs ``(row, column)`` of a one-to-one matching with the largest total weight.

    Every row or every column (whichever are fewer) is matched. Hungarian algorithm with potentials (shortest
    augmenting paths), O(n^2 m) for n <= m: exact, and fast enough for the hundreds of items a model may write.
    """
    if not weights or not weights[0]:
        return []
    n_rows, n_cols = len(weights), len(weights[0])
    if n_rows > n_cols:
        transposed = [[weights[row][col] for row in range(n_rows)] for col in range(n_cols)]
        return [(row, col) for col, row in max_weight_matching(transposed)]
    cost = [[-weight for weight in row] for row in weights]
    # Columns are numbered 1..n_cols; column 0 is a virtual column where each new row's augmenting path starts.
    # row_of[col] is the row (numbered from 1, 0 for none) matched to col; row_potential and col_potential keep
    # every reduced cost cost - row_potential - col_potential non-negative, which makes the paths shortest.
    row_potential = [0.0] * (n_rows + 1)
    col_potential = [0.0] * (n_cols + 1)
    row_of = [0] * (n_cols + 1)
    for row in range(1, n_rows + 1):
        row_of[0] = row
        previous_col = [0] * (n_cols + 1)
        distance = [math.inf] * (n_cols + 1)
        visited = [False] * (n_cols + 1)
        col = 0
        while row_of[col] != 0:
            visited[col] = True
            current_row = row_of[col]
            step, next_col = math.inf, 0
            for candidate in range(1, n_cols + 1):
                if visited[candidate]:
                    continue
                reduced = cost[current_row - 1][candidate - 1] - row_potential[current_row] - col_potential[candidate]
                if reduced < distance[candidate]:
                    distance[candidate], previous_col[candidate] = reduced, col
                if distance[candidate] < step:
                    step, next_col = distance[candidate], candidate
            for candidate in range(n_cols + 1):
                if visited[candidate]:
                    row_potential[row_of[candidate]] += step
                    col_potential[candidate] -= step
                else:
                    distance[candidate] -= step
            col = next_col
        while col != 0:  # flip the augmenting path that ends at the free column `col`
            row_of[col] = row_of[previous_col[col]]
            col = previous_col[col]
    return [(row_of[col] - 1, col - 1) for col in range(1, n_cols + 1) if row_of[col] != 0]


def matched_score(predictions: Sequence[P], references: Sequence[R], score: Callable[[P, R], float]) -> float:
    """Total ``score`` of an optimal one-to-one matching, divided by ``max(len(predictions), len(references))``.

    Unmatched items count as 0. With ``score`` in [0, 1] the result is in [0, 1]. Nothing predicted for nothing
    expected scores 1.0: it is exactly right. More than ``MAX_PREDICTED_ITEMS`` predictions score 0.
    """
    if not predictions and not references:
        return 1.0
    if not predictions or not references or len(predictions) > MAX_PREDICTED_ITEMS:
        return 0.0
    weights = [[score(prediction, reference) for reference in references] for prediction in predictions]
    total = sum(weights[row][col] for row, col in max_weight_matching(weights))
    return total / max(len(predictions), len(references))
