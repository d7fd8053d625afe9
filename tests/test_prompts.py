from __future__ import annotations

import pytest

from taloop.tasks.prompts import TEMPLATE_DIR, available_templates, render

# Questions and model outputs as they come: braces, surrounding whitespace, non-ASCII.
SAMPLE_FIELDS = [
    {"question": "What is 2 + 3?", "output": "2 + 3 = 5. The answer is 5."},
    {"question": "  Let S = {1, 2, 3}. How many?\n", "output": '\n{"answer": 3}\nThe answer is 3.  '},
    {"question": "Combien de pattes ont 3 araignées ? ∑", "output": ""},
]


def _sequential_render(name: str, **fields: str) -> str:
    """render() as it was when the teacher cache keys were made: str.replace field by field."""
    text = (TEMPLATE_DIR / f"{name}.txt").read_text()
    for key, value in fields.items():
        text = text.replace(f"{{{key}}}", value.strip())
    return text.strip()


@pytest.mark.parametrize("name", available_templates())
@pytest.mark.parametrize("fields", SAMPLE_FIELDS)
def test_rendering_is_unchanged_for_ordinary_text(name: str, fields: dict[str, str]) -> None:
    # the teacher reply cache is keyed by the rendered prompt: a byte changed is a reply re-bought
    assert render(name, **fields) == _sequential_render(name, **fields)


def test_field_text_is_never_searched_for_placeholders() -> None:
    question = "Fill in the blank: {output} = 4 - 1. And {question}?"
    output = "The template said {question}; the answer is {output}, i.e. 3."
    template = (TEMPLATE_DIR / "judge_v1.txt").read_text()
    before, rest = template.split("{question}")
    middle, after = rest.split("{output}")
    assert (
        render("judge_v1", question=question, output=output)
        == (before + question + middle + output + after).strip()
    )


def test_missing_field_names_the_placeholder_and_template() -> None:
    with pytest.raises(KeyError, match=r"'judge_v1' needs field\(s\) output; given: question"):
        render("judge_v1", question="What is 2 + 3?")
    with pytest.raises(KeyError, match=r"'cot_v1' needs field\(s\) question; given: none"):
        render("cot_v1")


def test_unknown_template_lists_the_available_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown prompt template .cot_v999.; available: .*cot_v1"):
        render("cot_v999", question="q")
