"""Effect-size study across training seeds: per-seed accuracy of every variant, and the mean
relative improvement of each variant over the baseline with a two-level bootstrap CI
(seeds resampled, then test items within each seed, task-stratified and paired).

    python benchmarks/study.py RUN_DIR [RUN_DIR ...] [--out reports/studies/effect_size]

Each RUN_DIR holds one run's params.yaml, metrics/ and data/predictions/ (as written by
`benchmarks/run.py --keep DIR`, or copied from a workspace after `dvc repro`). Writes
<out>.json and <out>.md: numbers only.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from taloop import logs
from taloop.io import read_json, read_jsonl

log = logging.getLogger("study")
N_BOOT = 2000


def load_run(run: Path) -> dict[str, Any]:
    params = yaml.safe_load((run / "params.yaml").read_text())
    variants = [params["baseline"], *params["compare"]]
    correct = {}
    for v in variants:
        rows = sorted(read_jsonl(run / f"data/predictions/{v}.jsonl"), key=lambda r: r["id"])
        correct[v] = np.array([r["correct"] for r in rows], dtype=float)
        tasks = np.array([r["task"] for r in rows])
    return {
        "seed": params["stage2"]["seed"],
        "seeds": {k: params[k]["seed"] for k in ("warmup", "signals", "stage2", "data", "teacher", "eval")},
        "budget": params["budget"]["queries"],
        "baseline": params["baseline"],
        "accuracy": {v: read_json(run / f"metrics/eval/{v}.json")["accuracy"] for v in variants},
        "correct": correct,
        "tasks": tasks,
    }


def relative_ci(runs: list[dict[str, Any]], variant: str, baseline: str, seed: int = 0) -> dict[str, float]:
    """Mean over seeds of (acc_variant / acc_baseline - 1), with a 95% two-level bootstrap CI."""
    rng = np.random.default_rng(seed)

    def rel(run: dict[str, Any], idx: np.ndarray | None = None) -> float:
        a, b = run["correct"][variant], run["correct"][baseline]
        if idx is not None:
            a, b = a[idx], b[idx]
        return float(a.mean() / b.mean() - 1) if b.mean() > 0 else float("nan")

    def resample(run: dict[str, Any]) -> np.ndarray:
        tasks = run["tasks"]
        return np.concatenate(
            [rng.choice(np.flatnonzero(tasks == t), size=(tasks == t).sum()) for t in np.unique(tasks)]
        )

    observed = float(np.mean([rel(r) for r in runs]))
    boot = []
    for _ in range(N_BOOT):
        picked = [runs[i] for i in rng.integers(0, len(runs), len(runs))]
        boot.append(np.nanmean([rel(r, resample(r)) for r in picked]))
    lo, hi = np.nanpercentile(boot, [2.5, 97.5])
    return {"mean_relative_improvement": observed, "ci_low": float(lo), "ci_high": float(hi),
            "share_of_resamples_above_zero": float(np.mean(np.array(boot) > 0))}  # fmt: skip


def study(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every variant over the runs that trained it (a run may compare fewer variants)."""
    baseline = runs[0]["baseline"]
    variants = list(dict.fromkeys(v for r in runs for v in r["accuracy"]))
    having = {v: [r for r in runs if v in r["accuracy"]] for v in variants}
    return {
        "baseline": baseline,
        "seeds": [r["seeds"] for r in runs],
        "budget": sorted({r["budget"] for r in runs}),
        "test_items_per_seed": len(runs[0]["tasks"]),
        "accuracy": {v: {str(r["seed"]): r["accuracy"][v] for r in having[v]} for v in variants},
        "mean_accuracy": {v: float(np.mean([r["accuracy"][v] for r in having[v]])) for v in variants},
        "vs_baseline": {
            v: {"seeds": len(having[v]), **relative_ci(having[v], v, baseline)}
            for v in variants
            if v != baseline
        },
    }


def markdown(result: dict[str, Any]) -> str:
    base = result["baseline"]
    seeds = list(result["accuracy"][base])
    lines = [
        "# Effect-size study",
        "",
        f"{len(seeds)} training seeds (warmup, signals and stage2 seeds; data, teacher and eval seeds "
        f"fixed), teacher budget {', '.join(map(str, result['budget']))} replies, "
        f"{result['test_items_per_seed']} test items per seed. Accuracy in %.",
        *(["", result["note"]] if result.get("note") else []),
        "",
        "| variant | "
        + " | ".join(f"seed {s}" for s in seeds)
        + f" | mean | mean relative vs {base} (95% CI) |",
        "|---|" + "---|" * (len(seeds) + 2),
    ]
    for v, by_seed in result["accuracy"].items():
        cells = [f"{100 * by_seed[s]:.1f}" if s in by_seed else "not run" for s in seeds]
        cmp = result["vs_baseline"].get(v)
        rel = "(baseline)"
        if cmp:
            rel = f"{100 * cmp['mean_relative_improvement']:+.1f}% over {cmp['seeds']} seeds "
            rel += f"({100 * cmp['ci_low']:+.1f}% to {100 * cmp['ci_high']:+.1f}%)"
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {100 * result['mean_accuracy'][v]:.1f} | {rel} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    logs.setup()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("reports/studies/effect_size"))
    parser.add_argument(
        "--note", default="", help="status line stored with the results (e.g. what is missing)"
    )
    args = parser.parse_args()
    result = {**study([load_run(r) for r in args.runs]), "note": args.note}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    log.info("\n%s", markdown(result))


if __name__ == "__main__":
    main()
