"""What bf16 autocast costs against fp32 on this machine, per phase of the pipeline's work, and
what the default pipeline's stages would take under ``student.bf16: true`` here.

    python benchmarks/precision.py --repo COPY [--steps 2] [--items 16] [--out FILE]

Runs in a repository copy where the default pipeline has run (benchmarks/run.py runs it there
with ``--bf16-units``): LoRA-trains the student for ``--steps`` optimiser steps of the warm-up
on its replies, and decodes ``--items`` test questions greedily with the baseline's adapter,
once in fp32 and once under bf16 autocast, the phases timed by taloop.core.profiling. Under bf16
on a CPU without avx512_bf16 a warm-up step took 24x its fp32 time (issue 31), so a whole
stage-by-stage run under ``true`` would take hours: the figure per stage is the fp32 stage's
profile with each phase that runs the student scaled by its measured ratio, labelled as such.
fp32 runs first and so also pays the process's one-off kernel selection, which lowers the
ratio a little; bf16 may end a few greedy outputs at other lengths, which moves the decoding
ratio by their share of the tokens.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taloop.core import logs, paths, precision, profiling
from taloop.method.schedule import settings, split_warmup, to_example
from taloop.params import load_params
from taloop.student.evaluation import predict
from taloop.student.training import train_lora
from taloop.tasks import data

log = logging.getLogger("benchmark.precision")

# The phases of taloop.core.profiling that run the student, and which measured ratio scales each.
TRAINING_PHASES = ("frozen_prefix", "forward", "backward", "optimizer")
GENERATION_PHASES = ("prefill", "decode")


def _timed(phases: tuple[str, ...], run: Any) -> dict[str, float]:
    before = {p: profiling.total(p) for p in phases}
    start = time.perf_counter()
    run()
    out = {p: profiling.total(p) - before[p] for p in phases}
    out["wall"] = time.perf_counter() - start
    return out


def measure(steps: int, items: int) -> dict[str, Any]:
    """Seconds per phase in fp32 and under bf16, and their ratio, for training and decoding;
    in the current directory, a repository copy the pipeline has run in."""
    params = load_params(paths.PARAMS)
    warm, _ = split_warmup(data.responses(acquired=False), params)
    prompts = data.prompts(params)
    examples = [to_example(r, prompts[r["id"]]) for r in warm[: steps * params.warmup.batch_size]]
    test = data.examples(params.eval.split)[:items]
    out: dict[str, Any] = {"steps": steps, "items": items, "training": {}, "generation": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for bf16 in (False, True):
            name = "bf16" if bf16 else "fp32"
            train = dataclasses.replace(settings(params, params.warmup, steps), bf16=bf16)
            out["training"][name] = _timed(
                TRAINING_PHASES,
                lambda t=train, n=name: train_lora(
                    paths.BASE_STUDENT, examples, t, Path(tmp, n), Path(tmp, f"c{n}")
                ),
            )
            forced = params.model_copy(update={"student": params.student.model_copy(update={"bf16": bf16})})
            out["generation"][name] = _timed(
                GENERATION_PHASES,
                lambda p=forced: predict(p, paths.BASE_STUDENT, paths.stage2_model(params.baseline), test,
                                         data.tasks(params)),
            )  # fmt: skip
            log.info("%s: training %s; generation %s", name, out["training"][name], out["generation"][name])
    for kind, phases in (("training", TRAINING_PHASES), ("generation", GENERATION_PHASES)):
        fp32, bf16 = out[kind]["fp32"], out[kind]["bf16"]
        out[kind]["ratio"] = {p: bf16[p] / fp32[p] for p in (*phases, "wall") if fp32[p] > 0}
    out["native_bf16"] = precision.native_bf16()
    return out


def extrapolate(stages: Mapping[str, Any], units: Mapping[str, Any]) -> dict[str, float]:
    """Each stage's seconds with every phase that runs the student scaled by its bf16/fp32
    ratio (the phase's own where measured, else the kind's whole-run ratio)."""
    scale: dict[str, float] = {}
    for kind, phases in (("training", TRAINING_PHASES), ("generation", GENERATION_PHASES)):
        ratios = units[kind]["ratio"]
        scale |= {p: ratios.get(p, ratios["wall"]) for p in phases}
    out = {}
    for stage, result in stages.items():
        phases = (result.get("profile") or {}).get("phases", {})
        extra = sum(phases[p]["seconds"] * (scale[p] - 1) for p in scale if p in phases)
        out[stage] = result["seconds"] + extra
    return out


def main() -> None:
    logs.setup()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, required=True, help="a repository copy the pipeline ran in")
    parser.add_argument("--steps", type=int, default=2, help="warm-up optimiser steps per precision")
    parser.add_argument("--items", type=int, default=16, help="test questions decoded per precision")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    out = args.out.resolve()
    os.chdir(args.repo)
    os.environ.setdefault(profiling.PROFILE_ENV, tempfile.mkdtemp(prefix="taloop-precision-"))
    out.write_text(json.dumps(measure(args.steps, args.items), indent=2) + "\n")


if __name__ == "__main__":
    main()
