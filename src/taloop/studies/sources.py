"""Where a study cell's files come from: a kept directory (reports/studies/<study>/<cell>/, the
cells run before studies were DVC experiments) or a DVC experiment (its git commit for
params.yaml, DVC's cache for metrics and predictions, through ``dvc.api``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml


class CellFiles(Protocol):
    name: str

    def text(self, path: str) -> str | None:
        """The file's text, None when the cell has no such file."""


@dataclass(frozen=True)
class KeptCell:
    name: str
    root: Path

    def text(self, path: str) -> str | None:
        file = self.root / path
        return file.read_text() if file.is_file() else None


class ExperimentCell:
    """A cell's files at its experiment's commit, through one DVCFileSystem (opening the
    repository once per cell, not once per file)."""

    def __init__(self, name: str, repo: Path, rev: str) -> None:
        self.name, self.repo, self.rev = name, repo, rev  # rev: the experiment's commit
        self._fs: Any = None

    def text(self, path: str) -> str | None:
        if self._fs is None:
            from dvc.api import DVCFileSystem  # here: loading DVC costs a second kept cells do not need

            self._fs = DVCFileSystem(str(self.repo), rev=self.rev)
        return self._fs.read_text(path) if self._fs.isfile(path) else None


def _text(cell: CellFiles, path: str) -> str:
    text = cell.text(path)
    if text is None:
        raise FileNotFoundError(f"study cell {cell.name}: no {path}")
    return text


def read_json(cell: CellFiles, path: str) -> Any:
    return json.loads(_text(cell, path))


def read_jsonl(cell: CellFiles, path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _text(cell, path).splitlines() if line.strip()]


def params(cell: CellFiles) -> dict[str, Any]:
    return yaml.safe_load(_text(cell, "params.yaml"))


def load_run(cell: CellFiles) -> dict[str, Any]:
    """What the effect-size aggregation reads of one cell: params, per-item correctness of
    every variant (sorted by item id), accuracies and the teacher's spend."""
    from taloop.params.profiles import flatten

    p = params(cell)
    variants = [p["baseline"], *p["compare"]]
    correct = {}
    for v in variants:
        rows = sorted(read_jsonl(cell, f"data/predictions/{v}.jsonl"), key=lambda r: r["id"])
        correct[v] = np.array([r["correct"] for r in rows], dtype=float)
        tasks = np.array([r["task"] for r in rows])
        ids = np.array([r["id"] for r in rows])
    usd = read_json(cell, "metrics/teacher.json")["usd_value"]
    acquisition = cell.text("metrics/acquisition.json")
    if acquisition is not None:
        usd += json.loads(acquisition).get("teacher", {}).get("usd_value", 0.0)
    return {
        "name": cell.name,
        "split": p.get("eval", {}).get("split", "test"),
        "params": flatten(p),
        "seed": p["stage2"]["seed"],
        "seeds": {k: p[k]["seed"] for k in ("warmup", "signals", "stage2", "data", "teacher", "eval")},
        "budget": p["budget"]["queries"],
        "acquisition": p.get("acquisition", {}).get("mode", "random"),
        "teacher_usd": usd,
        "baseline": p["baseline"],
        "accuracy": {v: read_json(cell, f"metrics/eval/{v}.json")["accuracy"] for v in variants},
        "correct": correct,
        "tasks": tasks,
        "ids": ids,
    }


def headroom_cell(cell: CellFiles) -> dict[str, Any]:
    """One headroom cell (ft against oracle_one_stage) from a pipeline cell's metrics, in the
    form the kept headroom cells (reports/studies/headroom/<cell>.json) have."""
    p = params(cell)
    variants = (p["baseline"], *p["compare"])
    teacher = read_json(cell, "metrics/teacher.json")
    evals = {v: read_json(cell, f"metrics/eval/{v}.json") for v in variants}
    trained = {v: read_json(cell, f"metrics/stage2/{v}.json") for v in variants}
    oracle, ft = evals["oracle_one_stage"], evals[p["baseline"]]
    return {
        "cell": cell.name,
        "error_mode": p["teacher"]["error_mode"],
        "error_rate": p["teacher"]["error_rate"],
        "budget": p["budget"]["queries"],
        "seed": p["stage2"]["seed"],
        "teacher_accuracy": teacher["diagnostic_teacher_accuracy_vs_gold"],
        "replies": {v: trained[v]["examples_trained"] for v in variants},
        "optimizer_steps": {v: trained[v]["optimizer_steps_total"] for v in variants},
        "accuracy": {v: evals[v]["accuracy"] for v in variants},
        "per_task": {v: evals[v]["per_task"] for v in variants},
        "n": ft["n"],
        "gain": oracle["accuracy"] - ft["accuracy"],
        "vs_ft": oracle["vs_baseline"],
    }
