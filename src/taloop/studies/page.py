"""The published studies as one self-contained HTML page with their figures.

`taloop study report <name>` rewrites reports/studies/index.html from what exists there: each
study's ``<name>.json`` and ``<name>.md``, each figure as inline SVG (no
file or network fetch, so the page reads the same anywhere) above the study's markdown
tables. Figures: the oracle's gain over ft against teacher error rate, per error mode and
budget (headroom); accuracy per variant and the recovery ratio against error rate, with their
intervals (error-rate map); accuracy against teacher budget (budget curve); ta_loop's gain
against the TA's AUC per arm, with the two_stage and oracle levels (TA quality).
"""

from __future__ import annotations

import html
import io
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

log = logging.getLogger("figures")
STUDIES = Path(__file__).resolve().parents[1] / "reports/studies"


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog: the SVG sits inside HTML


def headroom_figure(summary: dict[str, Any]) -> str:
    """The oracle's gain over ft (points) against error rate: one line per (mode, budget)
    through the means, each seed's gain as a dot (two seeds give t-intervals too wide to draw)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    lines: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in summary["settings"]:
        lines[(row["error_mode"], row["budget"])].append(row)
    for (mode, budget), rows in sorted(lines.items()):
        rows.sort(key=lambda r: r["error_rate"])
        rates = [r["error_rate"] for r in rows]
        style = "-" if mode == "systematic" else "--"
        gains = [100 * r["gain"]["mean"] for r in rows]
        (line,) = ax.plot(rates, gains, marker="o", linestyle=style, label=f"{mode}, {budget} replies")
        for r in rows:
            seeds = [100 * s["gain"] for s in r["per_seed"]]
            ax.scatter([r["error_rate"]] * len(seeds), seeds, color=line.get_color(), alpha=0.4, s=14)
    ax.axhline(5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("teacher error rate")
    ax.set_ylabel("oracle - ft, accuracy points (validation)")
    ax.set_title("Headroom: what dropping the wrong replies is worth")
    ax.legend(fontsize=8)
    return _svg(fig)


RECOVERY_EDGE = 3.0  # the recovery axis reaches at least this far, further for wider intervals


def _t_bars(points: list[tuple[float, list[float | None]]]) -> tuple[list[float], list[list[float]]]:
    """Accuracies in % and their error bars from (mean, [low, high]) pairs; no bar where the
    interval is None (one seed)."""
    below = [100 * (m - (lo if lo is not None else m)) for m, (lo, _) in points]
    above = [100 * ((hi if hi is not None else m) - m) for m, (_, hi) in points]
    return [100 * m for m, _ in points], [below, above]


def map_figure(rows: list[dict[str, Any]]) -> str:
    """Accuracy per variant against error rate with seed t-intervals, and the recovery ratio
    with its joint-bootstrap interval."""
    fig, (acc, rec) = plt.subplots(1, 2, figsize=(11, 4.0))
    rates = [r["error_rate"] for r in rows]
    for v in dict.fromkeys(v for r in rows for v in r["mean_accuracy"]):
        at = [r for r in rows if v in r["mean_accuracy"]]
        y, bars = _t_bars([(r["mean_accuracy"][v], r["accuracy_t_ci"][v]) for r in at])
        acc.errorbar([r["error_rate"] for r in at], y, yerr=bars, marker="o", capsize=3, label=v)
    acc.set_xlabel("teacher error rate")
    acc.set_ylabel("test accuracy, % (95% seed t-interval)")
    acc.legend(fontsize=8)
    with_rec = [r for r in rows if r["recovery"] and r["recovery"]["ratio"] is not None]
    if with_rec:
        ratios = [r["recovery"]["ratio"] for r in with_rec]
        bounds = [(r["recovery"]["ci_low"], r["recovery"]["ci_high"]) for r in with_rec]
        finite = [abs(x) for x in ratios + [b for pair in bounds for b in pair] if x is not None]
        edge = 1.05 * max([RECOVERY_EDGE, *finite])
        # An unbounded side (None) is drawn to the edge of the plot; max(0, ...) keeps a point
        # that falls outside its own interval from giving matplotlib a negative bar.
        below = [
            max(0.0, x - (-edge if lo is None else lo)) for x, (lo, _) in zip(ratios, bounds, strict=True)
        ]
        above = [
            max(0.0, (edge if hi is None else hi) - x) for x, (_, hi) in zip(ratios, bounds, strict=True)
        ]
        rec.errorbar([r["error_rate"] for r in with_rec], ratios, yerr=[below, above], marker="o", capsize=3)
        rec.set_ylim(-edge, edge)
    rec.axhline(0, color="grey", linewidth=0.8)
    rec.axhline(1, color="grey", linewidth=0.8, linestyle=":")
    rec.set_xticks(rates)
    rec.set_xlabel("teacher error rate")
    rec.set_ylabel("recovery (ta_loop - ft) / (oracle - ft)\n(95% CI; to the plot's edge: unbounded)")
    return _svg(fig)


def budget_figure(curve: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for v, points in curve["curves"].items():
        if len(points) > 1:
            y, bars = _t_bars([(p["accuracy"], p["accuracy_t_ci"]) for p in points])
            ax.errorbar([p["budget"] for p in points], y, yerr=bars, marker="o", capsize=3, label=v)
    ax.set_xlabel("teacher replies bought")
    ax.set_ylabel("test accuracy, % (95% seed t-interval)")
    ax.set_title(f"Budget curve (seeds {', '.join(map(str, curve['seeds']))})")
    ax.legend(fontsize=8)
    return _svg(fig)


def ta_quality_figure(result: dict[str, Any]) -> str:
    """ta_loop - baseline against the TA's AUC per arm, with its 95% band; two_stage's and the
    oracle's gains over the baseline as levels; blind-spot and real-TA cells as points."""
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    base = result["baseline"]
    levels: dict[str, list[float]] = defaultdict(list)
    for arm, entry in result["arms"].items():
        curve = entry["curve"]
        aucs = [r["auc"] for r in curve]
        gain = [100 * r["vs_baseline"]["diff"] for r in curve]
        low = [100 * r["vs_baseline"]["diff_ci"][0] for r in curve]
        high = [100 * r["vs_baseline"]["diff_ci"][1] for r in curve]
        (line,) = ax.plot(aucs, gain, marker="o", label=f"ta_loop, {arm}")
        ax.fill_between(aucs, low, high, color=line.get_color(), alpha=0.15)
        for r in curve:
            acc = r["mean_accuracy"]
            for v in ("two_stage", "oracle"):
                if v in acc:
                    levels[v].append(100 * (acc[v] - acc[base]))
        for kind, marker in (("blind_spot", "s"), ("real", "D")):
            for r in entry[kind]:
                lo, hi = r["vs_baseline"]["diff_ci"]
                d = r["vs_baseline"]["diff"]
                what = "shared blind spot" if kind == "blind_spot" else r["ta"]
                bar = [[100 * (d - lo)], [100 * (hi - d)]]
                ax.errorbar([r["auc"]], [100 * d], yerr=bar, marker=marker, color=line.get_color(), capsize=3,
                            linestyle="none", label=f"{arm}: {what}")  # fmt: skip
    for v, style in (("two_stage", "--"), ("oracle", ":")):
        if levels[v]:
            ax.axhline(sum(levels[v]) / len(levels[v]), color="grey", linestyle=style, label=f"{v} - {base}")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("TA ROC-AUC at telling wrong outputs from right (teacher and student sides)")
    ax.set_ylabel(f"accuracy points over {base}\n(band: 95% interval, seeds and items)")
    ax.set_title("How good must the TA be?")
    ax.legend(fontsize=7)
    return _svg(fig)


