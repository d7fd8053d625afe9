"""train_stage2 <variant>: train one variant on the replies, weights and steps plan_stage2
chose for it (data/stage2/<variant>.json; see schedule.py)."""

from __future__ import annotations

import logging

from accelerate import PartialState

from taloop.core import paths, precision
from taloop.core.io import read_json, write_json
from taloop.core.manifest import build_manifest
from taloop.method.schedule import plan_examples, settings
from taloop.stages._run import run
from taloop.stages._variant import start
from taloop.student.model_card import variant_facts, write_card
from taloop.student.training import train_lora

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    variant, params = start(__doc__, argv)
    plan = read_json(paths.stage2_plan(variant))
    result = train_lora(
        paths.BASE_STUDENT,
        plan_examples(plan),
        settings(params, params.stage2, plan["steps"]),
        paths.stage2_model(variant),
        paths.TRAIN_CURVES / f"stage2_{variant}",
        init_adapter=paths.WARMUP if plan["from_warmup"] else None,
    )
    if not PartialState().is_main_process:
        return
    ran_in = precision.student(params.student.bf16)
    facts = {k: plan[k] for k in ("variant", "teacher_data_fingerprint", "from_warmup", "weight_min",
                                  "weight_max", "signal_plan", "per_task")}  # fmt: skip
    write_json(
        paths.stage2_metrics(variant),
        {
            **facts,
            "teacher_replies": plan["replies_available"],
            "examples_trained": plan["kept"],
            "optimizer_steps_total": plan["total_steps"],
            "student_precision": ran_in.name,
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
