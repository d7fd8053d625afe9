"""TA signals at their edges: where the final answer sits (and the fallbacks when it cannot be
found), outputs with nothing to score, the judge's probability and its inputs, and the labels
the TA passes report to progress bars and to the profiler (benchmarks/run.py reads the phases).
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from taloop.method import signals
from taloop.method.signals import (
    JUDGE_TEMPLATE,
    AnswerSpan,
    ScoredOutput,
    answer_token_indices,
    judge_confidence,
    locate_answer,
    ta_measures,
)
from taloop.student.training import chat_prompt
from taloop.tasks.prompts import render

# --- where the final answer is -------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "span"),
    [
        # "The answer is " is 14 characters; X = "unclear" (the "." is trimmed) holds no answer
        # word, so the span is all of X, with no alternative.
        ("The answer is unclear.", AnswerSpan(14, 21, None)),
        # X = "about 7 legs" starts at 14; "7" is 6 characters into it.
        ("The answer is about 7 legs.", AnswerSpan(20, 21, "8")),
        # Several kinds of answer in X: the one that comes first wins.
        ("The answer is 3, so yes.", AnswerSpan(14, 15, "4")),
        ("The answer is no: she is his mother.", AnswerSpan(14, 16, "yes")),
        # "his " puts the relation 4 characters into X; the case of the word is kept.
        ("The answer is his Mother, 2 times.", AnswerSpan(18, 24, "Daughter")),
        ("No answer line here, 7.", None),
    ],
)
def test_locate_answer_finds_the_first_answer_word_within_the_answer_line(
    output: str, span: AnswerSpan | None
) -> None:
    assert locate_answer(output) == span


# Hand-built scores: n log-probs, the last one EOS's (encode appends it after the output).
@pytest.mark.parametrize(
    ("output", "scored", "expected"),
    [
        # Slow tokenizer (no offsets): the last token before EOS, i.e. index n - 2.
        ("The answer is 7.", ScoredOutput([-1.0] * 6, None), [4]),
        ("7", ScoredOutput([-1.0, -2.0], None), [0]),  # one output token, then EOS
        ("", ScoredOutput([-1.0], None), [0]),  # EOS alone: nothing before it, index 0
        # Offsets, but the output is empty: its only token is EOS (offsets past the text), and
        # that is what is left to point at.
        ("", ScoredOutput([-1.0], [(0, 10)]), [0]),
        # Truncation cut the answer off (no EOS either): the last token read.
        ("I think so.\nThe answer is 42", ScoredOutput([-1.0] * 3, [(0, 1), (1, 7), (7, 10)]), [2]),
        # No answer line: the last content token, not EOS.
        ("Say 12", ScoredOutput([-1.0] * 4, [(0, 3), (3, 5), (5, 6), (6, 16)]), [2]),
    ],
)
def test_answer_tokens_fall_back_to_the_last_token_before_eos(
    output: str, scored: ScoredOutput, expected: list[int]
) -> None:
    assert answer_token_indices(output, scored) == expected


def test_answer_without_answer_words_covers_the_whole_stated_answer() -> None:
    output = "The answer is unclear."
    # Tokens "The", " answer", " is", " unclear", ".", EOS.
    offsets = [(0, 3), (3, 10), (10, 13), (13, 21), (21, 22), (22, 32)]
    assert answer_token_indices(output, ScoredOutput([-1.0] * 6, offsets)) == [3]


# --- a tokenizer that adds BOS and has no EOS ------------------------------------------------


@pytest.fixture(scope="module")
def word_tok() -> Any:
    """A word-level fast tokenizer whose ``add_special_tokens`` prepends [BOS] (as Gemma's
    does) and that has no EOS token; its ids index the tiny model's vocabulary."""
    words = render(JUDGE_TEMPLATE, question="What is 2 + 2?", output="The answer is 4.").split()
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[BOS]", "Yes", "No", "q", *dict.fromkeys(words)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 2)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="[BOS]", pad_token="[PAD]", unk_token="[UNK]"
    )
    assert tok("q").input_ids == [2, 5] and tok("q", add_special_tokens=False).input_ids == [5]
    assert tok.eos_token is None and not tok.chat_template
    return tok


def test_an_output_with_no_tokens_is_refused_naming_its_start(tiny: tuple[Any, Any], word_tok: Any) -> None:
    model, _ = tiny
    output = " " * 50  # whitespace only: no word, and no EOS to append
    with pytest.raises(ValueError) as err:
        ta_measures(model, word_tok, ["q"], [output], batch_size=1)
    assert str(err.value) == f"output {' ' * 40!r} has no tokens to score"


# --- the judge -------------------------------------------------------------------------------


def _manual_judge(model: Any, tok: Any, question: str, output: str) -> float:
    """P(Yes) / (P(Yes) + P(No)) = sigmoid(logit_Yes - logit_No) at the end of the judge
    prompt, exactly as chat_prompt renders it, from one unpadded forward pass."""
    text = chat_prompt(tok, render(JUDGE_TEMPLATE, question=question, output=output))
    ids = torch.tensor([tok(text, add_special_tokens=False).input_ids])
    yes = tok("Yes", add_special_tokens=False).input_ids[0]
    no = tok("No", add_special_tokens=False).input_ids[0]
    with torch.inference_mode():
        last = model(input_ids=ids).logits[0, -1].double()
    return 1 / (1 + math.exp(float(last[no] - last[yes])))


