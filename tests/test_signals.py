"""Signals: self-consistency with unparsable samples, the one-pass TA measures (checked against
a plain unbatched forward pass of a tiny in-process model), answer swaps, and the AUC
diagnostics with their within-task pooling."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from taloop.core.metrics import grouped_flag_auc, rank_flag_auc
from taloop.method import sampling, scoring
from taloop.method.acquisition import sureness_by_question
from taloop.method.signals import (
    TA_MEASURES,
    answer_token_indices,
    local_window,
    output_logprobs,
    self_consistency,
    swap_answer,
    ta_measures,
)
from taloop.params import validate_params
from taloop.params.schema import Params, TaskSpec
from taloop.tasks.base import Example
from taloop.tasks.registry import get_task

from .reference import manual_logprobs

# --- self-consistency ----------------------------------------------------------------------


def test_unparsable_samples_are_never_agreement() -> None:
    cons = self_consistency([None, None, "7"])
    assert cons.majority == "7" and cons.majority_index == 2
    assert cons.share == pytest.approx(1 / 3)
    assert cons.entropy == pytest.approx(math.log(3))  # three distinct "answers"


def test_all_unparsable_gives_no_majority_and_share_one_over_k() -> None:
    cons = self_consistency([None] * 4)
    assert cons.majority is None and cons.majority_index == 0
    assert cons.share == pytest.approx(0.25)
    assert cons.entropy == pytest.approx(math.log(4))


def test_a_sample_without_an_answer_line_lowers_self_consistency(
    raw_params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = ["4 + 8 = 12\nThe answer is 12.", "8 + 4 = 12\nThe answer is 12.", "4 + 8 is 12"]
    monkeypatch.setattr(sampling, "complete", lambda *a, **k: ([samples], None))
    task = get_task("leg_counting", TaskSpec())
    ex = Example("q1", "leg_counting", "How many legs?", "12", {})
    params = _params(raw_params, "auto")
    out = sampling.student_outputs(params, Path("."), None, [ex], {ex.task: task})["q1"]
    # Lenient extraction would read "12" from the third sample too and give 1.0.
    assert out["sc"] == pytest.approx(2 / 3)
    assert out["student_answer"] == "12" and out["student_correct"] is True
    assert out["student_output"] == samples[0]
    assert set(out) == set(sampling.STUDENT_COLUMNS)


# --- TA measures -----------------------------------------------------------------------------


PROMPTS = ["What is 2 + 2?", "Is every cat a mammal?", "How is Ann related to Bob?", "Say a number."]
OUTPUTS = [
    "2 + 2 = 4\nThe answer is 4.",
    "Cats are mammals, and every mammal is an animal.\nThe answer is Yes.",
    "Ann is Bob's mother.\nThe answer is mother",
    "I would say 12",
]
# Where each output's answer tokens sit, counted from the end (EOS is the last token): "4"
# before "." and EOS; " Yes" likewise; " mother" before EOS; no answer line: the last token
# before EOS ("2": this tokenizer splits digits).
ANSWER_FROM_END = [3, 3, 2, 2]
SWAPPED = [
    "2 + 2 = 4\nThe answer is 5.",
    "Cats are mammals, and every mammal is an animal.\nThe answer is No.",
    "Ann is Bob's mother.\nThe answer is daughter",  # only the final answer changes
    None,
]


def _manual_window(lp: list[float]) -> float:
    if len(lp) <= 4:
        return sum(lp) / len(lp)
    means = sorted(sum(lp[i : i + 4]) / 4 for i in range(len(lp) - 3))
    lowest = means[: max(1, len(means) // 10)]
    return sum(lowest) / len(lowest)


def test_one_pass_measures_equal_a_plain_per_example_computation(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    # batch_size 3: a padded batch of three and a batch of one, in length order
    got = ta_measures(model, tok, PROMPTS, OUTPUTS, batch_size=3)
    assert set(got) == set(TA_MEASURES)
    for n, (prompt, output) in enumerate(zip(PROMPTS, OUTPUTS, strict=True)):
        lp = manual_logprobs(model, tok, prompt, output)
        assert got["mean_logprob"][n] == pytest.approx(sum(lp) / len(lp), abs=1e-4)
        assert got["min_logprob"][n] == pytest.approx(min(lp), abs=1e-4)
        assert got["local_window"][n] == pytest.approx(_manual_window(lp), abs=1e-4)
        assert got["answer_logprob"][n] == pytest.approx(lp[-ANSWER_FROM_END[n]], abs=1e-4)
        swapped = SWAPPED[n]
        expected = 0.0 if swapped is None else sum(lp) - sum(manual_logprobs(model, tok, prompt, swapped))
        assert got["contrastive"][n] == pytest.approx(expected, abs=1e-3)


def test_answer_tokens_are_the_final_answer(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    scored = output_logprobs(model, tok, PROMPTS, OUTPUTS, batch_size=4)
    for output, s, back in zip(OUTPUTS, scored, ANSWER_FROM_END, strict=True):
        assert answer_token_indices(output, s) == [len(s.logprobs) - back]
    texts = [
        "".join(o[a:b] for a, b in (s.offsets[i] for i in answer_token_indices(o, s)))
        for o, s in zip(OUTPUTS, scored, strict=True)
    ]
    assert [t.strip() for t in texts] == ["4", "Yes", "mother", "2"]
    # A multi-token answer is covered whole: "1234" is four digit tokens here.
    many = "So 1000 + 234.\nThe answer is 1234 legs."
    s = output_logprobs(model, tok, ["q"], [many], batch_size=1)[0]
    assert (
        "".join(many[a:b] for a, b in (s.offsets[i] for i in answer_token_indices(many, s))).strip() == "1234"
    )


def test_local_window_averages_the_lowest_tenth_of_windows() -> None:
    assert local_window([-1.0, -2.0, -3.0]) == pytest.approx(-2.0)  # shorter than a window
    # 24 tokens -> 21 windows -> the lowest 2: the one holding the -9 (mean -3) and a -1
    assert local_window([-9.0] + [-1.0] * 23) == pytest.approx(-2.0)
    assert local_window([-1.0] * 5 + [-5.0]) == pytest.approx(-2.0)  # 3 windows: at least one


@pytest.mark.parametrize(
    ("output", "swapped"),
    [
        ("All A are B.\nThe answer is Yes.", "All A are B.\nThe answer is No."),
        ("the answer is no", "the answer is yes"),
        ("The answer is YES", "The answer is NO"),
        ("3 + 4 = 7\nThe answer is 7.", "3 + 4 = 7\nThe answer is 8."),
        ("The answer is 3. Wait.\nThe answer is 7 dogs.", "The answer is 3. Wait.\nThe answer is 8 dogs."),
        ("The answer is 1,234 legs.", "The answer is 1235 legs."),
        ("The answer is 2.5", "The answer is 3.5"),
        ("Ann is the mother.\nThe answer is mother.", "Ann is the mother.\nThe answer is daughter."),
        ("The answer is Mother-in-law", "The answer is Daughter-in-law"),
        ("The answer is grandson", "The answer is grandfather"),
        ("The answer is unclear.", None),
        ("No answer line, 7.", None),
    ],
)
def test_answer_swaps(output: str, swapped: str | None) -> None:
    assert swap_answer(output) == swapped


# --- diagnostics -----------------------------------------------------------------------------


def _signal_row(task: str, correct: bool, conf: float, kind: str | None = None) -> dict[str, Any]:
    """A signal row whose teacher mean_logprob is ``conf`` and min_logprob is ``-conf``."""
    row: dict[str, Any] = {
        "task": task, "sc": 1.0, "teacher_correct": correct, "student_correct": True,
        **{f"ta_teacher_{m}": 0.0 for m in TA_MEASURES}, **{f"ta_student_{m}": 0.0 for m in TA_MEASURES},
    }  # fmt: skip
    row["ta_teacher_mean_logprob"], row["ta_teacher_min_logprob"] = conf, -conf
    if kind is not None or not correct:
        row["teacher_error_kind"] = kind
    return row


ROWS = [
    # task a: wrong 0.5 beats right 0.4 once in 4 pairs -> AUC 3/4
    _signal_row("a", True, 0.9), _signal_row("a", True, 0.4),
    _signal_row("a", False, 0.5, "slip"), _signal_row("a", False, 0.1, "flip"),
    # task b: wrong 0.3 above right 0.2, wrong 0.1 below -> AUC 1/2
    _signal_row("b", True, 0.2), _signal_row("b", False, 0.3, "slip"), _signal_row("b", False, 0.1, "flip"),
    # task c: no wrong reply -> no AUC, left out of the pooled mean
    _signal_row("c", True, 0.05), _signal_row("c", True, 0.06),
    {"task": "a", "teacher_correct": False},  # a warm-up row without student signals: not scored
]  # fmt: skip


def test_signal_metrics_pool_per_task_aucs(raw_params: dict[str, Any]) -> None:
    metrics = scoring.signal_metrics(ROWS, "auto", n_boot=200, seed=0)
    mean = metrics["signals"]["ta_teacher_mean_logprob"]
    assert {t: g["auc"] for t, g in mean["per_group"].items()} == {"a": 0.75, "b": 0.5, "c": None}
    assert mean["auc"] == pytest.approx(0.625) and mean["groups_used"] == 2
    # pooling all rows instead would rank task c's confident right replies too
    assert (
        _sklearn_auc(
            [not r["teacher_correct"] for r in ROWS[:-1]], [r["ta_teacher_mean_logprob"] for r in ROWS[:-1]]
        )
        != 0.625
    )
    assert mean["ci_low"] <= 0.625 <= mean["ci_high"]
    assert mean["per_group"]["a"]["ci_low"] <= 0.75 <= mean["per_group"]["a"]["ci_high"]
    assert metrics["scored_replies"] == 9 and metrics["ta_summary_measure"] == "mean_logprob"
    assert metrics["auc_ta_teacher_flags_wrong_teacher"] == pytest.approx(0.625)
    assert metrics["auc_all"]["ta_teacher_min_logprob"] == pytest.approx(0.375)  # reversed: 1/4 and 1/2
    assert metrics["auc_self_consistency_flags_wrong_student"] is None  # the student is always right
    # per kind: slips (a: 0.5 vs 0.9, 0.4 -> 1/2; b: 0.3 vs 0.2 -> 0) vs flips (both 1)
    kinds = mean["by_error_kind"]
    assert kinds["slip"]["auc"] == pytest.approx(0.25) and kinds["flip"]["auc"] == pytest.approx(1.0)
    assert "by_error_kind" not in metrics["signals"]["self_consistency"]
    named = scoring.signal_metrics(ROWS, "min_logprob", n_boot=200, seed=0)
    assert named["auc_ta_teacher_flags_wrong_teacher"] == pytest.approx(0.375)


def _sklearn_auc(wrong: Any, conf: Any) -> float:
    """The reference: sklearn's AUC of low confidence at flagging the wrong outputs."""
    return float(roc_auc_score(np.asarray(wrong, dtype=int), -np.asarray(conf, dtype=float)))


