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
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from taloop.reporting.document import render

log = logging.getLogger("figures")
STUDIES = Path(__file__).resolve().parents[1] / "reports/studies"


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    # no date and salted ids: the same numbers give the same file, so a published figure
    # changes in git only when its study does
    with plt.rc_context({"svg.hashsalt": "taloop"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
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


_STYLE = (
    "body{font-family:sans-serif;max-width:72em;margin:auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:85%}"
    "th,td{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f4f4f4}"
    "figure{margin:1.5em 0}figcaption{font-size:90%;color:#444;max-width:60em}"
    "section{border-top:2px solid #ddd;margin-top:2em}"
)
HOW_TO_READ = (
    "<h2>How to read this page</h2>"
    "<p>Each section is one study: pipeline runs (cells) that differ in what its title names, "
    "aggregated by <code>taloop study report</code> from the cells kept beside this page. A section "
    "opens with its figure, a caption under it saying what it shows, then the tables with every "
    "number the figure draws.</p><ul>"
    "<li>Accuracy is a percentage of the test split (80 items) unless a section says validation; "
    "differences between variants are in accuracy points.</li>"
    "<li>Intervals and bands are 95%: over the training seeds and the test items resampled "
    "together, or the seeds' t-interval where that is wider. An interval that contains 0 is not "
    "evidence of a difference either way.</li>"
    "<li>MDE is the smallest difference the comparison would detect with 80% power at its "
    "observed spread: an effect below it can exist and still not show.</li>"
    "<li>Recovery is (ta_loop - ft) / (oracle - ft): the share of what dropping every wrong "
    "teacher reply by gold gains that ta_loop gained without gold.</li>"
    "<li>Every number comes from the study's JSON file beside this page; each cell's params, "
    "metrics and predictions are in its folder.</li></ul>"
)
HEADROOM_CAPTION = (
    "The oracle's gain over ft on validation (accuracy points) against the teacher's error rate: one "
    "line per error mode and budget through the seeds' mean, each seed a dot. The dotted line marks "
    "+5 points. Where the oracle gains little, no signal that drops wrong replies can gain more."
)
MAP_CAPTION = (
    "Left: test accuracy of each variant against the teacher's error rate, bars the 95% t-interval "
    "over the training seeds. Right: the recovery ratio (ta_loop - ft) / (oracle - ft) with its 95% "
    "interval; a bar reaching the plot's edge is unbounded there (the oracle's gain may be zero). "
    "1 (dotted) would be the oracle's gain, 0 none, below 0 harm."
)
BUDGET_CAPTION = (
    "Test accuracy against the number of teacher replies bought, bars the 95% t-interval over "
    "the seeds run at every budget."
)
TA_QUALITY_CAPTION = (
    "ta_loop's gain over ft (accuracy points) against the TA's ROC-AUC at telling wrong outputs "
    "from right, one line per weighting through the seeds' mean, the shaded band its 95% "
    "interval (seeds and test items). Grey lines: two_stage's gain (dashed) and the gold "
    "oracle's (dotted), the levels 'no signal' and 'a perfect one' reach. Where a band crosses "
    "0 the gain is not distinguishable from none; the break-even AUC is where the line crosses "
    "0. Squares: the TA at chance on the teacher's blind spot; diamonds: a real TA at its "
    "measured validation AUC."
)


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


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _tables(markdown: Path) -> str:
    """A study's markdown as HTML, its headings two levels below the section's."""
    if not markdown.is_file():
        return ""
    body = render(markdown.read_text())
    return re.sub(r"<(/?)h([1-4])>", lambda m: f"<{m[1]}h{int(m[2]) + 2}>", body)


def _section(name: str, title: str, figures: list[str], markdown: Path) -> str:
    return (
        f"<section id='{name}'><h2>{html.escape(title)}</h2>{''.join(figures)}{_tables(markdown)}</section>"
    )


def _effect_size_section(
    name: str, title: str, result: dict[str, Any], markdown: Path, map_expected: bool
) -> str:
    rows = result.get("error_rate_map", [])
    # studies that include the map's cells (budget, active) leave its figure to the map's section
    figures = [_figure(map_figure(rows), MAP_CAPTION)] if map_expected and len(rows) > 1 else []
    curve = result.get("budget_curve")
    if curve and any(len(points) > 1 for points in curve["curves"].values()):
        figures.append(_figure(budget_figure(curve), BUDGET_CAPTION))
    missing = "<p>The error-rate map has not been run yet (fewer than two error rates).</p>"
    return _section(name, title, figures, markdown) + (missing if map_expected and len(rows) < 2 else "")


def main_figure(name: str, result: dict[str, Any]) -> str | None:
    """The study's leading figure as SVG (the one a README can show), None where it has none."""
    if "settings" in result:
        return headroom_figure(result)
    if "arms" in result:
        return ta_quality_figure(result) if result["arms"] else None
    rows = result.get("error_rate_map", [])
    return map_figure(rows) if name == "map" and len(rows) > 1 else None


def page(studies: Path, titles: dict[str, str]) -> str:
    """The page over the studies in ``titles`` (study name -> section title) that have results."""
    sections, contents = [], []
    for name, title in titles.items():
        result_file = studies / f"{name}.json"
        if not result_file.is_file():
            continue
        result = json.loads(result_file.read_text())
        markdown = studies / f"{name}.md"
        if "settings" in result:
            sections.append(
                _section(name, title, [_figure(headroom_figure(result), HEADROOM_CAPTION)], markdown)
            )
        elif "arms" in result:
            figures = [_figure(ta_quality_figure(result), TA_QUALITY_CAPTION)] if result["arms"] else []
            sections.append(_section(name, title, figures, markdown))
        else:
            sections.append(_effect_size_section(name, title, result, markdown, name == "map"))
        contents.append(f"<li><a href='#{name}'>{html.escape(title)}</a></li>")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>taloop studies</title>"
        f"<style>{_STYLE}</style></head><body><h1>taloop studies</h1>{HOW_TO_READ}"
        f"<h2>Contents</h2><ul>{''.join(contents)}</ul>{''.join(sections)}</body></html>\n"
    )
