"""Selection rules worked out by hand: the gate's arithmetic, a task whose usefulness is all
zero, tie-breaking at the filter's cut, the non-finite signal guard and its message, the
per-task diagnostics dict key by key (with its zero and one-token boundaries), and the error
messages a caller reads."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

from taloop.method.selection import SignalPlan, example_weights, signal_column, task_diagnostics, usefulness
from taloop.method.signals import self_consistency
from taloop.params.schema import Stage2Config, VariantSpec
from taloop.tasks.answers import extract_strict

ALL = ["self_consistency", "ta_student", "ta_teacher"]
LOOP = VariantSpec(schedule="two_stage", signals=ALL)
ORACLE = VariantSpec(schedule="two_stage", gold_filter=True)

# --- usefulness: the gate by hand -------------------------------------------------------------

# One task, three replies. Within-task ranks mapped to [0, 1]:
#   teacher trust  0.1, 0.5, 0.9  -> ranks 0, 0.5, 1   -> trust  0, 0.5, 1
#   sc             1.0, 0.5, 0.75 -> ranks 1, 0, 0.5   -> doubt  0, 1, 0.5   (1 - rank)
#   ta_student     0.1, 0.5, 0.9  -> ranks 0, 0.5, 1   -> error  1, 0.5, 0   (1 - rank)
# Student mean per row: 0.5, 0.75, 0.25 (not constant, so a pooled mean would differ).
GATE_ROWS = [
    {"task": "a", "ta_teacher_m": 0.1, "sc": 1.0, "ta_student_m": 0.1},
    {"task": "a", "ta_teacher_m": 0.5, "sc": 0.5, "ta_student_m": 0.5},
    {"task": "a", "ta_teacher_m": 0.9, "sc": 0.75, "ta_student_m": 0.9},
]


def test_gate_multiplies_trust_by_each_rows_mean_student_usefulness() -> None:
    gate = usefulness(GATE_ROWS, SignalPlan("m", dict.fromkeys(ALL, 1), "gate"))
    # trust x row-wise student mean: 0 x 0.5, 0.5 x 0.75, 1 x 0.25
    assert gate.tolist() == pytest.approx([0.0, 0.375, 0.25])
    # mean: the three parts averaged, (0+0+1)/3, (0.5+1+0.5)/3, (1+0.5+0)/3
    mean = usefulness(GATE_ROWS, SignalPlan("m", dict.fromkeys(ALL, 1), "mean"))
    assert mean.tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 2])


def test_gate_with_one_student_signal_uses_that_signal_alone() -> None:
    plan = SignalPlan("m", {"ta_teacher": 1, "self_consistency": 1}, "gate")
    # trust 0, 0.5, 1 times doubt 0, 1, 0.5
    assert usefulness(GATE_ROWS, plan).tolist() == pytest.approx([0.0, 0.5, 0.5])


def test_gate_without_student_signals_is_teacher_trust_alone() -> None:
    rows = [{"task": "a", "ta_teacher_m": v} for v in (0.3, 0.1, 0.2)]
    plan = SignalPlan("m", {"ta_teacher": 1}, "gate")
    # ranks of 0.3, 0.1, 0.2: 1, 0, 0.5; nothing to multiply them by
    assert usefulness(rows, plan).tolist() == pytest.approx([1.0, 0.0, 0.5])


def test_usefulness_without_signals_is_refused_with_its_reason() -> None:
    with pytest.raises(ValueError) as err:
        usefulness(GATE_ROWS, SignalPlan("m", {}))
    assert str(err.value) == "usefulness needs at least one signal"


# --- weights: boundaries -------------------------------------------------------------------


def test_a_task_whose_gated_usefulness_is_all_zero_gets_equal_weights() -> None:
    # Task a: the trusted reply has the surest student, the distrusted one the least sure:
    # trust 0, 1 x doubt 1, 0 = usefulness 0, 0. No row is more useful than another, so
    # the task keeps equal weights (mean 1), not 0/0.
    # Task b: trust 0, 1 x doubt 0, 1 = 0, 1 -> 0/0.5, 1/0.5 = 0, 2 -> floor 0.1, 2 -> / 1.05.
    rows = [
        {"task": "a", "ta_teacher_m": 0.2, "sc": 0.25},
        {"task": "a", "ta_teacher_m": 0.8, "sc": 1.0},
        {"task": "b", "ta_teacher_m": 0.2, "sc": 1.0},
        {"task": "b", "ta_teacher_m": 0.8, "sc": 0.25},
    ]
    plan = SignalPlan("m", {"ta_teacher": 1, "self_consistency": 1}, "gate")
    cfg = Stage2Config(mode="weight", weight_floor=0.1)
    weights = example_weights(rows, LOOP, cfg, plan)
    assert weights.tolist() == pytest.approx([1.0, 1.0, 0.1 / 1.05, 2 / 1.05])


def test_filter_breaks_ties_at_the_cut_by_row_order() -> None:
    # 40 replies, sc cycling 0.25, 0.5, 0.75, 1.0: the ten with sc 0.25 (rows 0, 4, ..., 36)
    # share the top usefulness. keep_fraction 0.125 keeps round(5.0) = 5 of them; the first
    # five in row order, so the kept set does not depend on the sort algorithm numpy picks.
    rows = [{"task": "a", "sc": (1 + i % 4) / 4} for i in range(40)]
    plan = SignalPlan("m", {"self_consistency": 1})
    weights = example_weights(rows, LOOP, Stage2Config(mode="filter", keep_fraction=0.125), plan)
    assert np.flatnonzero(weights).tolist() == [0, 4, 8, 12, 16]
    assert weights[[0, 4, 8, 12, 16]].tolist() == [1.0] * 5


def test_a_plan_without_signals_leaves_every_weight_at_one() -> None:
    weights = example_weights(GATE_ROWS, LOOP, Stage2Config(), SignalPlan("m", {}))
    assert weights.tolist() == [1.0, 1.0, 1.0]


def test_no_rows_give_no_weights() -> None:
    weights = example_weights([], LOOP, Stage2Config(), SignalPlan("m", dict.fromkeys(ALL, 1)))
    assert weights.shape == (0,)


# --- the non-finite guard ------------------------------------------------------------------


def _replies(column: str, bad: Any) -> list[dict[str, Any]]:
    # The bad value sits between finite ones, so the message must name exactly that reply.
    return [
        {"task": "a", "id": "q1", "sample": 0, column: 0.4},
        {"task": "a", "id": "q2", "sample": 3, column: bad},
        {"task": "a", "id": "q3", "sample": 1, column: 0.7},
    ]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None])  # None: a JSON null
@pytest.mark.parametrize(
    ("signal", "prefix", "column"),
    [
        ("self_consistency", "", "sc"),
        ("ta_student", "base_", "base_ta_student_m"),
        ("ta_teacher", "base_", "ta_teacher_m"),  # the teacher's trust has no base_ twin
    ],
)
def test_a_non_finite_signal_names_its_column_and_reply(
    bad: Any, signal: str, prefix: str, column: str
) -> None:
    rows = _replies(column, bad)
    with pytest.raises(ValueError) as err:
        usefulness(rows, SignalPlan("m", {signal: 1}), prefix=prefix)
    assert str(err.value) == f"signal column {column} is not finite for reply q2#3"


def test_a_lone_reply_with_a_non_finite_signal_is_refused_too() -> None:
    # One row ranks to 0.5 whatever its value; the guard must still see the NaN.
    rows = [{"task": "a", "id": "q9", "sample": 2, "sc": math.nan}]
    with pytest.raises(ValueError, match=re.escape("signal column sc is not finite for reply q9#2")):
        example_weights(rows, LOOP, Stage2Config(), SignalPlan("m", {"self_consistency": 1}))


def test_an_unknown_signal_is_named() -> None:
    with pytest.raises(ValueError) as err:
        signal_column("judge", "m")
    assert str(err.value) == "unknown signal 'judge'"


# --- per-task diagnostics ------------------------------------------------------------------


def test_task_diagnostics_by_hand() -> None:
    rows = [
        {"task": "b", "teacher_correct": False},  # 0
        {"task": "a", "teacher_correct": True},  # 1
        {"task": "a", "teacher_correct": False},  # 2
        {"task": "a", "teacher_correct": True},  # 3 (filtered out)
        {"task": "b", "teacher_correct": True},  # 4
    ]
    weights = np.array([0.5, 1.5, 0.5, 0.0, 1.5])
    tokens = [6, 10, 20, 7, 2]
    out = task_diagnostics(rows, weights, tokens)
    assert list(out) == ["a", "b"]
    # a: mass 15, 10, 0 -> 10 / 25 on the wrong reply
    assert out["a"] == pytest.approx(
        {"replies": 3, "kept": 2, "weight_sum": 2.0, "wrong_replies": 1, "wrong_loss_share": 0.4}
    )
    # b: mass 3 (wrong), 3 -> 3 / 6
    assert out["b"] == pytest.approx(
        {"replies": 2, "kept": 2, "weight_sum": 2.0, "wrong_replies": 1, "wrong_loss_share": 0.5}
    )
    assert isinstance(out["a"]["kept"], int) and isinstance(out["a"]["replies"], int)


@pytest.mark.parametrize(("weight", "tokens"), [(1.0, 1), (0.25, 1), (0.5, 1)])
def test_a_task_with_loss_mass_at_most_one_still_reports_its_share(weight: float, tokens: int) -> None:
    # Calibration counts a reply without teacher_tokens as 1 token: a one-reply task whose
    # reply is wrong has all of its (small) loss on a wrong reply.
    out = task_diagnostics([{"task": "c", "teacher_correct": False}], np.array([weight]), [tokens])
    assert out["c"]["wrong_loss_share"] == 1.0


def test_a_task_with_no_loss_left_reports_no_wrong_loss() -> None:
    # The oracle drops every reply of a task its teacher got all wrong: nothing of the
    # stage-2 loss lands on a wrong reply there (and the other task is unaffected).
    rows = [
        {"task": "c", "teacher_correct": False},
        {"task": "c", "teacher_correct": False},
        {"task": "d", "teacher_correct": True},
    ]
    weights = example_weights(rows, ORACLE, Stage2Config(), None)
    assert weights.tolist() == [0.0, 0.0, 1.0]
    out = task_diagnostics(rows, weights, [30, 40, 50])
    assert out["c"] == {
        "replies": 2,
        "kept": 0,
        "weight_sum": 0.0,
        "wrong_replies": 2,
        "wrong_loss_share": 0.0,
    }
    assert out["d"] == {
        "replies": 1,
        "kept": 1,
        "weight_sum": 1.0,
        "wrong_replies": 0,
        "wrong_loss_share": 0.0,
    }


# --- self-consistency and strict extraction -------------------------------------------------


def test_self_consistency_of_no_samples_is_refused_with_its_reason() -> None:
    with pytest.raises(ValueError) as err:
        self_consistency([])
    assert str(err.value) == "self-consistency needs at least one sample"


def test_strict_extraction_maps_the_answer_line_to_a_vocabulary_word() -> None:
    # Without the vocabulary the strict reading would be the whole phrase "she is his niece".
    text = "So she is his aunt's daughter.\nThe answer is she is his niece."
    assert extract_strict(text, "text", ["aunt", "niece"]) == "niece"
    assert extract_strict(text, "text") == "she is his niece"
