"""Keeping a finished study cell in git: its params, metrics and predictions copied from the
experiment into reports/studies/<study>/<cell>/ and committed at once, so a cell outlives the
machine it ran on (an experiment lives in this clone's refs and DVC cache until `dvc exp
push`). A kept cell counts as run: `taloop study run` does not queue it again while its
params are the cell's; delete its folder to run it again."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from taloop.params.profiles import flatten
from taloop.studies import spec

log = logging.getLogger(__name__)

# What the aggregations read: params, every metrics file, per-item predictions (no plots, no
# models, no teacher replies).
KEPT_FILES = ("params.yaml", "metrics", "data/predictions")
KEPT_SUFFIXES = (".json", ".jsonl", ".yaml")
GIT_RETRIES = 5  # the queue's workers write refs beside us: a locked index clears in seconds


def folder(repo: Path, cell: spec.Cell) -> Path:
    return repo / spec.KEPT_DIR / cell.study / cell.name


def is_kept(repo: Path, cell: spec.Cell) -> bool:
    """Whether ``cell`` has a kept folder whose params are the cell's."""
    params_file = folder(repo, cell) / "params.yaml"
    if not params_file.is_file():
        return False
    kept = flatten(yaml.safe_load(params_file.read_text()))
    differ = sorted(k for k, v in cell.params.items() if kept.get(k) != v)
    if differ:
        log.warning("%s: kept with other values of %s: running it again", cell.experiment, ", ".join(differ))
    return not differ


def _git(repo: Path, *args: str) -> None:
    for attempt in range(GIT_RETRIES):
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        if "lock" not in done.stderr or attempt == GIT_RETRIES - 1:
            raise spec.StudyError(f"git {' '.join(args)} failed:\n{done.stderr.strip()}")
        time.sleep(2.0)


def keep(repo: Path, cell: spec.Cell, rev: str) -> Path:
    """Copy experiment ``rev``'s files of ``cell`` into its kept folder and commit that folder."""
    from dvc.api import DVCFileSystem  # here: loading DVC costs a second the other commands do not need

    fs: Any = DVCFileSystem(str(repo), rev=rev)
    dest = folder(repo, cell)
    staging = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    for top in KEPT_FILES:
        paths = [top] if fs.isfile(top) else fs.find(top) if fs.isdir(top) else []
        for path in paths:
            relative = path.lstrip("/")
            if not relative.endswith(KEPT_SUFFIXES) or "/plots/" in relative:
                continue
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(fs.read_bytes(path))
    if not (staging / "params.yaml").is_file():
        raise spec.StudyError(f"experiment {cell.experiment} ({rev[:7]}) has no params.yaml to keep")
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    relative = str(dest.relative_to(repo))
    _git(repo, "add", "--", relative)
    _git(repo, "commit", "-q", "-m", f"study {cell.study}: cell {cell.name} kept (experiment {rev[:7]})",
         "--", relative)  # fmt: skip
    log.info("%s: kept in %s and committed", cell.experiment, relative)
    return dest
