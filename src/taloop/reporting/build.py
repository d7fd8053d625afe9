"""The report stage end to end: tracked files in; summary, plot data, figures and documents out."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from taloop.core import paths
from taloop.core.io import atomic_write_text, read_json, read_jsonl, write_json
from taloop.method.scoring import ta_measure_name
from taloop.params.profiles import flatten
from taloop.params.schema import Params
from taloop.reporting import diagnostics, figures, ta_map
from taloop.reporting.document import markdown, to_html
from taloop.reporting.summary import build_summary, headline
from taloop.tasks import data
from taloop.teachers.collect import total_teacher_metrics

FLAGGED_PER_TASK = 2


def flagged_replies(
    rows: Sequence[Mapping[str, Any]], column: str, per_task: int = FLAGGED_PER_TASK
) -> list[dict[str, Any]]:
    """The teacher replies the TA trusted least (by ``column``) in each task, with question and
    gold answer (per task, because TA confidence levels differ more between tasks than within one)."""
    by_id = {ex.id: ex for ex in data.examples("train")}
    lowest = [
        r
        for task in sorted({r["task"] for r in rows})
        for r in sorted((r for r in rows if r["task"] == task), key=lambda r: r[column])[:per_task]
    ]
    return [
        {
            "id": r["id"],
            "task": r["task"],
            "question": by_id[r["id"]].question,
            "teacher_answer": r["teacher_answer"],
            "gold": by_id[r["id"]].gold,
            "ta_confidence": r[column],
            "teacher_correct": r["teacher_correct"],
        }
        for r in lowest
    ]


def _write_plot_data(name: str, records: list[dict[str, Any]]) -> None:
    write_json(paths.PLOT_DATA / f"{name}.json", records)


def build(params: Params) -> dict[str, Any]:
    variants = [params.baseline, *params.compare]
    evals = {v: read_json(paths.eval_metrics(v)) for v in variants}
    acquisition = read_json(paths.ACQUISITION_METRICS)
    teacher = total_teacher_metrics(read_json(paths.TEACHER_METRICS), acquisition.get("teacher"))
    calibration = read_json(paths.CALIBRATION)
    stage2 = {v: read_json(paths.stage2_metrics(v)) for v in variants}
    summary = build_summary(
        params, evals, teacher, read_json(paths.SIGNAL_METRICS), acquisition, calibration, stage2
    )
    published = read_json(paths.TA_MAP) if paths.TA_MAP.is_file() else None
    summary["ta_map"] = ta_map.predict(published, flatten(params.model_dump(mode="json")), calibration)
    write_json(paths.SUMMARY, summary)
    # not write_json: its sorted keys would not keep the baseline first
    atomic_write_text(paths.HEADLINE, json.dumps(headline(summary), indent=2) + "\n")

    measure = ta_measure_name(params, calibration)
    column = f"ta_teacher_{measure}"
    rows = [r for r in read_jsonl(paths.SIGNALS) if "sc" in r]
    acc = diagnostics.accuracy_records(summary["variants"])
    rocs = diagnostics.roc_records(rows)
    reliability = diagnostics.reliability_records(rows, column)
    sc = diagnostics.self_consistency_records(rows)
    cost = diagnostics.cost_records(data.responses(), params.teacher.price)
    curves = diagnostics.training_curves(paths.TRAIN_CURVES, ["warmup", *(f"stage2_{v}" for v in variants)])

    # Stale files from an earlier run (e.g. a signal that now has one class) must not linger.
    shutil.rmtree(paths.PLOT_DATA, ignore_errors=True)
    _write_plot_data("accuracy", acc)
    _write_plot_data("reliability", reliability)
    _write_plot_data("self_consistency", sc)
    _write_plot_data("cost", cost)
    for whose, by_signal in rocs.items():
        for signal, points in by_signal.items():
            _write_plot_data(f"roc_wrong_{whose}/{signal}", points)

    shutil.rmtree(paths.FIGURES, ignore_errors=True)
    drawn = {
        "accuracy": figures.accuracy(acc, params.baseline),
        "roc": figures.roc(rocs),
        "ta_confidence": figures.confidence_histogram(rows, column),
        "self_consistency": figures.self_consistency(sc),
        "reliability": figures.reliability(reliability, measure),
        "training": figures.training(curves),
        "cost": figures.cost(cost),
    }
    for name, fig in drawn.items():
        figures.save(fig, paths.FIGURES / f"{name}.png")
    md_text = markdown(summary, flagged_replies(rows, column), list(drawn))
    atomic_write_text(paths.REPORT_MD, md_text)
    atomic_write_text(paths.REPORT_HTML, to_html(md_text, paths.REPORTS))
    return summary
