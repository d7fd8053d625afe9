"""plan_stage2: for the baseline and every compared variant, the teacher replies it trains
stage 2 on, their weights and its optimiser steps (data/stage2/<variant>.json).

Apart from training so that a variant's training reruns only when its own plan changes: a
TA change rewrites the signals, but the plans of the variants that read no signal (ft,
two_stage, oracle) come out byte-identical, and DVC restores their training."""

from __future__ import annotations

import logging

from taloop.core import logs, paths
from taloop.core.io import read_json, read_jsonl, write_json
from taloop.core.profiling import phase
from taloop.method.calibration import signal_plan
from taloop.method.schedule import plan_record, plan_variant
from taloop.method.simulated_ta import describe_ta
from taloop.params import load_params
from taloop.stages._run import run
from taloop.tasks import data

log = logging.getLogger(__name__)


def main() -> None:
    logs.setup()
    params = load_params(paths.PARAMS)
    responses = data.responses()
    signals = {(r["id"], r["sample"]): r for r in read_jsonl(paths.SIGNALS)}
    calibration = read_json(paths.CALIBRATION) if paths.CALIBRATION.is_file() else None
    calibration_rows = read_jsonl(paths.CALIBRATION_ROWS) if calibration else []
    prompts = data.prompts(params)
    for variant in dict.fromkeys([params.baseline, *params.compare]):
        with phase("plan_variant"):
            how, shares = signal_plan(params, params.variants[variant], calibration, calibration_rows)
            plan = plan_variant(params, variant, responses, signals, prompts, how)
        log.info("%s: %d of %d replies kept (weights %.2f..%.2f), %d optimiser steps, signals %s",
                 variant, plan.kept, plan.replies_available, plan.weight_min, plan.weight_max, plan.steps,
                 how)  # fmt: skip
        record = plan_record(variant, plan, responses, how, shares, describe_ta(params))
        write_json(paths.stage2_plan(variant), record)


if __name__ == "__main__":
    run(main)
