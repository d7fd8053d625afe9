"""The report's figures, drawn from the diagnostics records (matplotlib, no display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from taloop.reporting.diagnostics import Records


def save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # No "Software" chunk: it carries a URL, and the report must not contain any.
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def accuracy(records: Records, baseline: str) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(records) + 1.2))
    names = [r["variant"] for r in records]
    acc = [100 * r["accuracy"] for r in records]
    err = [
        [100 * (r["accuracy"] - r["ci_low"]) for r in records],
        [100 * (r["ci_high"] - r["accuracy"]) for r in records],
    ]
    colors = ["tab:gray" if n == baseline else "tab:blue" for n in names]
    ax.barh(names, acc, xerr=err, color=colors, capsize=4)
    base = next(r for r in records if r["variant"] == baseline)
    ax.axvline(100 * base["accuracy"], color="tab:gray", linestyle="--", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (%), 95% bootstrap CI")
    ax.set_xlim(0, 100)
    return fig


def roc(curves: Mapping[str, Mapping[str, Records]]) -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, (whose, by_signal) in zip(axes, curves.items(), strict=True):
        ax.plot([0, 1], [0, 1], color="lightgray", linestyle=":")
        drawn = {name: points for name, points in by_signal.items() if points}
        for name, points in drawn.items():
            ax.plot(
                [p["fpr"] for p in points], [p["tpr"] for p in points], label=name, drawstyle="steps-post"
            )
        ax.set_title(f"flagging wrong {whose} answers")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        if drawn:
            ax.legend(fontsize=8, loc="lower right")
        else:
            ax.text(0.5, 0.5, "all right or all wrong: no curve", ha="center")
    return fig


def confidence_histogram(rows: Sequence[Mapping[str, Any]], column: str) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    right = [r[column] for r in rows if r["teacher_correct"]]
    wrong = [r[column] for r in rows if not r["teacher_correct"]]
    bins = np.histogram_bin_edges(right + wrong, bins=20)
    ax.hist(right, bins=bins, alpha=0.6, label=f"teacher correct (n={len(right)})", color="tab:green")
    ax.hist(wrong, bins=bins, alpha=0.6, label=f"teacher wrong (n={len(wrong)})", color="tab:red")
    ax.set_xlabel(f"TA {column.removeprefix('ta_teacher_')} of the teacher's reply")
    ax.set_ylabel("replies")
    ax.legend(fontsize=8)
    return fig


def self_consistency(records: Records) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = range(len(records))
    ax.bar(xs, [100 * r["student_accuracy"] for r in records], color="tab:purple")
    ax.set_xticks(xs, [f"{r['sc']:.2f}" for r in records])
    for i, r in enumerate(records):
        ax.text(i, 100 * r["student_accuracy"] + 1, f"n={r['count']}", ha="center", fontsize=8)
    ax.set_xlabel("student self-consistency (share of K samples agreeing with the majority)")
    ax.set_ylabel("majority answer correct (%)")
    ax.set_ylim(0, 105)
    return fig


def reliability(records: Records, measure: str) -> Figure:
    # The measures are log-probabilities and differences of them, not probabilities: the
    # plot shows whether the share correct rises with the measure, not a calibration diagonal.
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([r["confidence"] for r in records], [r["accuracy"] for r in records], marker="o", label="TA")
    ax.set_xlabel(f"TA {measure} of the teacher's reply (mean of an equal-count bin)")
    ax.set_ylabel("teacher replies correct")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    return fig


def training(curves: Mapping[str, Records]) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for run, points in curves.items():
        ax.plot([p["step"] for p in points], [p["loss"] for p in points], label=run, linewidth=1)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss (weighted NLL)")
    if curves:
        ax.legend(fontsize=8)
    return fig


def cost(records: Records) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    tasks = [r["task"] for r in records]
    inp = [r["input_usd"] for r in records]
    ax.bar(tasks, inp, label="prompt tokens", color="tab:olive")
    ax.bar(
        tasks, [r["output_usd"] for r in records], bottom=inp, label="completion tokens", color="tab:orange"
    )
    ax.set_ylabel("teacher USD")
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(fontsize=8)
    return fig


def lines(by_variant: Mapping[str, Sequence[tuple[float, float]]], xlabel: str) -> Figure:
    """One line per variant: test accuracy against an experiment parameter."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for variant, points in by_variant.items():
        ax.plot([x for x, _ in points], [100 * y for _, y in points], marker="o", label=variant)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    if by_variant:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no experiment sets this parameter", ha="center", transform=ax.transAxes)
    return fig
