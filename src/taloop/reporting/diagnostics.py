"""Plot data computed from the signals, replies and training logs. The same records feed the
report's figures and the files under metrics/plots/ that `dvc plots` reads."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from taloop.method.scoring import FLAG_SIGNALS
from taloop.params.schema import PriceConfig

Records = list[dict[str, Any]]


def roc_records(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Records]]:
    """ROC of every signal at flagging wrong outputs (low confidence = flagged), grouped by
    whose answers it judges: {"teacher"|"student": {signal: [{fpr, tpr}]}}. The list is empty
    when the target has a single class (no curve exists), so `dvc plots` still finds the file."""
    out: dict[str, dict[str, Records]] = {"teacher": {}, "student": {}}
    for name, (column, target) in FLAG_SIGNALS.items():
        whose = target.removesuffix("_correct")
        wrong = np.array([not r[target] for r in rows], dtype=int)
        if wrong.size == 0 or wrong.min() == wrong.max():
            out[whose][name] = []
            continue
        fpr, tpr, _ = roc_curve(wrong, -np.array([r[column] for r in rows], dtype=float))
        out[whose][name] = [{"fpr": float(f), "tpr": float(t)} for f, t in zip(fpr, tpr, strict=True)]
    return out


def reliability_records(
    rows: Sequence[Mapping[str, Any]],
    column: str,
    target: str = "teacher_correct",
    bins: int = 8,
) -> Records:
    """Mean of a TA measure against the observed share correct, in equal-count bins (the
    measures bunch up, where equal-width bins would hold nearly everything)."""
    ordered = sorted(rows, key=lambda r: r[column])
    chunks = [c for c in np.array_split(np.arange(len(ordered)), min(bins, len(ordered))) if c.size]
    return [
        {
            "bin": b,
            "confidence": float(np.mean([ordered[i][column] for i in chunk])),
            "accuracy": float(np.mean([bool(ordered[i][target]) for i in chunk])),
            "count": int(chunk.size),
        }
        for b, chunk in enumerate(chunks)
    ]


def self_consistency_records(rows: Sequence[Mapping[str, Any]]) -> Records:
    """Student accuracy (majority answer vs gold) at each self-consistency level."""
    groups: dict[float, list[bool]] = defaultdict(list)
    for r in rows:
        groups[float(r["sc"])].append(bool(r["student_correct"]))
    return [
        {"sc": sc, "student_accuracy": sum(v) / len(v), "count": len(v)} for sc, v in sorted(groups.items())
    ]


def cost_records(responses: Sequence[Mapping[str, Any]], price: PriceConfig) -> Records:
    """USD of the teacher data per task, split into prompt and completion tokens."""
    tokens: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in responses:
        tokens[r["task"]][0] += r["input_tokens"]
        tokens[r["task"]][1] += r["output_tokens"]
    return [
        {
            "task": task,
            "input_usd": t_in * price.input_per_mtok / 1e6,
            "output_usd": t_out * price.output_per_mtok / 1e6,
        }
        for task, (t_in, t_out) in sorted(tokens.items())
    ]


def accuracy_records(variants: Mapping[str, Mapping[str, Any]]) -> Records:
    return [
        {"variant": name, "accuracy": v["accuracy"], "ci_low": v["ci_low"], "ci_high": v["ci_high"]}
        for name, v in variants.items()
    ]


def training_curves(train_dir: Path, runs: Sequence[str]) -> dict[str, Records]:
    """Per-step training loss of each run, from the TSV files dvclive wrote."""
    curves = {}
    for run in runs:
        path = train_dir / run / "plots" / "metrics" / "loss.tsv"
        if path.is_file():
            with path.open(newline="") as fh:
                curves[run] = [
                    {"step": int(r["step"]), "loss": float(r["loss"])}
                    for r in csv.DictReader(fh, delimiter="\t")
                ]
    return curves