def test_rank_auc_matches_sklearn_with_ties_and_ci_is_seeded() -> None:
    rng = np.random.default_rng(1)
    wrong = rng.random(40) < 0.3
    conf = rng.integers(0, 5, size=40).astype(float)  # many ties
    assert rank_flag_auc(wrong[None], conf[None])[0] == pytest.approx(_sklearn_auc(wrong, conf))
    assert np.isnan(rank_flag_auc(np.zeros((1, 3), bool), np.ones((1, 3))))[0]
    groups = ["x"] * 20 + ["y"] * 20
    first = grouped_flag_auc(wrong, conf, groups, n_boot=300, seed=5)
    assert first == grouped_flag_auc(wrong, conf, groups, n_boot=300, seed=5)
    per = [_sklearn_auc(wrong[:20], conf[:20]), _sklearn_auc(wrong[20:], conf[20:])]
    assert first["auc"] == pytest.approx(np.mean(per))


# --- scoring wiring ------------------------------------------------------------------------------


def _params(raw: dict[str, Any], scorer: str) -> Params:
    raw["ta"]["scorer"] = scorer
    return validate_params(raw)


def _fake_ta(judge_calls: list[str]):
    def fake(
        params: Params,
        ta: Any,
        examples: Any,
        outputs: list[str],
        correct: Any,
        what: str,
        judge: bool = False,
    ):
        out = {m: [float(len(o)) + k for o in outputs] for k, m in enumerate(TA_MEASURES)}
        if judge:
            judge_calls.append(what)
            out["judge"] = [0.5] * len(outputs)
        return out

    return fake


