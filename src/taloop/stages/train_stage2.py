"""train_stage2 <variant>: train one variant on the shared teacher replies (see schedule.py)."""

from __future__ import annotations

import logging

from accelerate import PartialState

from taloop import data, paths, precision
from taloop.calibration import signal_plan
from taloop.io import read_json, read_jsonl, write_json
from taloop.manifest import build_manifest
from taloop.model_card import variant_facts, write_card
from taloop.schedule import plan_variant, settings, teacher_data_fingerprint
from taloop.stages._run import run
from taloop.stages._variant import start
from taloop.training import train_lora

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    variant, params = start(__doc__, argv)
    responses = data.responses()
    signals = {(r["id"], r["sample"]): r for r in read_jsonl(paths.SIGNALS)}
    calibrated = paths.CALIBRATION.is_file()
    how, shares = signal_plan(
        params, params.variants[variant],
        read_json(paths.CALIBRATION) if calibrated else None,
        read_jsonl(paths.CALIBRATION_ROWS) if calibrated else [],
    )  # fmt: skip
    plan = plan_variant(params, variant, responses, signals, data.prompts(params), how)
    log.info("%s: %d of %d replies kept (weights %.2f..%.2f), %d optimiser steps, signals %s",
             variant, plan.kept, plan.replies_available, plan.weight_min, plan.weight_max, plan.steps,
             how)  # fmt: skip
    result = train_lora(
        paths.BASE_STUDENT,
        plan.examples,
        settings(params, params.stage2, plan.steps),
        paths.stage2_model(variant),
        paths.TRAIN_CURVES / f"stage2_{variant}",
        init_adapter=paths.WARMUP if plan.from_warmup else None,
    )
    if not PartialState().is_main_process:
        return
    ran_in = precision.student(params.student.bf16)
    write_json(
        paths.stage2_metrics(variant),
        {
            "variant": variant,
            "teacher_replies": plan.replies_available,
            "teacher_data_fingerprint": teacher_data_fingerprint(responses),
            "examples_trained": plan.kept,
            "from_warmup": plan.from_warmup,
            "weight_min": plan.weight_min,
            "weight_max": plan.weight_max,
            "signal_plan": None
            if how is None
            else {
                "measure": how.measure,
                "signs": how.signs,
                "combine": how.combine,
                "validation_wrong_loss_share_by_combine": shares,
            },
            "optimizer_steps_total": plan.total_steps,
            "student_precision": ran_in.name,
            "per_task": plan.per_task,
            **result,
        },
    )
    write_card(paths.stage2_model(variant), variant_facts(variant, params.variants[variant].description))
    seeds = {"stage2.seed": params.stage2.seed}
    write_json(
        paths.model_manifest(paths.stage2_model(variant)),
        build_manifest(f"train_stage2 {variant}", seeds, ran_in),
    )


if __name__ == "__main__":
    run(main)
