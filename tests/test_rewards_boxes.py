"""Box parsing, IoU, and optimal one-to-one matching."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentic_vlm.rewards.boxes import box_iou, matched_iou, parse_boxes, to_pixels, truth_boxes
from agentic_vlm.rewards.matching import matched_score, max_weight_matching


def test_parse_boxes_formats():
    assert parse_boxes("[10, 20, 30, 40]") == [(10.0, 20.0, 30.0, 40.0)]
    assert parse_boxes("[[1,2,3,4], [5.5, 6, 7, 8]]") == [(1.0, 2.0, 3.0, 4.0), (5.5, 6.0, 7.0, 8.0)]
    qwen_json = '```json\n[{"bbox_2d": [12, 34, 56, 78], "label": "cat"}, {"bbox_2d": [0, 0, 9, 9]}]\n```'
    assert parse_boxes(qwen_json) == [(12.0, 34.0, 56.0, 78.0), (0.0, 0.0, 9.0, 9.0)]
    assert parse_boxes("the box (1, 2, 3, 4) and [5 6 7 8]") == [(1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0)]
    assert parse_boxes("[0.1, 0.2, 0.5, 0.9]") == [(0.1, 0.2, 0.5, 0.9)]


@pytest.mark.parametrize("text", ["", "no box here", "[1, 2, 3]", "[1, 2, 3, 4, 5]", "1, 2, 3, 4", "[a, b, c, d]"])
def test_parse_boxes_finds_nothing_that_is_not_a_box(text):
    assert parse_boxes(text) == []


def test_to_pixels():
    assert to_pixels((0, 0, 500, 1000), "norm1000", (200, 100)) == (0.0, 0.0, 100.0, 100.0)
    assert to_pixels((0.5, 0.5, 1, 1), "norm1", (200, 100)) == (100.0, 50.0, 200.0, 100.0)
    assert to_pixels((1, 2, 3, 4), "pixel", None) == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="image size"):
        to_pixels((1, 2, 3, 4), "norm1000", None)


def test_box_iou_hand_computed():
    assert box_iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 5)) == pytest.approx(0.5)
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0


def test_degenerate_boxes_score_zero():
    assert box_iou((5, 5, 5, 10), (0, 0, 10, 10)) == 0.0  # no width
    assert box_iou((5, 5, 5, 5), (5, 5, 5, 5)) == 0.0  # two points are not a match
    assert box_iou((10, 10, 0, 0), (0, 0, 10, 10)) == 0.0  # swapped corners: not a box


def test_matched_iou_divides_by_the_larger_count():
    truth = [(0, 0, 10, 10)]
    assert matched_iou([(0, 0, 10, 10), (20, 20, 30, 30)], truth) == 0.5  # an extra box
    assert matched_iou([(0, 0, 10, 10)], [(0, 0, 10, 10), (20, 20, 30, 30)]) == 0.5  # a missing box
    assert matched_iou([(0, 0, 10, 10), (0, 0, 10, 10)], truth) == 0.5  # the same box twice counts once
    assert matched_iou([], truth) == 0.0
    assert matched_iou([], []) == 1.0  # nothing to find, nothing found


def test_matched_iou_is_optimal_not_greedy():
    # Greedy on the best pair first takes p0-t0 (0.9) and leaves p1-t1 (0.0); the optimum pairs p0-t1 and p1-t0.
    weights = [[0.9, 0.8], [0.7, 0.0]]
    assert sorted(max_weight_matching(weights)) == [(0, 1), (1, 0)]
    assert matched_score([0, 1], [0, 1], lambda p, t: weights[p][t]) == pytest.approx(0.75)


def test_iou_threshold_zeroes_loose_matches():
    loose = [(5, 5, 15, 15)]  # IoU 1/7 with the truth
    assert matched_iou(loose, [(0, 0, 10, 10)]) == pytest.approx(1 / 7)
    assert matched_iou(loose, [(0, 0, 10, 10)], iou_threshold=0.5) == 0.0
    assert matched_iou([(0, 0, 10, 10)], [(0, 0, 10, 10)], iou_threshold=0.5) == 1.0


def test_truth_boxes_cells():
    assert truth_boxes(None) is None
    assert truth_boxes([1, 2, 3, 4]) == [(1.0, 2.0, 3.0, 4.0)]
    assert truth_boxes([[1, 2, 3, 4], (5, 6, 7, 8)]) == [(1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0)]
    assert truth_boxes([]) == []
    assert truth_boxes("[1, 2, 3, 4]") == [(1.0, 2.0, 3.0, 4.0)]
    with pytest.raises(ValueError, match="four numbers"):
        truth_boxes([[1, 2, 3]])


coordinate = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False)
boxes = st.tuples(coordinate, coordinate, coordinate, coordinate)
positive_boxes = st.builds(
    lambda x, y, w, h: (x, y, x + w, y + h),
    coordinate,
    coordinate,
    st.floats(min_value=0.5, max_value=1e3),
    st.floats(min_value=0.5, max_value=1e3),
)


@given(boxes, boxes)
def test_iou_in_unit_interval_and_symmetric(a, b):
    assert 0.0 <= box_iou(a, b) <= 1.0
    assert box_iou(a, b) == box_iou(b, a)


@given(positive_boxes)
def test_iou_is_one_on_identity(box):
    assert box_iou(box, box) == 1.0


@given(st.lists(positive_boxes, max_size=5), st.lists(positive_boxes, max_size=5))
def test_matched_iou_in_unit_interval_and_symmetric(predicted, truths):
    score = matched_iou(predicted, truths)
    assert 0.0 <= score <= 1.0 + 1e-12
    assert score == pytest.approx(matched_iou(truths, predicted))


@given(st.lists(positive_boxes, min_size=1, max_size=6), st.randoms())
def test_matched_iou_is_one_on_identity_in_any_order(truths, random):
    predicted = truths[:]
    random.shuffle(predicted)
    assert matched_iou(predicted, truths) == pytest.approx(1.0)


weights = st.integers(1, 5).flatmap(
    lambda n_cols: st.lists(st.lists(st.floats(0, 1), min_size=n_cols, max_size=n_cols), min_size=1, max_size=5)
)


@given(weights)
def test_max_weight_matching_agrees_with_brute_force(matrix):
    n_rows, n_cols = len(matrix), len(matrix[0])
    pairs = max_weight_matching(matrix)
    assert len(pairs) == min(n_rows, n_cols)
    assert len({row for row, _ in pairs}) == len({col for _, col in pairs}) == len(pairs)
    if n_rows <= n_cols:
        best = max(
            sum(matrix[r][c] for r, c in enumerate(cols)) for cols in itertools.permutations(range(n_cols), n_rows)
        )
    else:
        best = max(
            sum(matrix[r][c] for c, r in enumerate(rows)) for rows in itertools.permutations(range(n_rows), n_cols)
        )
    assert sum(matrix[r][c] for r, c in pairs) == pytest.approx(best)


def test_max_weight_matching_handles_many_items_quickly():
    # a model that spams boxes must not stall the reward: 200 x 200 in well under a second
    matrix = [[((r * 7 + c * 13) % 17) / 17 for c in range(200)] for r in range(200)]
    assert len(max_weight_matching(matrix)) == 200
