"""Training loss weights, signals, selection and statistics on tiny in-process models."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from taloop.core.metrics import bootstrap_ci, mcnemar_exact, paired_comparison
from taloop.method.signals import JUDGE_TEMPLATE, judge_confidence, self_consistency, ta_measures
from taloop.params import validate_params
from taloop.student.generation import GenerationBackendError, complete, generate
from taloop.student.loss import WeightedCollator, weighted_loss
from taloop.student.models import TINY_RANDOM, load_saved, load_source, materialize
from taloop.student.training import PromptTooLongError, TrainExample, chat_prompt, encode
from taloop.tasks.prompts import render


def _batch(tok: Any, examples: list[TrainExample]) -> dict[str, torch.Tensor]:
    return WeightedCollator(tok.pad_token_id)(encode(tok, examples, max_length=128))


def _grads(model: Any, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    model.zero_grad()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    weighted_loss(logits, batch["labels"], batch["weight"], normaliser=10.0).backward()
    return [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


A = TrainExample("What is 2 + 2?", "2 + 2 = 4\nThe answer is 4.")
B = TrainExample("Is every cat a mammal?", "Cats are mammals.\nThe answer is Yes.")


def test_a_prompt_longer_than_max_length_is_an_error_naming_it(tiny: tuple[Any, Any]) -> None:
    _, tok = tiny
    examples = [TrainExample("short", "The answer is 1."), TrainExample("word " * 200, "The answer is 2.")]
    prompt_tokens = len(tok(chat_prompt(tok, examples[1].prompt), add_special_tokens=False).input_ids)
    with pytest.raises(
        PromptTooLongError, match=rf"example 1 \(prompt 'word word.*{prompt_tokens} prompt tokens.*64"
    ):
        encode(tok, examples, 64)
    # A prompt that fits keeps at least one completion token under the loss.
    (row,) = encode(
        tok, examples[:1], len(tok(chat_prompt(tok, "short"), add_special_tokens=False).input_ids) + 1
    )
    assert sum(label != -100 for label in row["labels"]) == 1


def test_prompt_tokens_carry_no_loss(tiny: tuple[Any, Any]) -> None:
    _, tok = tiny
    row = encode(tok, [A], max_length=128)[0]
    scored = [t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != -100]
    assert tok.decode(scored).startswith("2 + 2 = 4")
    assert row["labels"][0] == -100


def test_weight_zero_example_changes_nothing_in_the_gradient(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    alone = _grads(model, _batch(tok, [A]))
    with_ignored = _grads(model, _batch(tok, [A, TrainExample(B.prompt, B.completion, weight=0.0)]))
    with_counted = _grads(model, _batch(tok, [A, B]))
    assert all(torch.allclose(x, y, atol=1e-7) for x, y in zip(alone, with_ignored, strict=True))
    assert not all(torch.allclose(x, y, atol=1e-7) for x, y in zip(alone, with_counted, strict=True))


def test_collator_keeps_the_weight_column(tiny: tuple[Any, Any]) -> None:
    _, tok = tiny
    batch = _batch(tok, [A, TrainExample(B.prompt, B.completion, weight=0.25)])
    assert batch["weight"].tolist() == [1.0, 0.25]
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape


def test_ta_measures_prefer_a_learned_sequence(tiny: tuple[Any, Any]) -> None:
    model, tok = load_source(TINY_RANDOM)  # a fresh copy: this test trains it
    tok.pad_token = tok.pad_token or tok.eos_token
    learned = "Alice has three red apples and gives one to Bob."
    shuffled = " ".join(reversed(learned.split()))
    batch = _batch(tok, [TrainExample("Tell me a fact.", learned)])
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(30):
        optimiser.zero_grad()
        # the model's own mean token loss: this test is about scoring, not loss weighting
        model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        ).loss.backward()
        optimiser.step()
    scores = ta_measures(model, tok, ["Tell me a fact."] * 2, [learned, shuffled], batch_size=2)
    for measure in ("mean_logprob", "min_logprob", "local_window"):
        assert scores[measure][0] > scores[measure][1], measure
    assert all(s < 0 for s in scores["mean_logprob"])
    assert scores["contrastive"] == [0.0, 0.0]  # no answer line: nothing to swap


def test_judge_confidence_is_a_probability(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    scores = judge_confidence(
        model, tok, ["1+1?", "2+2?", "3+3?"], ["The answer is 2.", "5", "6"], batch_size=2
    )
    assert len(scores) == 3
    # Each score is softmax over the Yes and No logits of the judge prompt's next token, in
    # that order: recomputed here from an unbatched forward pass (swapped ids give 1 - p).
    yes, no = (tok(w, add_special_tokens=False).input_ids[0] for w in ("Yes", "No"))
    for score, (q, o) in zip(
        scores, [("1+1?", "The answer is 2."), ("2+2?", "5"), ("3+3?", "6")], strict=True
    ):
        ids = tok(chat_prompt(tok, render(JUDGE_TEMPLATE, question=q, output=o)), return_tensors="pt",
                  add_special_tokens=False).input_ids  # fmt: skip
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0, -1]
        assert score == pytest.approx(torch.sigmoid(logits[yes] - logits[no]).item(), abs=1e-5)
    assert any(abs(s - 0.5) > 1e-3 for s in scores)  # a swap would show


def test_k_samples_per_prompt_in_one_call(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    outs = generate(
        model, tok, ["a", "bb", "ccc"], max_new_tokens=5, batch_size=2, num_samples=3, temperature=1.0
    )
    assert [len(o) for o in outs] == [3, 3, 3]
    greedy = [generate(model, tok, ["a", "bb"], max_new_tokens=5, batch_size=2) for _ in range(2)]
    assert greedy[0] == greedy[1]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_backend_without_vllm_fails_naming_the_param(raw_params: dict[str, Any], tmp_path: Path) -> None:
    materialize(TINY_RANDOM, tmp_path / "student")
    raw_params["generation"] = {"backend": "vllm"}
    with pytest.raises(GenerationBackendError, match=r"generation\.backend: vllm .* not installed"):
        complete(
            validate_params(raw_params), tmp_path / "student", None, ["a"], max_new_tokens=3, batch_size=1
        )
    raw_params["generation"] = {"backend": "transformers"}
    outs, tok = complete(
        validate_params(raw_params), tmp_path / "student", None, ["a", "bb"], max_new_tokens=3, batch_size=2,
        num_samples=2, temperature=1.0,
    )  # fmt: skip
    assert [len(o) for o in outs] == [2, 2] and tok.pad_token is not None


@pytest.mark.parametrize(
    ("answers", "majority", "share", "entropy"),
    [
        (["3", "3", "3", "3"], "3", 1.0, 0.0),
        (["3", "3", "4", None], "3", 0.5, -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))),
        (["4", "3", "3", "4"], "4", 0.5, math.log(2)),  # tie: the answer seen first
        # each unparsable sample is its own answer: two Nones do not agree
        ([None, None, "7"], "7", 1 / 3, math.log(3)),
        ([None, None], None, 1 / 2, math.log(2)),
    ],
)
def test_self_consistency(
    answers: list[str | None], majority: str | None, share: float, entropy: float
) -> None:
    cons = self_consistency(answers)
    assert cons.majority == majority
    assert cons.share == pytest.approx(share)
    assert cons.entropy == pytest.approx(entropy)
    assert answers[cons.majority_index] == majority
    if majority is None:
        assert cons.majority_index == 0


def test_bootstrap_and_paired_comparison() -> None:
    groups = ["a"] * 50 + ["b"] * 50
    base = [i % 2 == 0 for i in range(100)]
    lo, hi = bootstrap_ci(base, groups, 500, 0)
    assert lo < 0.5 < hi
    same = paired_comparison(base, base, groups, 500, 0)
    assert same["diff"] == 0 and same["p_value"] == 1.0
    assert same["diff_ci_low"] == same["diff_ci_high"] == 0
    better = [True] * 90 + [False] * 10
    win = paired_comparison(better, base, groups, 500, 0)
    assert win["diff"] == pytest.approx(0.4) and win["p_value"] < 0.01
    assert 0.25 < win["diff_ci_low"] < 0.4 < win["diff_ci_high"] < 0.55
    assert win["relative_improvement"] == pytest.approx(0.8)
    assert win["relative_ci_low"] < 0.8 < win["relative_ci_high"]
    # A loss is the mirror image: same p, negated difference and interval.
    loss = paired_comparison(base, better, groups, 500, 0)
    assert loss["diff"] == pytest.approx(-0.4) and loss["p_value"] == win["p_value"]
    assert loss["diff_ci_high"] < 0


@pytest.mark.parametrize(
    ("wins", "losses", "p"),
    [
        # By hand: 2 * P(Binomial(n, 1/2) <= min(wins, losses)).
        (6, 0, 2 / 2**6),  # 0.031: the example
        (0, 6, 2 / 2**6),
        (12, 0, 2 / 2**12),
        (6, 1, 2 * (1 + 7) / 2**7),  # 0.125
        (5, 5, 1.0),  # capped
        (0, 0, 1.0),
    ],
)
def test_paired_p_value_is_the_exact_mcnemar_test(wins: int, losses: int, p: float) -> None:
    # Crafted predictions: `wins` items only the variant gets right, `losses` only the
    # baseline, 10 both right and 10 both wrong (concordant pairs carry no evidence).
    variant = [True] * wins + [False] * losses + [True] * 10 + [False] * 10
    baseline = [False] * wins + [True] * losses + [True] * 10 + [False] * 10
    result = paired_comparison(variant, baseline, ["t"] * len(variant), 200, 0)
    assert result["p_value"] == pytest.approx(p, rel=1e-12)
    assert mcnemar_exact(wins, losses) == pytest.approx(p, rel=1e-12)


def test_models_resolve_from_a_local_path(tmp_path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    materialize(TINY_RANDOM, first)
    materialize(str(first), second)  # a local path resolves like a hub id would
    (a, _), (b, tok) = load_saved(first), load_saved(second)
    assert (second / "model.safetensors").is_file() and tok.pad_token is not None
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)