def _section(title: str, figures: list[str], markdown: Path) -> str:
    body = "".join(f"<figure>{f}</figure>" for f in figures)
    if markdown.is_file():
        body += f"<pre>{html.escape(markdown.read_text())}</pre>"
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def _effect_size_section(title: str, result: dict[str, Any], markdown: Path, map_expected: bool) -> str:
    rows = result.get("error_rate_map", [])
    # studies that include the map's cells (budget, active) leave its figure to the map's section
    figures = [map_figure(rows)] if map_expected and len(rows) > 1 else []
    curve = result.get("budget_curve")
    if curve and any(len(points) > 1 for points in curve["curves"].values()):
        figures.append(budget_figure(curve))
    missing = "<p>The error-rate map has not been run yet (fewer than two error rates).</p>"
    return _section(title, figures, markdown) + (missing if map_expected and len(rows) < 2 else "")


def page(studies: Path, titles: dict[str, str]) -> str:
    """The page over the studies in ``titles`` (study name -> section title) that have results."""
    sections = []
    for name, title in titles.items():
        result_file = studies / f"{name}.json"
        if not result_file.is_file():
            continue
        result = json.loads(result_file.read_text())
        markdown = studies / f"{name}.md"
        if "settings" in result:
            sections.append(_section(title, [headroom_figure(result)], markdown))
        elif "arms" in result:
            sections.append(_section(title, [ta_quality_figure(result)] if result["arms"] else [], markdown))
        else:
            sections.append(_effect_size_section(title, result, markdown, name == "map"))
    style = "body{font-family:sans-serif;max-width:72em;margin:auto}pre{white-space:pre-wrap;font-size:85%}"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>taloop studies</title>"
        f"<style>{style}</style></head><body><h1>taloop studies</h1>{''.join(sections)}</body></html>\n"
    )
