"""output_logprobs in detail: positions of left-padded rows (checked on an absolute-position
model, where a shift shows), length-ordered batching, truncation and its offsets, tokenizers
without offsets, the profiling phases and progress bar; and the small helpers behind the TA
measures (token offsets, the judge's answer token, answer swaps)."""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import processors

from taloop.core import profiling
from taloop.method import signals
from taloop.method.signals import _answer_token, _output_offsets, output_logprobs, swap_answer
from taloop.student.training import chat_prompt

from .reference import manual_logprobs

OUTPUT = "The answer is 4."
# This tokenizer splits words with their leading space, and a digit from the space before it:
# "The", " answer", " is", " ", "4", ".", then EOS ("<|im_end|>", 10 characters) at 16..26.
OUTPUT_SPANS = [(0, 3), (3, 10), (10, 13), (13, 14), (14, 15), (15, 16), (16, 26)]


@pytest.fixture(scope="module")
def gpt2(tiny: tuple[Any, Any]) -> tuple[Any, Any]:
    """A tiny random GPT-2 (learned absolute position embeddings, unlike the tiny Llama's
    rotary ones, so shifting a row's positions changes its log-probs) on the same tokenizer.
    A wide initialisation makes positions matter by whole nats, not float noise."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tok = tiny
    config = GPT2Config(
        vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=256, initializer_range=0.5,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    with torch.random.fork_rng():  # seeded weights without reseeding later tests' generator
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config).eval()
    return model, tok


@pytest.fixture
def bos_tok(tiny: tuple[Any, Any]) -> Any:
    """The tiny tokenizer, changed to add a BOS token unless told not to (as Llama's and
    Gemma's do), so forgetting add_special_tokens=False shows."""
    tok = copy.deepcopy(tiny[1])
    bos = tok.bos_token
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.bos_token_id)]
    )
    assert tok("Yes").input_ids[0] == tok.bos_token_id  # the change took
    return tok


