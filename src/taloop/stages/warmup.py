"""warmup: LoRA-train the base student on the first `warmup.fraction` of the teacher replies
(with active acquisition: on what collect_teacher bought, which is that share)."""

from __future__ import annotations

from taloop import data, logs, paths
from taloop.config import load_params
from taloop.schedule import epoch_steps, settings, split_warmup, to_example
from taloop.training import train_lora


def main() -> None:
    logs.setup()
    params = load_params(paths.PARAMS)
    warm, _ = split_warmup(data.responses(acquired=False), params)
    steps = epoch_steps(len(warm), params.warmup)  # as schedule.step_budget counts it
    prompts = data.prompts(params)
    examples = [to_example(r, prompts[r["id"]]) for r in warm]
    train_lora(
        paths.BASE_STUDENT,
        examples,
        settings(params, params.warmup, steps),
        paths.WARMUP,
        paths.TRAIN_CURVES / "warmup",
    )


if __name__ == "__main__":
    main()
