from __future__ import annotations

import pytest

from taloop.params.schema import TaskSpec
from taloop.tasks.answers import (
    extract,
    extract_number,
    extract_strict,
    extract_text,
    extract_yes_no,
    final_answer_span,
    normalize_number,
    normalize_text,
)
from taloop.tasks.base import Example
from taloop.tasks.reasoning_gym_tasks import RELATIONS
from taloop.tasks.registry import get_task


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So the total is 5 + 7.\nThe answer is 12.", "12"),
        ("The answer is 1,234.", "1234"),
        ("The answer is $1,200.50 in total", "1200.5"),
        ("The answer is 292 legs.", "292"),
        ("the final answer is: 40 apples. I double-checked 3 times.", "40"),
        ("Step 1 gives 7.\n#### 19", "19"),
        ("Answer: 3.0", "3"),
        ("We get \\boxed{56}", "56"),
        ("The answer is 10. Wait, no. The answer is 11.", "11"),
        ("no marker, first 4 then 9 apples", "9"),
        ("The answer is -3", "-3"),
        ("nothing numeric here", None),
    ],
)
def test_extract_number(text: str, expected: str | None) -> None:
    assert extract_number(text) == expected


# Tricky formats, one row per case, expected values written by hand (not copied from output).
# Numbers: commas only group thousands (a list "2,3" or a pair "(3,4)" is not 23 or 34: its
# first number is read), a minus sign is a sign only where nothing precedes it (the range
# "10-12" holds 10 and 12, not -12), a fraction is its value.
NUMBER_TABLE = [
    ("The answer is 2,3.", "2"),
    ("The answer is (3,4)", "3"),
    ("It is on pages 10-12", "12"),  # lenient fallback: the last number
    ("The answer is pages 10-12.", "10"),  # on the answer line: the first
    ("The answer is 1,234,567.", "1234567"),
    ("The answer is 1,2345", "1"),
    ("The answer is 12,345.67 dollars", "12345.67"),
    ("The answer is -7.", "-7"),
    ("0 - 4 - 8 = -12", "-12"),
    ("So 4-8=-4. The answer is -4.", "-4"),
    ("x=-5", "-5"),
    ("The answer is 3/4.", "0.75"),
    ("The answer is -1/2", "-0.5"),
    ("The answer is 50%.", "50"),
    ("The answer is 12 cm", "12"),
    ("The answer is .5", "0.5"),
    ("The answer is 007.", "7"),
    ("The answer is twelve.", None),
    # A dollar sign between the sign and the digits: "-$5" is minus five dollars.
    ("The answer is -$5.", "-5"),
    # The fallback markers outrank a later bare number in the text.
    ("#### 19\nThat took 3 steps.", "19"),
    ("We get \\boxed{56}, after 2 checks.", "56"),
    ("Answer: 12\nI checked it 3 times.", "12"),
    # Only the first line of a marked span is read: this boxed value spans three lines with
    # no number on its first, so it states no answer and the last number in the text is used.
    ("So \\boxed{the total\n12 apples\nin all}, from 3 crates.", "3"),
    # 400 nines overflow a float: not a finite number, so no answer.
    ("The answer is " + "9" * 400, None),
]
YES_NO_TABLE = [
    ("The answer is **Yes**.", "Yes"),
    ("The answer is yes!", "Yes"),
    ("The answer is No, it does not follow.", "No"),
    ("The answer is: NO", "No"),
    ("The answer is not necessarily.", None),
    ("The answer is Nope.", None),
    ("The answer is clearly yes.", "Yes"),
    ("The answer is yesterday's.", None),
]
RELATION_TABLE = [
    ("The answer is mother-in-law.", "mother-in-law"),
    ("The answer is Mother.", "mother"),
    ("The answer is her grandmother", "grandmother"),
    ("The answer is the father-in-law of Sam", "father-in-law"),
    ("The answer is husband's brother", "brother"),
]
# Without a vocabulary (a user's `text` dataset): the answer line, trimmed and lower-cased,
# articles and closing punctuation dropped.
TEXT_TABLE = [
    ("The answer is **Paris**.", "paris"),
    ("The answer is: the Blue Whale!", "blue whale"),
    ("Some reasoning.\nThe answer is an apple", "apple"),
    ("no marker here\nLast line wins.", "last line wins"),
    ("Some reasoning.\nMore reasoning.\nParis.", "paris"),
    ("Paris", "paris"),
    # Markdown outside the closing punctuation is trimmed too.
    ("The answer is **Paris.**", "paris"),
    # A capital X is part of the answer, not something to trim.
    ("The answer is option X", "option x"),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), NUMBER_TABLE)
