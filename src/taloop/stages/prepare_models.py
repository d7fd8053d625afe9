"""prepare_models: resolve student and TA (GGUF package, hub id, path, tiny-random) and save
each once as safetensors + tokenizer, so later stages load in seconds."""

from __future__ import annotations

from taloop.core import logs, paths
from taloop.params import load_params
from taloop.stages._run import run
from taloop.student.models import ModelNotFoundError, materialize


def main() -> None:
    logs.setup()
    params = load_params(paths.PARAMS)
    for key, name, out in (
        ("student.model", params.student.model, paths.BASE_STUDENT),
        ("ta.model", params.ta.model, paths.BASE_TA),
    ):
        try:
            materialize(name, out)
        except ModelNotFoundError as err:
            raise ModelNotFoundError(f"{key}: {err}") from err


if __name__ == "__main__":
    run(main)
