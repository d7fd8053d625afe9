"""evaluate <variant>: greedy decoding on `eval.split` (test; val while tuning); accuracy, CI,
paired test vs baseline."""

from __future__ import annotations

import logging

from taloop.core import paths, precision
from taloop.core.io import read_json, read_jsonl, write_json, write_jsonl
from taloop.core.profiling import phase
from taloop.stages._run import run
from taloop.stages._variant import start
from taloop.student.evaluation import predict, summarise
from taloop.student.model_card import release, variant_facts
from taloop.tasks import data

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    variant, params = start(__doc__, argv)
    baseline_rows = None
    if variant != params.baseline:
        ours = read_json(paths.stage2_metrics(variant))["teacher_data_fingerprint"]
        theirs = read_json(paths.stage2_metrics(params.baseline))["teacher_data_fingerprint"]
        if ours != theirs:
            raise SystemExit(f"{variant} and {params.baseline} were trained on different teacher data")
        baseline_rows = read_jsonl(paths.predictions(params.baseline))
    questions = data.examples(params.eval.split)
    rows = predict(params, paths.BASE_STUDENT, paths.stage2_model(variant), questions, data.tasks(params))
    with phase("summarise"):  # bootstrap CIs and the paired test
        summary = summarise(params, variant, rows, baseline_rows)
        summary["student_precision"] = precision.student(params.student.bf16).name
    with phase("write_outputs"):
        write_jsonl(paths.predictions(variant), rows)
        write_json(paths.eval_metrics(variant), summary)
        facts = variant_facts(variant, params.variants[variant].description, summary)
        release(paths.stage2_model(variant), paths.release_model(variant), facts)
    log.info(
        "%s: accuracy %.3f (95%% CI %.3f-%.3f)",
        variant,
        summary["accuracy"],
        summary["ci_low"],
        summary["ci_high"],
    )


if __name__ == "__main__":
    run(main)
