"""Headroom aggregation (issue 16, item 3): where do wrong teacher replies cost the student?

Each cell (studies/headroom.yaml; :func:`taloop.studies.sources.headroom_cell`, or a kept
reports/studies/headroom/<cell>.json) trains ft (every reply) and oracle_one_stage (the replies
right by gold only, at ft's optimiser steps) on the same replies and evaluates both on the
validation split, never the test split: the probe chooses the default's error setting. The
oracle's gain over ft is the most any signal could win at that setting. :func:`summarise`:
per setting, the mean over seeds of both accuracies, the gain with the t-interval of per-seed
gains, and each seed's exact McNemar p-value and minimum detectable effect on the validation
items.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from taloop.core.metrics import seed_interval

VARIANTS = ("ft", "oracle_one_stage")


def summarise(cells: list[dict[str, Any]]) -> dict[str, Any]:
    settings: dict[tuple[str, float, int], list[dict[str, Any]]] = defaultdict(list)
    for cell in cells:
        settings[(cell["error_mode"], cell["error_rate"], cell["budget"])].append(cell)
    rows = []
    for (mode, rate, budget), group in sorted(settings.items()):
        group.sort(key=lambda c: c["seed"])
        gains = [c["gain"] for c in group]
        rows.append({
            "error_mode": mode, "error_rate": rate, "budget": budget,
            "seeds": [c["seed"] for c in group],
            "teacher_accuracy": [c["teacher_accuracy"] for c in group],
            "ft": sum(c["accuracy"]["ft"] for c in group) / len(group),
            "oracle_one_stage": sum(c["accuracy"]["oracle_one_stage"] for c in group) / len(group),
            "gain": seed_interval(gains),
            "per_seed": [
                {"seed": c["seed"], "gain": c["gain"], **{k: c["vs_ft"][k] for k in ("p_value", "mde")}}
                for c in group
            ],
            "n": group[0]["n"],
        })  # fmt: skip
    return {"split": "val", "variants": list(VARIANTS), "settings": rows}


def _pts(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:+.1f}"


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# Headroom: what dropping the wrong teacher replies is worth (validation split)",
        "",
        "ft trains on every reply, oracle_one_stage on the replies right by gold only, at ft's "
        "optimiser steps. The oracle's gain is the ceiling for any signal at that setting. Accuracy "
        "in %, the mean over seeds; the gain in points with the 95% t-interval of per-seed gains "
        "(none from one seed); per seed, the exact McNemar p-value and the minimum detectable "
        "effect (80% power) on the shared validation items.",
        "",
        "| error mode | error rate | budget | seeds | teacher acc. | ft | oracle | gain [95% CI] "
        "| per seed: gain, p, MDE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["settings"]:
        gain = row["gain"]
        ci = "" if gain["ci_low"] is None else f" [{_pts(gain['ci_low'])}, {_pts(gain['ci_high'])}]"
        seeds = "; ".join(
            f"{_pts(s['gain'])}, p={s['p_value']:.2f}, MDE {_pts(s['mde'])}" for s in row["per_seed"]
        )
        teacher = ", ".join(f"{100 * a:.0f}" for a in row["teacher_accuracy"] if a is not None)
        lines.append(
            f"| {row['error_mode']} | {row['error_rate']:g} | {row['budget']} | {len(row['seeds'])} "
            f"| {teacher} | {100 * row['ft']:.1f} | {100 * row['oracle_one_stage']:.1f} "
            f"| {_pts(gain['mean'])}{ci} | {seeds} |"
        )
    lines += [
        "",
        f"n = {summary['settings'][0]['n'] if summary['settings'] else 0} validation items per cell.",
    ]
    return "\n".join(lines) + "\n"
