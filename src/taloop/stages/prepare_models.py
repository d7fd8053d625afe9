"""prepare_models: resolve student and TA (GGUF package, hub id, path, tiny-random) and save
each once as safetensors + tokenizer, so later stages load in seconds."""

from __future__ import annotations

from taloop import logs, paths
from taloop.config import load_params
from taloop.models import materialize
from taloop.stages._run import run


def main() -> None:
    logs.setup()
    params = load_params(paths.PARAMS)
    materialize(params.student.model, paths.BASE_STUDENT)
    materialize(params.ta.model, paths.BASE_TA)


if __name__ == "__main__":
    run(main)
