"""sample_student: the warmed-up student's K samples, their self-consistency and majority
output, on the calibration questions (validation) and the stage-2 questions; the base
student's on every bought question when signals.base_student asks for them. No ta.* param
reaches this stage, so a TA change reruns only the TA's scoring (calibrate_signals,
score_signals) and what reads it."""

from __future__ import annotations

import logging

from taloop.core import logs, paths, precision
from taloop.core.io import read_jsonl, write_json, write_jsonl
from taloop.core.profiling import phase
from taloop.method.sampling import calibration_questions, sample_students, student_outputs
from taloop.method.schedule import split_warmup
from taloop.params import load_params
from taloop.stages._run import run
from taloop.tasks import data

log = logging.getLogger(__name__)


def _rows(outputs: dict[str, dict]) -> list[dict]:
    return [{"id": i, **cols} for i, cols in outputs.items()]


def main() -> None:
    logs.setup()
    params = load_params(paths.PARAMS)
    tasks = data.tasks(params)
    questions = calibration_questions(params, data.examples("val"))
    calibration = student_outputs(params, paths.BASE_STUDENT, paths.WARMUP, questions, tasks)
    responses = data.responses()
    _, rest = split_warmup(responses, params)
    scope = {"stage2": rest, **({"all": responses} if params.signals.base_student else {})}
    # acquire already sampled the warmed-up student on the questions it bought
    sampled = {r["id"]: r for r in read_jsonl(paths.ACQUISITION_SCORES)}
    examples = {ex.id: ex for ex in data.examples("train")}
    students = sample_students(params, paths.BASE_STUDENT, paths.WARMUP, scope, examples, tasks, sampled)
    with phase("write_outputs"):
        write_jsonl(paths.SAMPLES_CALIBRATION, _rows(calibration))
        write_jsonl(paths.SAMPLES_STAGE2, _rows(students[""]))
        write_jsonl(paths.SAMPLES_BASE, _rows(students.get("base_", {})))
        write_json(paths.SAMPLES_METRICS, {
            "questions": {"calibration": len(calibration), "stage2": len(students[""]),
                          "base": len(students.get("base_", {}))},
            "student_precision": precision.student(params.student.bf16).name,
        })  # fmt: skip
    log.info("student samples: %d calibration, %d stage-2, %d base-student questions",
             len(calibration), len(students[""]), len(students.get("base_", {})))  # fmt: skip


if __name__ == "__main__":
    run(main)
