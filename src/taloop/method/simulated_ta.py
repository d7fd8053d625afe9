"""A TA of set quality (``ta.backend: simulated``): it runs no model.

Its confidence in an output follows an equal-variance binormal model given whether the
output is right by gold: ``z + d'`` for a right output and ``z`` for a wrong one, with
``z`` standard normal, drawn deterministically from (``ta.seed``, question, output), and
``d' = sqrt(2) * Phi^-1(AUC)``, so the ROC-AUC at telling wrong outputs from right is the set
value (``ta.auc_teacher`` for teacher replies, ``ta.auc_student`` for the student's outputs).
With ``ta.blind_spot: shared`` it is at chance on the questions in the simulated teacher's
blind spot (the sub-type its systematic mistake applies to): there every output gets ``z +
d'``, trusted as if right. Every TA measure column holds the same confidence (the judge's, when
asked, that confidence mapped into (0, 1)), so the measure calibration picks does not matter.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from statistics import NormalDist

from taloop.params.schema import TA_MEASURES, Params
from taloop.tasks.base import Example
from taloop.teachers.rationales import WRITERS

_NORMAL = NormalDist()
# AUC 1.0 would need an infinite separation: d' = 10 (AUC 1 - 1e-12) separates as well as any data
# here can show.
_MAX_AUC = 1 - 1e-12


def separation(auc: float) -> float:
    """d' of the equal-variance binormal model whose ROC-AUC is ``auc``: AUC = Phi(d' / sqrt 2)."""
    return math.sqrt(2) * _NORMAL.inv_cdf(min(auc, _MAX_AUC))


def standard_normal(seed: int, question: str, output: str) -> float:
    digest = hashlib.sha256(json.dumps([seed, question, output]).encode()).digest()
    uniform = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
    return _NORMAL.inv_cdf(uniform)


def confidences(
    seed: int, auc: float, questions: Sequence[str], outputs: Sequence[str], right: Sequence[bool]
) -> list[float]:
    """One confidence per output; ``right``: right by gold, or trusted as if right."""
    d = separation(auc)
    return [
        standard_normal(seed, q, o) + (d if ok else 0.0)
        for q, o, ok in zip(questions, outputs, right, strict=True)
    ]


def in_blind_spot(params: Params, example: Example) -> bool:
    """Whether ``ta.blind_spot: shared`` puts ``example`` where the TA is at chance."""
    writer = WRITERS.get(example.task)
    return params.ta.blind_spot == "shared" and writer is not None and writer.blind_spot(example)


def measures(
    params: Params,
    whose: str,
    examples: Sequence[Example],
    outputs: Sequence[str],
    correct: Sequence[bool],
    judge: bool = False,
) -> dict[str, list[float]]:
    """Every TA measure (and "judge" when asked) for each output, as the real TA's
    :func:`taloop.method.scoring.ta_scores` returns them; ``whose``: "teacher" or "student"."""
    cfg = params.ta
    auc = cfg.auc_teacher if whose == "teacher" else cfg.auc_student
    right = [ok or in_blind_spot(params, ex) for ex, ok in zip(examples, correct, strict=True)]
    conf = confidences(cfg.seed, auc, [ex.question for ex in examples], outputs, right)
    out = {m: list(conf) for m in TA_MEASURES}
    if judge:  # a probability, as the real judge's P(yes)
        half = separation(auc) / 2
        out["judge"] = [_NORMAL.cdf(c - half) for c in conf]
    return out


def describe_ta(params: Params) -> str:
    """The TA as the run card, model cards and report name it: the model, or the simulated
    TA with its set quality."""
    cfg = params.ta
    if cfg.backend != "simulated":
        return cfg.model
    shared = ", at chance on the teacher's blind spot" if cfg.blind_spot == "shared" else ""
    aucs = f"teacher replies {cfg.auc_teacher:g}, student outputs {cfg.auc_student:g}"
    return f"simulated TA (set ROC-AUC: {aucs}{shared})"
