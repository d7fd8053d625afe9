"""prepare_data: generate/load each task and write disjoint train/val/test splits."""

from __future__ import annotations

import logging

from taloop.core import logs, paths
from taloop.core.io import write_json, write_jsonl
from taloop.core.manifest import build_manifest
from taloop.core.profiling import phase
from taloop.params import load_params
from taloop.stages._run import run
from taloop.tasks.splits import make_splits

log = logging.getLogger(__name__)


def main() -> None:
    logs.setup()
    params = load_params(paths.PARAMS)
    with phase("make_splits"):
        splits = make_splits(params.data)
    with phase("write_outputs"):
        for split, examples in splits.items():
            write_jsonl(paths.split_file(split), (ex.to_row() for ex in examples))
            log.info("%s: %d examples", split, len(examples))
        write_json(
            paths.PREPARED / "manifest.json", build_manifest("prepare_data", {"data.seed": params.data.seed})
        )


if __name__ == "__main__":
    run(main)
