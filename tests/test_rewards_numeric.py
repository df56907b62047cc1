"""Numeric answers: parsing and closeness scores."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentic_vlm.rewards.answers import numeric_item_score
from agentic_vlm.rewards.numeric import parse_number, relative_closeness, within_relative_tolerance


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42.0),
        ("1,234.5 kg", 1234.5),
        ("$3", 3.0),
        ("-$3", -3.0),
        ("$-3", -3.0),
        ("45%", 45.0),
        ("\u22122e3", -2000.0),  # Unicode minus sign
        ("12,345,678.9", 12345678.9),
        (".5", 0.5),
        ("3.", 3.0),  # a sentence's full stop
        ("１２３", 123.0),  # full-width digits
        ("42 apples", 42.0),
        ("€ 1,000", 1000.0),
    ],
)
def test_parse_number(text, value):
    assert parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize(
    "text",
    ["", "  ", "red", "COVID-19", "about 3", "3 or 4", "1,23", "2019-2020", "+-3", "1e999", "1.2.3"],
)
def test_parse_number_rejects_what_is_not_one_number(text):
    assert parse_number(text) is None


def test_within_relative_tolerance():
    assert within_relative_tolerance(104.0, 100.0, 0.05)
    assert not within_relative_tolerance(106.0, 100.0, 0.05)
    assert within_relative_tolerance(-95.0, -100.0, 0.05)
    assert within_relative_tolerance(0.0, 0.0, 0.05)
    assert not within_relative_tolerance(1e-9, 0.0, 0.05)  # a zero truth must be hit exactly


def test_relative_closeness_hand_computed():
    assert relative_closeness(8.0, 10.0) == pytest.approx(0.8)
    assert relative_closeness(10.0, 8.0) == pytest.approx(0.8)
    assert relative_closeness(0.0, 0.0) == 1.0
    assert relative_closeness(0.0, 5.0) == 0.0
    assert relative_closeness(-1.0, 1.0) == 0.0  # clipped: the raw formula gives -1


def test_numeric_item_score():
    assert numeric_item_score("1,040", "1000") == 1.0  # within the default 5%
    assert numeric_item_score("1,100", "1000") == 0.0
    assert numeric_item_score("900", "1,000", scheme="linear") == pytest.approx(0.9)
    assert numeric_item_score("lots", "1000") == 0.0
    with pytest.raises(ValueError, match="not a number"):
        numeric_item_score("3", "three")
    with pytest.raises(ValueError, match="scheme"):
        numeric_item_score("3", "3", scheme="log")


finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)


@given(finite, finite)
def test_relative_closeness_in_unit_interval_and_symmetric(a, b):
    assert 0.0 <= relative_closeness(a, b) <= 1.0
    assert relative_closeness(a, b) == relative_closeness(b, a)


@given(finite)
def test_relative_closeness_is_one_on_identity(a):
    assert relative_closeness(a, a) == 1.0


@given(st.decimals(min_value=-1e9, max_value=1e9, places=2, allow_nan=False, allow_infinity=False))
def test_formatted_numbers_parse_back(value):
    for text in (f"{value:,.2f}", f"${value:,.2f}", f"{value:.2f}%", f"{value:,.2f} kg"):
        assert parse_number(text) == pytest.approx(float(value))
