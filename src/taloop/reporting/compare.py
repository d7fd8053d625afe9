"""`taloop compare`: accuracy against teacher budget and teacher error rate across experiments,
one line per variant, read from `dvc exp show --json` into reports/compare.html."""

from __future__ import annotations

import json
import logging
import subprocess
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taloop.core.io import atomic_write_text, write_json
from taloop.reporting import figures
from taloop.reporting.document import table, to_html

log = logging.getLogger(__name__)

EVAL_PREFIX = "metrics/eval/"
AXES = {"budget": ("budget", "queries"), "error_rate": ("teacher", "error_rate")}
AXIS_LABELS = {"budget": "teacher budget (queries)", "error_rate": "simulated teacher error rate"}


@dataclass(frozen=True)
class Run:
    name: str
    params: Mapping[str, Any]
    accuracy: Mapping[str, float]  # variant -> test accuracy

    def axis(self, key: str) -> float | None:
        section, field = AXES[key]
        value = self.params.get(section, {}).get(field)
        return float(value) if isinstance(value, int | float) else None


def _entries(node: Any) -> Iterator[Mapping[str, Any]]:
    """Every revision record in `dvc exp show --json` output, however deeply nested."""
    if isinstance(node, list):
        for item in node:
            yield from _entries(item)
    elif isinstance(node, dict):
        if "rev" in node and isinstance(node.get("data"), dict):
            yield node
        for key in ("experiments", "revs"):
            if node.get(key):
                yield from _entries(node[key])


def runs_from_exp_show(payload: Any) -> list[Run]:
    """Runs with test metrics, named as `dvc exp show` names them; identical results listed
    under several names (the workspace and the experiment it came from) are kept once.
    Tuning runs (`eval.split: val`) are left out: their accuracies are on another split."""
    runs, seen, tuning = [], set(), 0
    # The workspace last, so results it shares with an experiment go by the experiment's name.
    entries = sorted(_entries(payload), key=lambda e: e["rev"] == "workspace")
    for entry in entries:
        data = entry["data"]
        params = (data.get("params") or {}).get("params.yaml", {}).get("data") or {}
        if (params.get("eval") or {}).get("split", "test") != "test":
            tuning += 1
            continue
        accuracy = {
            path.removeprefix(EVAL_PREFIX).removesuffix(".json"): m["data"]["accuracy"]
            for path, m in (data.get("metrics") or {}).items()
            if path.startswith(EVAL_PREFIX) and "accuracy" in (m.get("data") or {})
        }
        if not accuracy:
            continue
        key = json.dumps([params, accuracy], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        rev = entry["rev"]
        runs.append(Run(entry.get("name") or (rev if rev == "workspace" else rev[:7]), params, accuracy))
    if tuning:
        log.info("left out %d revisions evaluated on the validation split (eval.split: val)", tuning)
    return runs


def series(runs: Sequence[Run], axis: str) -> dict[str, list[tuple[float, float]]]:
    """variant -> [(x, mean accuracy over the runs at x)], sorted by x."""
    points: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        x = run.axis(axis)
        if x is None:
            continue
        for variant, acc in run.accuracy.items():
            points[variant][x].append(acc)
    return {
        variant: [(x, sum(v) / len(v)) for x, v in sorted(by_x.items())]
        for variant, by_x in sorted(points.items())
    }


def exp_show(all_commits: bool = False) -> Any:
    cmd = ["dvc", "exp", "show", "--json", *(["--all-commits"] if all_commits else [])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def write_compare(runs: Sequence[Run], out_html: Path) -> dict[str, Any]:
    """Figures, a table of the runs and the plotted series (beside the HTML as JSON)."""
    if not runs:
        raise ValueError("no experiment has test metrics yet: run `dvc repro` or `dvc exp run` first")
    fig_dir = out_html.parent / "compare_figures"
    plotted = {axis: series(runs, axis) for axis in AXES}
    for axis, lines in plotted.items():
        figures.save(figures.lines(lines, AXIS_LABELS[axis]), fig_dir / f"{axis}.png")
    variants = sorted({v for r in runs for v in r.accuracy})
    rows = [
        [r.name, r.axis("budget"), r.axis("error_rate"), *(
            f"{100 * r.accuracy[v]:.1f}" if v in r.accuracy else "" for v in variants
        )]
        for r in runs
    ]  # fmt: skip
    md = "\n\n".join([
        "# taloop: experiments compared",
        f"{len(runs)} experiments with test metrics (from `dvc exp show --json`). Accuracy is the "
        "percentage of the test split; where several experiments share an x value the line shows their mean.",
        f"## Accuracy against {AXIS_LABELS['budget']}",
        f"![budget]({fig_dir.name}/budget.png)",
        f"## Accuracy against {AXIS_LABELS['error_rate']}",
        f"![error_rate]({fig_dir.name}/error_rate.png)",
        "## Experiments",
        table(["experiment", "budget.queries", "teacher.error_rate", *variants], rows),
    ])  # fmt: skip
    atomic_write_text(out_html, to_html(md + "\n", out_html.parent, title="taloop: experiments compared"))
    result = {"experiments": [r.name for r in runs], "series": plotted}
    write_json(out_html.with_suffix(".json"), result)
    return result