@pytest.mark.parametrize("scorer", ["auto", "min_logprob", "judge"])
def test_score_rows_hold_every_measure(
    raw_params: dict[str, Any], monkeypatch: pytest.MonkeyPatch, scorer: str
) -> None:
    params = _params(raw_params, scorer)
    judged: list[str] = []
    monkeypatch.setattr(scoring, "load_saved", lambda path: (None, None))
    monkeypatch.setattr(scoring, "ta_scores", _fake_ta(judged))
    student = {"sc": 0.5, "sc_entropy": 0.7, "student_answer": "4", "student_output": "The answer is 4.",
               "student_correct": True}  # fmt: skip
    monkeypatch.setattr(sampling, "student_outputs", lambda p, d, a, qs, t: {q.id: dict(student) for q in qs})
    ex = Example("q1", "t", "Q?", "4", {})
    reply = {"id": "q1", "sample": 0, "task": "t", "answer": "5", "correct": False,
             "rationale": "The answer is 5!", "meta": {"simulated_error": "slip"}}  # fmt: skip
    scope = {"stage2": [reply], "all": [reply]}
    students = sampling.sample_students(params, Path("s"), Path("w"), scope, {"q1": ex}, {})
    assert set(students) == {"", "base_"}
    rows = scoring.score(params, Path("ta"), scope, {"q1": ex}, students)
    (row,) = rows
    assert row["teacher_error_kind"] == "slip" and row["stage"] == "stage2"
    for prefix in ("", "base_"):
        for k, m in enumerate(TA_MEASURES):
            assert row[f"ta_teacher_{m}"] == len("The answer is 5!") + k
            assert row[f"{prefix}ta_student_{m}"] == len("The answer is 4.") + k
    if scorer == "auto":
        assert not [c for c in row if "ta_conf" in c or "judge" in c] and not judged
    elif scorer == "min_logprob":
        assert row["ta_conf_teacher"] == row["ta_teacher_min_logprob"]
        assert row["base_ta_conf_student"] == row["base_ta_student_min_logprob"] and not judged
    else:
        assert row["ta_conf_teacher"] == row["ta_teacher_judge"] == 0.5
        assert row["ta_conf_student"] == row["base_ta_student_judge"] == 0.5
        assert sorted(judged) == ["student", "student", "teacher"]
    assert scoring.ta_measure_name(params) == ("mean_logprob" if scorer == "auto" else scorer)