def test_number_table(text: str, expected: str | None) -> None:
    assert extract_number(text) == expected


@pytest.mark.parametrize(("text", "expected"), YES_NO_TABLE)
def test_yes_no_table(text: str, expected: str | None) -> None:
    assert extract_yes_no(text, strict=True) == expected


@pytest.mark.parametrize(("text", "expected"), RELATION_TABLE)
def test_relation_table(text: str, expected: str) -> None:
    assert extract_text(text, RELATIONS) == expected


@pytest.mark.parametrize(("text", "expected"), TEXT_TABLE)
def test_text_without_vocabulary_table(text: str, expected: str | None) -> None:
    assert extract_text(text) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("**Paris**.", "paris"),
        ("  The Eiffel Tower!  ", "eiffel tower"),
        ("'an owl';", "owl"),
        ("A\nB", "a"),
        ("A\nB\nC", "a"),  # the first line only
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is Yes.", "Yes"),
        ("The answer is yes", "Yes"),
        ("The answer is NO, because the premises allow it.", "No"),
        ("It does not follow.\nAnswer: no", "No"),
        ("Is it valid? Yes. So yes it follows... The answer is No.", "No"),
        ("I think yes.", "Yes"),
        ("The premises are unclear.", None),
        # Only the boxed value's first line is read ("maybe": no answer), so the last yes/no
        # in the text decides.
        ("\\boxed{maybe\nyes\nmaybe}\nSo no.", "No"),
    ],
)
def test_extract_yes_no(text: str, expected: str | None) -> None:
    assert extract_yes_no(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is mother-in-law.", "mother-in-law"),
        ("The answer is **Grandfather**", "grandfather"),
        ("The answer is: a son", "son"),
        ("So Sarah is Elizabeth's mother-in-law. The answer is Sarah's mother-in-law.", "mother-in-law"),
        ("He is her brother, I think.", "brother"),
        ("The answer is mother", "mother"),
    ],
)
def test_extract_relation(text: str, expected: str) -> None:
    assert extract_text(text, RELATIONS) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # The docstring's examples.
        ("1,234", "1234"),
        ("12.50", "12.5"),
        ("3.0", "3"),
        ("3/4", "0.75"),
        ("1/0", None),
        # Six decimals: 2.0000001 prints as "2.000000", which drops its zeros and its point.
        ("2.0000001", "2"),
        # A tiny negative rounds to zero, not to "-0", which would not match a gold "0".
        ("-0.0000001", "0"),
        ("-0.0", "0"),
        ("-2.5", "-2.5"),
        ("twelve", None),
        # Not finite numbers.
        ("nan", None),
        ("inf", None),
        ("-inf", None),
        ("9" * 400, None),
    ],
)
def test_normalize_number(raw: str, expected: str | None) -> None:
    assert normalize_number(raw) == expected


# Vocabulary words that match at the same place ("ice" inside "ice cream"): the longest wins,
# on the answer line and in the fallback over the whole text; the order given does not matter.
@pytest.mark.parametrize(
    ("text", "vocabulary", "expected"),
    [
        ("The answer is ice cream.", ("ice", "ice cream"), "ice cream"),
        ("The answer is ice cream.", ("ice cream", "ice"), "ice cream"),
        ("I would pick ice cream", ("ice", "ice cream"), "ice cream"),
        ("The answer is ice.", ("ice", "ice cream"), "ice"),
    ],
)
def test_longest_vocabulary_word_wins_where_words_overlap(
    text: str, vocabulary: tuple[str, ...], expected: str
) -> None:
    assert extract_text(text, vocabulary) == expected