QUESTIONS = ["What is 2 + 2?", "What is 2 + 2?"]
ANSWERS = ["2 + 2 = 4\nThe answer is 4.", "The answer is 5."]


@pytest.mark.parametrize("which", ["smollm2", "bos_adding"])
def test_judge_is_p_yes_over_p_yes_plus_no_on_the_prompt_as_rendered(
    tiny: tuple[Any, Any], word_tok: Any, which: str
) -> None:
    # The rendered chat prompt already holds whatever special tokens the template puts
    # there; the judge must not add a BOS of its own (a BOS-adding tokenizer would shift it).
    model, tok = tiny
    # A copy: the judge sets padding_side on the tokenizer it is given, a shared fixture here.
    tok = copy.deepcopy(tok if which == "smollm2" else word_tok)
    got = judge_confidence(model, tok, QUESTIONS, ANSWERS, batch_size=1)
    want = [_manual_judge(model, tok, q, o) for q, o in zip(QUESTIONS, ANSWERS, strict=True)]
    assert got == pytest.approx(want, abs=1e-5)


def test_judge_scores_an_item_alike_alone_and_left_padded_beside_a_longer_one(tiny: tuple[Any, Any]) -> None:
    # GPT-2 adds absolute position embeddings: a left-padded row must get the positions it has
    # alone, or its score depends on its batch neighbours.
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tok = tiny
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_positions=512, n_embd=32, n_layer=2, n_head=4)
    model = GPT2LMHeadModel(config).eval()
    long_answer = "Let me count.\n" * 6 + "The answer is 4."
    alone = judge_confidence(model, copy.deepcopy(tok), QUESTIONS[:1], ANSWERS[:1], batch_size=1)
    padded = judge_confidence(
        model, copy.deepcopy(tok), [QUESTIONS[0], QUESTIONS[0]], [ANSWERS[0], long_answer], batch_size=2
    )
    assert padded[0] == pytest.approx(alone[0], abs=1e-6)
    assert padded[1] != pytest.approx(padded[0], abs=1e-6)  # the two rows do differ


def test_judge_refuses_questions_and_outputs_of_different_lengths(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    with pytest.raises(ValueError):
        judge_confidence(model, tok, QUESTIONS, ANSWERS[:1], batch_size=2)


class _LogitSpy:
    """Wraps a model, recording how many positions each forward pass projected onto the
    vocabulary."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.positions: list[int] = []

    def eval(self) -> _LogitSpy:
        self.model.eval()
        return self

    def __call__(self, **kwargs: Any) -> Any:
        out = self.model(**kwargs)
        self.positions.append(out.logits.shape[1])
        return out


def test_judge_projects_only_the_last_position_onto_the_vocabulary(tiny: tuple[Any, Any]) -> None:
    # Only the next-token logits after the prompt are read; with a 262k vocabulary, logits for
    # every prompt position would dominate the judge's time and memory.
    model, tok = tiny
    spy = _LogitSpy(model)
    judge_confidence(spy, copy.deepcopy(tok), QUESTIONS * 2, ANSWERS * 2, batch_size=3)
    assert spy.positions == [1, 1]  # batches of 3 and 1


# --- progress bars and profiler phases -------------------------------------------------------


@pytest.fixture
def labels(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Records each progress bar's (desc, unit) and each profiled phase's name."""
    seen: dict[str, list[Any]] = {"bars": [], "phases": []}

    def bar(iterable: Iterable[Any], desc: str | None = None, unit: str = "it", **_: Any) -> Iterable[Any]:
        seen["bars"].append((desc, unit))
        return iterable

    @contextmanager
    def phase(name: str) -> Iterator[None]:
        seen["phases"].append(name)
        yield

    monkeypatch.setattr(signals, "tqdm", bar)
    monkeypatch.setattr(signals, "phase", phase)
    return seen


@pytest.mark.parametrize(("kwargs", "desc"), [({}, "TA"), ({"desc": "TA teacher"}, "TA teacher")])
def test_ta_passes_are_labelled_and_profiled_apart(
    tiny: tuple[Any, Any], labels: dict[str, list[Any]], kwargs: dict[str, str], desc: str
) -> None:
    model, tok = tiny
    # Only the first output has a swappable answer: two batches of one in the first pass,
    # one in the swapped pass.
    ta_measures(model, tok, ["q1", "q2"], ["The answer is 4.", "I would say 12"], batch_size=1, **kwargs)
    assert labels["bars"] == [(desc, "batch"), (f"{desc} (swapped)", "batch")]
    # Each pass tokenises before and after its forward batches; benchmarks/run.py sums the
    # swapped pass as "ta_contrastive", apart from the main "ta_forward".
    assert Counter(labels["phases"]) == {"ta_tokenize": 4, "ta_forward": 2, "ta_contrastive": 1}


@pytest.mark.parametrize(
    ("kwargs", "desc"), [({}, "TA judge"), ({"desc": "TA judge teacher"}, "TA judge teacher")]
)
def test_judge_batches_are_labelled_and_profiled(
    tiny: tuple[Any, Any], labels: dict[str, list[Any]], kwargs: dict[str, str], desc: str
) -> None:
    model, tok = tiny
    judge_confidence(model, copy.deepcopy(tok), QUESTIONS * 2, ANSWERS * 2, batch_size=3, **kwargs)
    assert labels["bars"] == [(desc, "batch")]
    assert labels["phases"] == ["ta_judge", "ta_judge"]  # batches of 3 and 1
