"""warmup: LoRA-train the base student on the first `warmup.fraction` of the teacher replies
(with active acquisition: on what collect_teacher bought, which is that share)."""

from __future__ import annotations

from accelerate import PartialState

from taloop.core import logs, paths, precision
from taloop.core.io import write_json
from taloop.core.manifest import build_manifest
from taloop.method.schedule import epoch_steps, settings, split_warmup, to_example
from taloop.params import load_params
from taloop.stages._run import run
from taloop.student.model_card import CardFacts, base_origin, teacher_facts, write_card
from taloop.student.training import train_lora
from taloop.tasks import data


def main() -> None:
    logs.setup()
    params = load_params(paths.PARAMS)
    warm, _ = split_warmup(data.responses(acquired=False), params)
    steps = epoch_steps(len(warm), params.warmup)  # as schedule.step_budget counts it
    prompts = data.prompts(params)
    examples = [to_example(r, prompts[r["id"]]) for r in warm]
    result = train_lora(
        paths.BASE_STUDENT,
        examples,
        settings(params, params.warmup, steps),
        paths.WARMUP,
        paths.TRAIN_CURVES / "warmup",
    )
    if not PartialState().is_main_process:
        return
    facts = CardFacts(
        name="warmup",
        description="stage 1 of the two-stage variants: the warm-up share of the teacher replies",
        origin=base_origin(paths.BASE_STUDENT),
        teacher=teacher_facts(warm),
        training={"examples_trained": len(examples), "steps": result["steps"]},
    )
    write_card(paths.WARMUP, facts)
    seeds = {"warmup.seed": params.warmup.seed}
    manifest = build_manifest("warmup", seeds, precision.student(params.student.bf16))
    write_json(paths.model_manifest(paths.WARMUP), manifest)


if __name__ == "__main__":
    run(main)