def test_unknown_answer_format_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="unknown answer format 'essay'"):
        extract("The answer is 4.", "essay")


def _first(task_name: str) -> Example:
    return next(get_task(task_name, TaskSpec()).stream(seed=3, needed=1))


@pytest.mark.parametrize(
    ("task_name", "reply_for_gold"),
    [
        ("gsm_symbolic", "Adding up... The answer is {gold}."),
        ("leg_counting", "Total legs.\nThe answer is {gold} legs."),
        ("syllogism", "It follows from premise 1.\nThe answer is {gold}."),
        ("family_relationships", "Tracing the tree.\nThe answer is {gold}."),
    ],
)
def test_task_scorer_accepts_gold_and_rejects_other(task_name: str, reply_for_gold: str) -> None:
    task = get_task(task_name, TaskSpec())
    ex = _first(task_name)
    right = task.extract(reply_for_gold.format(gold=ex.gold))
    assert task.is_correct(right, ex)
    wrong_gold = {"number": str(int(ex.gold) + 1) if ex.gold.isdigit() else "7", "yes_no": "No"}
    other = wrong_gold.get(task.answer_format, "nephew" if ex.gold != "nephew" else "niece")
    if task.answer_format == "yes_no" and ex.gold == "No":
        other = "Yes"
    assert not task.is_correct(task.extract(f"The answer is {other}."), ex)
    assert not task.is_correct(None, ex)


def test_numbers_with_commas_score_correctly() -> None:
    task = get_task("leg_counting", TaskSpec())
    ex = Example("x", "leg_counting", "q", "1234", {})
    assert task.is_correct(task.extract("The answer is 1,234 legs."), ex)


def test_lowercase_yes_scores_against_capitalised_gold() -> None:
    task = get_task("syllogism", TaskSpec())
    ex = Example("x", "syllogism", "q", "Yes", {})
    assert task.is_correct(task.extract("the answer is yes"), ex)


@pytest.mark.parametrize(
    ("text", "answer_format", "strict", "lenient"),
    [
        # Only the explicit answer line counts: a trailing bare number is not an answer.
        ("So 5 + 7 makes 12", "number", None, "12"),
        ("The answer is 12.\nDouble-check: 3 steps, 15 apples", "number", "12", "12"),
        ("Step 1 gives 7.\n#### 19", "number", None, "19"),
        ("Answer: 3.0", "number", None, "3"),
        ("We get \\boxed{56}", "number", None, "56"),
        ("I think yes.", "yes_no", None, "Yes"),
        ("It does not follow.\nAnswer: no", "yes_no", None, "No"),
        ("The answer is NO, because the premises allow it.", "yes_no", "No", "No"),
        ("He is her brother, I think.", "text", None, "brother"),
        ("So she is his aunt.\nThe answer is niece.", "text", "niece", "niece"),
        ("So she is his aunt.\nAnswer: niece", "text", None, "niece"),
    ],
)
def test_strict_extraction_reads_only_the_answer_line(
    text: str, answer_format: str, strict: str | None, lenient: str | None
) -> None:
    assert extract_strict(text, answer_format, RELATIONS) == strict
    assert extract(text, answer_format, RELATIONS) == lenient


def test_task_extract_strict_ignores_fallbacks() -> None:
    task = get_task("leg_counting", TaskSpec())
    assert task.extract("2 cows have 8 legs") == "8"
    assert task.extract_strict("2 cows have 8 legs") is None
    assert task.extract_strict("2 cows have 8 legs.\nThe answer is 8 legs.") == "8"


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("Cats are mammals.\nThe answer is **Yes**.", "Yes"),
        ("The answer is 10. Wait, no. The answer is 11.", "11"),
        ("The answer is: 292 legs.\nDone.", "292 legs"),
        ("The answer is .", None),
        ("no answer line, 12", None),
    ],
)
def test_final_answer_span(text: str, span: str | None) -> None:
    found = final_answer_span(text)
    assert (text[found[0] : found[1]] if found else None) == span
