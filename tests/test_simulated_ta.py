"""The simulated TA (ta.backend: simulated): its realised ROC-AUC is the set value, it is
deterministic, it can share the teacher's blind spot, and it feeds the signal rows without
running a model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from taloop.method import scoring, simulated_ta
from taloop.params import validate_params
from taloop.params.schema import TA_MEASURES, ConfigError
from taloop.tasks.base import Example

N = 2000


def _params(raw: dict[str, Any], **ta: Any) -> Any:
    raw["ta"].update({"backend": "simulated", **ta})
    return validate_params(raw)


def _examples(n: int) -> list[Example]:
    return [Example(f"q{i}", "chain_sum", f"What is {i} + 1?", str(i + 1), {}) for i in range(n)]


def _hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    return math.sqrt(
        (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    )


@pytest.mark.parametrize("auc", [0.5, 0.7, 0.9])
def test_realised_auc_over_2000_outputs_is_within_its_95_ci_of_the_set_value(
    raw_params: dict[str, Any], auc: float
) -> None:
    params = _params(raw_params, auc_teacher=auc, auc_student=0.5)
    examples = _examples(N)
    correct = [i % 5 != 0 for i in range(N)]  # 20% wrong, as the default teacher
    conf = simulated_ta.measures(params, "teacher", examples, [f"out {i}" for i in range(N)], correct)
    assert all(conf[m] == conf["mean_logprob"] for m in TA_MEASURES)
    wrong = np.array([not c for c in correct], dtype=int)
    realised = roc_auc_score(wrong, -np.asarray(conf["mean_logprob"]))  # low confidence flags wrong
    se = _hanley_mcneil_se(auc, int(wrong.sum()), int(N - wrong.sum()))
    assert abs(realised - auc) <= 1.96 * se, (realised, auc, se)


def test_confidences_are_a_function_of_seed_question_and_output(raw_params: dict[str, Any]) -> None:
    params = _params(raw_params, auc_teacher=0.8)
    examples, outputs, correct = _examples(50), [f"o{i}" for i in range(50)], [True] * 25 + [False] * 25
    first = simulated_ta.measures(params, "teacher", examples, outputs, correct)
    again = simulated_ta.measures(params, "teacher", examples[::-1], outputs[::-1], correct[::-1])
    assert first["mean_logprob"] == again["mean_logprob"][::-1]  # not by position or order
    other_seed = simulated_ta.measures(
        _params(raw_params, auc_teacher=0.8, seed=1), "teacher", examples, outputs, correct
    )
    assert other_seed["mean_logprob"] != first["mean_logprob"]
    # one draw, shifted by d' when right: at a higher AUC the wrong outputs keep their confidence
    higher = simulated_ta.measures(
        _params(raw_params, auc_teacher=0.95, seed=0), "teacher", examples, outputs, correct
    )
    assert higher["mean_logprob"][25:] == first["mean_logprob"][25:]
    assert all(h > f for h, f in zip(higher["mean_logprob"][:25], first["mean_logprob"][:25], strict=True))


def test_separation_follows_the_binormal_auc() -> None:
    assert simulated_ta.separation(0.5) == pytest.approx(0.0)
    assert simulated_ta.separation(0.76025) == pytest.approx(1.0, abs=1e-3)  # Phi(1/sqrt 2) = 0.76025
    assert 9 < simulated_ta.separation(1.0) < 11  # finite: AUC 1 - 1e-12


class _BlindOnOdd:
    def blind_spot(self, ex: Example) -> bool:
        return int(ex.id[1:]) % 2 == 1


def test_a_shared_blind_spot_trusts_every_output_there_as_if_right(
    raw_params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(simulated_ta.WRITERS, "chain_sum", _BlindOnOdd())
    raw_params["teacher"]["error_mode"] = "systematic"
    shared = _params(raw_params, auc_teacher=0.99, blind_spot="shared")
    clear = _params(raw_params, auc_teacher=0.99, blind_spot="none")
    examples, outputs = _examples(400), [f"o{i}" for i in range(400)]
    correct = [i % 4 < 2 for i in range(400)]  # right and wrong on both odd and even ids
    blind = simulated_ta.measures(shared, "teacher", examples, outputs, correct)["mean_logprob"]
    seen = simulated_ta.measures(clear, "teacher", examples, outputs, correct)["mean_logprob"]
    odd = [i for i in range(400) if i % 2]
    d = simulated_ta.separation(0.99)
    for i in odd:  # one distribution for right and wrong there: at chance
        assert blind[i] == pytest.approx(
            simulated_ta.standard_normal(0, examples[i].question, outputs[i]) + d
        )
    wrong_odd = np.array([not correct[i] for i in odd], dtype=int)
    assert roc_auc_score(wrong_odd, -np.asarray([seen[i] for i in odd])) > 0.95
    assert [blind[i] for i in range(0, 400, 2)] == [seen[i] for i in range(0, 400, 2)]


def test_a_shared_blind_spot_needs_the_simulated_teacher_and_ta(raw_params: dict[str, Any]) -> None:
    raw_params["ta"]["blind_spot"] = "shared"
    with pytest.raises(ConfigError, match=r"ta\.blind_spot"):
        validate_params(raw_params)  # the model TA
    raw_params["teacher"]["error_mode"] = "random"
    with pytest.raises(ConfigError, match=r"ta\.blind_spot"):
        _params(raw_params)


def test_signal_rows_from_the_simulated_ta_load_no_model(raw_params: dict[str, Any]) -> None:
    params = _params(raw_params, auc_teacher=0.9, auc_student=0.6, scorer="judge")
    ex = Example("q1", "chain_sum", "1 + 1?", "2", {})
    reply = {
        "id": "q1",
        "sample": 0,
        "task": "chain_sum",
        "answer": "3",
        "correct": False,
        "rationale": "The answer is 3.",
    }
    student = {"sc": 0.5, "sc_entropy": 0.7, "student_answer": "2", "student_output": "The answer is 2.",
               "student_correct": True}  # fmt: skip
    (row,) = scoring.score(params, Path("no-ta-here"), {"stage2": [reply]}, {"q1": ex}, {"": {"q1": student}})
    d_student = simulated_ta.separation(0.6)
    assert row["ta_teacher_mean_logprob"] == simulated_ta.standard_normal(0, "1 + 1?", "The answer is 3.")
    assert row["ta_student_min_logprob"] == pytest.approx(
        simulated_ta.standard_normal(0, "1 + 1?", "The answer is 2.") + d_student
    )
    assert 0 < row["ta_conf_teacher"] == row["ta_teacher_judge"] < 1
    assert simulated_ta.describe_ta(params).startswith("simulated TA (set ROC-AUC: teacher replies 0.9")