class _Spy:
    """Wraps a model, recording each forward call's attention mask."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.masks: list[torch.Tensor] = []

    def eval(self) -> Any:
        return self.model.eval()

    def __call__(self, **kwargs: Any) -> Any:
        self.masks.append(kwargs["attention_mask"].clone())
        return self.model(**kwargs)


class _WrappedTok:
    """A tokenizer wrapper: everything is the wrapped tokenizer's, except that it does not say
    it is fast (``hide_is_fast``) or returns one offset too few (``drop_offset``)."""

    def __init__(self, tok: Any, hide_is_fast: bool = False, drop_offset: bool = False) -> None:
        self._tok, self._hide, self._drop = tok, hide_is_fast, drop_offset

    def __getattr__(self, name: str) -> Any:
        if name == "is_fast" and self._hide:
            raise AttributeError(name)
        return getattr(self._tok, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        enc = self._tok(*args, **kwargs)
        if self._drop and kwargs.get("return_offsets_mapping"):
            enc["offset_mapping"] = enc["offset_mapping"][:-1]
        return enc


# --- positions of left-padded rows ------------------------------------------------------------


def test_padded_rows_are_scored_as_if_alone_on_an_absolute_position_model(gpt2: tuple[Any, Any]) -> None:
    model, tok = gpt2
    prompts = ["q", "A much longer question, so that the other row is left-padded by many tokens?"]
    outputs = [OUTPUT, "Yes"]
    # One batch of two: the first row is padded on the left. Each row's positions must start at
    # 0 at its first real token, exactly as when it is run alone; any shift (no position ids,
    # positions from 1, two tokens sharing position 0) moves log-probs by far more than 1e-3.
    got = output_logprobs(model, tok, prompts, outputs, batch_size=2)
    for prompt, output, scored in zip(prompts, outputs, got, strict=True):
        assert scored.logprobs == pytest.approx(manual_logprobs(model, tok, prompt, output), abs=1e-3)


# --- batching -----------------------------------------------------------------------------------

# Two short and three long outputs, interleaved, all with the same prompt.
MIXED = ["7", "Two plus two is four, and four plus three is seven. The answer is 7.", "No",
         "Every cat is a mammal, and every mammal is an animal. The answer is Yes.",
         "Ann is Bob's mother, so Bob is Ann's son. The answer is son."]  # fmt: skip


def test_pairs_are_batched_in_length_order_one_forward_pass_per_batch(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    spy = _Spy(model)
    got = output_logprobs(spy, tok, ["Q?"] * len(MIXED), MIXED, batch_size=2)
    # 5 pairs in batches of 2: three passes, the two short outputs together first, so the
    # first batch is padded only to the longer short row rather than to a long one.
    assert len(spy.masks) == 3
    lengths = sorted(int(n) for mask in spy.masks for n in mask.sum(dim=1))
    assert [sorted(int(n) for n in mask.sum(dim=1)) for mask in spy.masks] == [
        lengths[0:2],
        lengths[2:4],
        lengths[4:],
    ]
    # ... and each output still gets its own log-probs, in the caller's order.
    for output, scored in zip(MIXED, got, strict=True):
        assert scored.logprobs == pytest.approx(manual_logprobs(model, tok, "Q?", output), abs=1e-4)


def test_progress_bar_counts_batches_under_its_label(
    tiny: tuple[Any, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    model, tok = tiny
    output_logprobs(model, tok, ["Q?"] * len(MIXED), MIXED, batch_size=2)
    err = capsys.readouterr().err
    # tqdm redraws with \r: the final bar reads "TA: 100%|...| 3/3 [... N batch/s]" (or
    # "N s/batch" on a slow machine).
    assert re.search(r"(?:^|\r)TA: 100%\|[^|]*\| 3/3 \[[^\]]*(?<![A-Za-z])(batch/s|s/batch)\]", err), err
    output_logprobs(model, tok, ["Q?"], ["7"], batch_size=2, desc="TA (swapped)")
    assert re.search(r"(?:^|\r)TA \(swapped\): 100%\|[^|]*\| 1/1 ", capsys.readouterr().err)


def test_tokenisation_and_forward_passes_are_profiled_under_their_phases(
    tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model, tok = tiny
    monkeypatch.setenv(profiling.PROFILE_ENV, str(tmp_path))
    monkeypatch.setattr(profiling, "_totals", {})
    monkeypatch.setattr(profiling, "_first_phase", [time.time()])  # no exit-time report

    def counts() -> dict[str, int]:
        return {name: int(n) for name, (_, n) in profiling._totals.items()}

    output_logprobs(model, tok, ["Q?"] * len(MIXED), MIXED, batch_size=2)
    # tokenising the pairs, then their offsets: two "ta_tokenize" spans; one "ta_forward" a batch
    assert counts() == {"ta_tokenize": 2, "ta_forward": 3}
    output_logprobs(model, tok, ["Q?"], ["7"], batch_size=2, phase_name="ta_contrastive")
    assert counts() == {"ta_tokenize": 4, "ta_forward": 3, "ta_contrastive": 1}


@pytest.mark.parametrize("n_prompts", [3, 1])
def test_prompts_and_outputs_must_pair_up(tiny: tuple[Any, Any], n_prompts: int) -> None:
    model, tok = tiny
    with pytest.raises(ValueError, match="zip"):
        output_logprobs(model, tok, ["Q?"] * n_prompts, ["7", "8"], batch_size=2)


# --- offsets ------------------------------------------------------------------------------------


def test_a_truncated_output_keeps_the_offsets_of_what_was_read(
    tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tok = tiny
    prompt_len = len(tok(chat_prompt(tok, "q"), add_special_tokens=False).input_ids)
    monkeypatch.setattr(signals, "MAX_LENGTH", prompt_len + 3)  # room for three output tokens
    (scored,) = output_logprobs(model, tok, ["q"], [OUTPUT], batch_size=1)
    assert scored.offsets == OUTPUT_SPANS[:3]  # "The", " answer", " is"
    assert scored.logprobs == pytest.approx(manual_logprobs(model, tok, "q", OUTPUT)[:3], abs=1e-4)


def test_a_tokenizer_that_does_not_say_it_is_fast_gives_no_offsets(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    plain = _WrappedTok(tok, hide_is_fast=True)
    assert _output_offsets(plain, OUTPUT) is None
    (scored,) = output_logprobs(model, plain, ["q"], [OUTPUT], batch_size=1)
    assert scored.offsets is None
    assert scored.logprobs == pytest.approx(manual_logprobs(model, tok, "q", OUTPUT), abs=1e-4)


def test_offsets_that_disagree_with_the_scored_tokens_are_an_error(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    with pytest.raises(
        RuntimeError, match=r"^output tokens and their offsets disagree; is the tokenizer deterministic\?$"
    ):
        output_logprobs(model, _WrappedTok(tok, drop_offset=True), ["q"], [OUTPUT], batch_size=1)


def test_offsets_are_of_the_output_and_eos_without_special_tokens(bos_tok: Any) -> None:
    # A BOS-adding tokenizer must not put a (0, 0) span first: encode scores no BOS.
    assert _output_offsets(bos_tok, OUTPUT) == OUTPUT_SPANS


def test_offsets_without_an_eos_token_cover_the_output_only(tiny: tuple[Any, Any]) -> None:
    tok = copy.deepcopy(tiny[1])
    tok.eos_token = None
    # "The", " answer", " is", " X": nothing after the output's last character
    assert _output_offsets(tok, "The answer is X") == [(0, 3), (3, 10), (10, 13), (13, 15)]


# --- small helpers --------------------------------------------------------------------------------


def test_judge_answer_token_is_the_word_not_a_bos(bos_tok: Any) -> None:
    for word in ("Yes", "No"):
        assert _answer_token(bos_tok, word) == bos_tok.convert_tokens_to_ids(word)


@pytest.mark.parametrize(
    ("output", "swapped"),
    [
        ("The answer is NO", "The answer is YES"),  # two capitals are all caps, not a capital
        ("The answer is No", "The answer is Yes"),
        ("The answer is 9", "The answer is 10"),
        ("The answer is -1", "The answer is 0"),
        # one above 10**16 is exact, though a float cannot hold it (10**16 + 1 rounds down)
        ("The answer is 10000000000000000.", "The answer is 10000000000000001."),
        ("The answer is 0.5", "The answer is 1.5"),
    ],
)
def test_answer_swaps_keep_case_and_exact_numbers(output: str, swapped: str) -> None:
    assert swap_answer(output) == swapped
