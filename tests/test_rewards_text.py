"""Answer normalisation, exact match, token F1, several ground truths and ``||`` parts."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentic_vlm.rewards.answers import (
    as_truth_list,
    exact_match,
    is_correct_item,
    score_answer,
    split_items,
    token_f1,
)
from agentic_vlm.rewards.text import exact_match_score, normalize_answer, token_f1_score


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  a   cat,  AN owl; the end. ", "cat owl end"),
        ("Théâtre “du” Soleil—Paris", "théâtre du soleilparis"),  # Unicode quotes and dashes are punctuation
        ("ＰＡＲＩＳ", "paris"),  # full-width letters fold under NFKC
        ("Straße", "strasse"),  # casefold, not lower
        ("$3.50", "350"),  # SQuAD drops ASCII symbols; numbers are compared by value elsewhere
        ("another theater", "another theater"),  # articles only as whole words
        ("", ""),
    ],
)
def test_normalize_answer(text, normalized):
    assert normalize_answer(text) == normalized


def test_exact_match_score():
    assert exact_match_score("The Eiffel Tower.", "eiffel tower") == 1.0
    assert exact_match_score("Eiffel", "eiffel tower") == 0.0
    # no credit for a non-answer, whatever the reference
    assert exact_match_score("", "") == 0.0
    assert exact_match_score("  ", "") == 0.0
    assert exact_match_score("東京", "東京。") == 1.0
    assert exact_match_score("Café", "cafe") == 0.0  # accents are kept: they can tell words apart


def test_token_f1_hand_computed():
    # [cat, sat, on, mat] against [cat, on, mat]: precision 3/4, recall 1
    assert token_f1_score("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    assert token_f1_score("new york city", "York") == pytest.approx(0.5)
    assert token_f1_score("red", "blue") == 0.0


def test_token_f1_variants_differ_on_repeats():
    # multiset: shared min(2,1) red + min(1,2) blue = 2 of 3 tokens each side
    assert token_f1_score("red red blue", "red blue blue") == pytest.approx(2 / 3)
    # set (Visual-ARFT): 2 distinct shared tokens over 3 tokens with repeats on each side
    assert token_f1_score("red red blue", "red blue blue", variant="set") == pytest.approx(2 / 3)
    # set: 2 distinct shared {red, car}; precision 2/4 (tokens with repeats), recall 2/2; F1 = 2/3
    assert token_f1_score("big red red car", "red car", variant="set") == pytest.approx(2 / 3)
    # multiset: shared 2 of 4 and 2 of 2, the same here; they part on "red red" against "red red car"
    assert token_f1_score("red red", "red red car") == pytest.approx(0.8)  # 2/2, 2/3
    assert token_f1_score("red red", "red red car", variant="set") == pytest.approx(0.4)  # 1/2, 1/3


def test_token_f1_empty_and_unknown_variant():
    assert token_f1_score("", "paris") == 0.0
    assert token_f1_score("paris", "") == 0.0
    assert token_f1_score("", "") == 0.0
    with pytest.raises(ValueError, match="variant"):
        token_f1_score("a b", "a b", variant="bag")


# Cases computed by hand from Visual-ARFT's MAT evaluation (evaluation_coding/evaluation.ipynb: normalize,
# compute_f1, exact_match_score, and F1 set to 1 on an exact match), which the MAT-Coding scores reproduce.
@pytest.mark.parametrize(
    ("prediction", "truth", "em", "f1_set"),
    [
        ("软件 工程", "软件工程", 1.0, 1.0),  # Chinese: whitespace removed
        ("软件", "软件工程", 0.0, 2 / 3),  # per character: 2 shared, precision 2/2, recall 2/4
        ("工程工程", "软件工程", 0.0, 0.5),  # 2 distinct shared over 4 and 4 characters
        ("北京。", "北京", 1.0, 1.0),  # Chinese punctuation dropped
        ("北京 上海", "北京\n上海", 0.0, 8 / 9),  # only spaces go: the line break is a 5th character; P 4/4, R 4/5
        # either side Chinese: both by character; 6 distinct shared of 8 and of 12 characters
        ("02999481", "{'发票号码': '02999481'}", 0.0, 0.6),
        ("A", "A", 1.0, 1.0),  # an option letter: "a" is an article, normalises to nothing, still matches
        ("(A)", "A", 1.0, 1.0),
        ("!!!", "!!!", 1.0, 1.0),
        ("the cat", "cat", 1.0, 1.0),
        ("cat cat", "cat dog", 0.0, 0.5),  # 1 distinct shared over 2 and 2
    ],
)
def test_mat_reference_cases(prediction, truth, em, f1_set):
    assert exact_match_score(prediction, truth) == em
    assert token_f1_score(prediction, truth, "set") == pytest.approx(f1_set)


def test_degenerate_answers_compare_as_written():
    # MAT's evaluation compares two empty normalisations as equal, so "." or "the" would match the option "A";
    # here answers that normalise to nothing must be the same as written.
    assert exact_match_score(".", "A") == 0.0
    assert exact_match_score("the", "a") == 0.0
    assert exact_match_score("b", "A") == 0.0
    assert token_f1_score(".", "A", "set") == 0.0
    with pytest.raises(ValueError, match="variant"):
        token_f1_score("a b", "a b", variant="bag")


def test_several_ground_truths_take_the_best():
    assert exact_match("NYC", ["New York City", "nyc"]) == 1.0
    assert token_f1("new york", ["York", "new york city"]) == pytest.approx(0.8)
    assert exact_match("Paris", []) == 0.0
    assert exact_match("Paris", "paris") == 1.0


def test_as_truth_list():
    assert as_truth_list("red") == ["red"]
    assert as_truth_list(["red", None, 3]) == ["red", "3"]
    assert as_truth_list(42) == ["42"]
    assert as_truth_list(None) == []


def test_split_items():
    assert split_items("Paris || Rome||") == ["Paris", "Rome"]
    assert split_items("  ") == []
    assert split_items("a|b") == ["a|b"]  # a single bar is not a separator


def test_parts_are_matched_in_any_order_and_extra_parts_cost():
    assert exact_match("Rome || Paris", "Paris||Rome") == 1.0
    assert exact_match("Paris", "Paris || Rome") == 0.5  # one part missing
    assert exact_match("Paris || Rome || Oslo", "Paris || Rome") == pytest.approx(2 / 3)  # one part too many
    assert exact_match("Paris || Paris", "Paris || Rome") == 0.5  # a repeated right part is not a second one
    assert exact_match("||", "Paris") == 0.0
    # each part with its own F1: (1 + 0.5) / 2
    assert token_f1("paris || new york city", "Paris || York") == pytest.approx(0.75)


def test_is_correct_item_compares_numbers_by_value():
    assert is_correct_item("1,234.50 kg", "1234.5") == 1.0
    assert is_correct_item("$3", "3") == 1.0
    assert is_correct_item("3.0", "3") == 1.0
    assert is_correct_item("3.1", "3") == 0.0
    assert is_correct_item("3.1", "3", rel_tol=0.05) == 1.0
    assert is_correct_item("three", "3") == 0.0
    assert is_correct_item("The Louvre", "louvre") == 1.0  # text truth: exact match


def test_score_answer_needs_a_truth_with_parts():
    assert score_answer("Paris", ["", " || "], exact_match_score) == 0.0


# few letters, so that random answers share tokens; and any Unicode text
words = st.one_of(st.text(alphabet=st.sampled_from(list("abcxyz é,.-!")), max_size=30), st.text(max_size=20))


@given(words, words)
def test_f1_in_unit_interval_and_symmetric(a, b):
    for variant in ("multiset", "set"):
        score = token_f1_score(a, b, variant)
        assert 0.0 <= score <= 1.0
        assert score == pytest.approx(token_f1_score(b, a, variant))


@given(words)
def test_f1_and_em_are_one_on_identity(text):
    expected = 1.0 if normalize_answer(text) or text.strip() else 0.0
    assert exact_match_score(text, text) == expected
    assert token_f1_score(text, text) == pytest.approx(expected)
    assert token_f1_score(text, text, "set") == pytest.approx(expected)


@given(words)
def test_normalize_is_idempotent(text):
    assert normalize_answer(normalize_answer(text)) == normalize_answer(text)


@given(st.lists(st.sampled_from(["paris", "rome", "oslo", "new york", "lima"]), min_size=1, max_size=4), st.randoms())
def test_part_order_does_not_matter(parts, random):
    shuffled = parts[:]
    random.shuffle(shuffled)
    truth = " || ".join(parts)
    assert exact_match(" || ".join(shuffled), truth) == 1.0
    assert token_f1(" || ".join(shuffled), "paris || lima") == pytest.approx(token_f1(truth, "paris || lima"))
