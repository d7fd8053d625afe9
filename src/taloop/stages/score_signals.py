"""score_signals: per stage-2 reply, the TA's confidences in the teacher's reply and in the
student's outputs (sample_student's samples, with their self-consistency)."""

from __future__ import annotations

import gc
import logging

from taloop.core import logs, paths
from taloop.core.io import read_json, read_jsonl, write_json, write_jsonl
from taloop.core.profiling import phase
from taloop.method.sampling import read_outputs
from taloop.method.schedule import split_warmup
from taloop.method.scoring import score, signal_metrics, ta_measure_name
from taloop.params import load_params
from taloop.stages._run import run
from taloop.tasks import data

log = logging.getLogger(__name__)


def main() -> None:
    logs.setup()
    params = load_params(paths.PARAMS)
    responses = data.responses()
    _, rest = split_warmup(responses, params)
    scope = {"stage2": rest}
    if params.signals.base_student:
        scope["all"] = responses
    examples = {ex.id: ex for ex in data.examples("train")}
    students = {
        "": read_outputs(paths.SAMPLES_STAGE2),
        "base_": read_outputs(paths.SAMPLES_BASE),
    }
    # acquire scored the student's outputs on the questions it bought with the same TA
    sampled = {r["id"]: r for r in read_jsonl(paths.ACQUISITION_SCORES)}
    rows = score(params, paths.BASE_TA, scope, examples, students, sampled)
    gc.collect()
    # The summary AUCs follow the measure the variants act on (calibrated on validation).
    with phase("signal_metrics"):  # bootstrap CIs for every signal
        metrics = signal_metrics(rows, ta_measure_name(params, read_json(paths.CALIBRATION)))
    with phase("write_outputs"):
        write_jsonl(paths.SIGNALS, rows)
        write_json(paths.SIGNAL_METRICS, metrics)
    log.info(
        "AUC of TA-on-teacher (%s, pooled within task) at flagging wrong teacher replies: %s",
        metrics["ta_summary_measure"],
        metrics["auc_ta_teacher_flags_wrong_teacher"],
    )


if __name__ == "__main__":
    run(main)