def test_ta_measure_name_follows_calibration_only_under_auto(raw_params: dict[str, Any]) -> None:
    auto = _params(raw_params, "auto")
    assert scoring.ta_measure_name(auto) == "mean_logprob"
    assert scoring.ta_measure_name(auto, {"chosen": {"measure": "contrastive"}}) == "contrastive"
    assert scoring.ta_measure_name(auto, {"chosen": {"measure": "vibes"}}) == "mean_logprob"
    assert scoring.ta_measure_name(
        _params(raw_params, "local_window"), {"chosen": {"measure": "contrastive"}}
    ) == ("local_window")


def test_sureness_ranks_the_ta_measure_within_task() -> None:
    scored = [Example(f"q{i}", task, "?", "1", {}) for i, task in enumerate("aaabb")]
    ta = [-5.0, -1.0, -3.0, -100.0, -50.0]  # task b's scale is far below task a's
    sc = [1.0, 0.5, 0.5, 0.0, 0.0]
    signals = {
        f"q{i}": {"sc": s, "ta_student_mean_logprob": t} for i, (s, t) in enumerate(zip(sc, ta, strict=True))
    }
    sure = sureness_by_question(scored, signals, "ta_student_mean_logprob")
    assert sure == pytest.approx({"q0": 0.5, "q1": 0.75, "q2": 0.5, "q3": 0.0, "q4": 0.5})


@pytest.mark.parametrize("bad", [float("nan"), float("-inf")])
def test_sureness_refuses_a_ta_score_that_is_not_finite_naming_the_question(bad: float) -> None:
    scored = [Example(f"q{i}", "a", "?", "1", {}) for i in range(3)]
    signals = {f"q{i}": {"sc": 0.5, "ta_student_mean_logprob": t} for i, t in enumerate([-1.0, bad, -2.0])}
    with pytest.raises(ValueError, match="ta_student_mean_logprob is not finite for question q1"):
        sureness_by_question(scored, signals, "ta_student_mean_logprob")
