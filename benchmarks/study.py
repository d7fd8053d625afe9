"""Effect-size study over kept runs.

    python benchmarks/study.py RUN_DIR [RUN_DIR ...] [--out reports/studies/effect_size]

Each RUN_DIR holds one run's params.yaml, metrics/ and data/predictions/ (as written by
`benchmarks/run.py --keep DIR`, or copied from a workspace after `dvc repro`). Three parts:

- seeds: at the full budget with random acquisition, per-seed accuracy of every variant and
  its mean relative improvement over the baseline, with a two-level bootstrap CI (seeds
  resampled, then test items within each seed, task-stratified and paired);
- budget curve: accuracy against budget.queries (random acquisition), and the spend at which
  ta_loop first matches the baseline's full-budget accuracy (linear between measured budgets);
- acquisition: every active run against the random run with the same seeds and budget, per
  variant (same test items, so paired);
- tuning: runs evaluated on the validation split (eval.split: val), each with the params it
  changed against the first of them.

Writes <out>.json and <out>.md: numbers only.
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
from taloop.profiles import flatten

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
    usd = read_json(run / "metrics/teacher.json")["usd_value"]
    acquisition = run / "metrics/acquisition.json"
    if acquisition.is_file():
        usd += read_json(acquisition).get("teacher", {}).get("usd_value", 0.0)
    return {
        "name": run.name,
        "split": params.get("eval", {}).get("split", "test"),
        "params": flatten(params),
        "seed": params["stage2"]["seed"],
        "seeds": {k: params[k]["seed"] for k in ("warmup", "signals", "stage2", "data", "teacher", "eval")},
        "budget": params["budget"]["queries"],
        "acquisition": params.get("acquisition", {}).get("mode", "random"),
        "teacher_usd": usd,
        "baseline": params["baseline"],
        "accuracy": {v: read_json(run / f"metrics/eval/{v}.json")["accuracy"] for v in variants},
        "correct": correct,
        "tasks": tasks,
    }


def relative_ci(runs: list[dict[str, Any]], variant: str, baseline: str, seed: int = 0) -> dict[str, float]:
    """Mean over runs of (acc_variant / acc_baseline - 1), with a 95% two-level bootstrap CI."""
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


def seeds_table(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every variant over the runs that trained it (a run may compare fewer variants)."""
    baseline = runs[0]["baseline"]
    variants = list(dict.fromkeys(v for r in runs for v in r["accuracy"]))
    having = {v: [r for r in runs if v in r["accuracy"]] for v in variants}
    return {
        "baseline": baseline,
        "seeds": [r["seeds"] for r in runs],
        "budget": runs[0]["budget"],
        "test_items_per_seed": len(runs[0]["tasks"]),
        "accuracy": {v: {str(r["seed"]): r["accuracy"][v] for r in having[v]} for v in variants},
        "mean_accuracy": {v: float(np.mean([r["accuracy"][v] for r in having[v]])) for v in variants},
        "vs_baseline": {
            v: {"seeds": len(having[v]), **relative_ci(having[v], v, baseline)}
            for v in variants
            if v != baseline
        },
    }


def matching_spend(curve: list[dict[str, float]], target: float) -> dict[str, float] | None:
    """The first point of ``curve`` (budget ascending) reaching ``target`` accuracy, linear
    between the measured budgets; None if no measured budget reaches it."""
    for i, point in enumerate(curve):
        if point["accuracy"] >= target:
            if i == 0:
                return {"budget": point["budget"], "teacher_usd": point["teacher_usd"]}
            prev = curve[i - 1]
            t = (target - prev["accuracy"]) / (point["accuracy"] - prev["accuracy"])
            return {k: prev[k] + t * (point[k] - prev[k]) for k in ("budget", "teacher_usd")}
    return None


def budget_curve(runs: list[dict[str, Any]], full: int, method: str) -> dict[str, Any]:
    """Mean accuracy per (variant, budget) over the seeds run at every budget (so each point
    averages the same seeds), and where ``method`` matches the baseline's full-budget accuracy."""
    baseline = runs[0]["baseline"]
    budgets = sorted({r["budget"] for r in runs})
    seed_sets = [{json.dumps(r["seeds"], sort_keys=True) for r in runs if r["budget"] == b} for b in budgets]
    common = set.intersection(*seed_sets)
    runs = [r for r in runs if json.dumps(r["seeds"], sort_keys=True) in common]
    curves: dict[str, list[dict[str, float]]] = {}
    for v in dict.fromkeys(v for r in runs for v in r["accuracy"]):
        points = []
        for b in budgets:
            at = [r for r in runs if r["budget"] == b and v in r["accuracy"]]
            if at:
                points.append({
                    "budget": b, "share_of_full": b / full, "seeds": len(at),
                    "accuracy": float(np.mean([r["accuracy"][v] for r in at])),
                    "teacher_usd": float(np.mean([r["teacher_usd"] for r in at])),
                })  # fmt: skip
        curves[v] = points
    target = next((p["accuracy"] for p in curves[baseline] if p["budget"] == full), None)
    match = matching_spend(curves.get(method, []), target) if target is not None else None
    return {
        "full_budget": full, "seeds": sorted(json.loads(c)["stage2"] for c in common), "curves": curves,
        "method": method, "baseline_full_accuracy": target, "method_matches_baseline_at": match,
    }  # fmt: skip


def acquisition_pairs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Active against random with the same seeds and budget, per variant both trained."""
    pairs = []
    for active in (r for r in runs if r["acquisition"] == "active"):
        twin = next(
            (r for r in runs if r["acquisition"] == "random"
             and (r["seeds"], r["budget"]) == (active["seeds"], active["budget"])),
            None,
        )  # fmt: skip
        if twin is not None:
            pairs.append((active, twin))
    by_variant: dict[str, Any] = {}
    for v in dict.fromkeys(v for a, _ in pairs for v in a["accuracy"]):
        both = [(a, r) for a, r in pairs if v in r["accuracy"]]
        if not both:
            continue
        paired = [{"correct": {"active": a["correct"][v], "random": r["correct"][v]}, "tasks": a["tasks"]}
                  for a, r in both]  # fmt: skip
        by_variant[v] = {
            "pairs": len(both),
            "random_accuracy": float(np.mean([r["accuracy"][v] for _, r in both])),
            "active_accuracy": float(np.mean([a["accuracy"][v] for a, _ in both])),
            "active_vs_random": relative_ci(paired, "active", "random"),
        }
    return {"pairs": [{"active": a["name"], "random": r["name"], "budget": a["budget"],
                       "teacher_usd_active": a["teacher_usd"], "teacher_usd_random": r["teacher_usd"]}
                      for a, r in pairs],
            "variants": by_variant}  # fmt: skip


def tuning(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation runs against the first one: what each changed, and its accuracies."""
    if not runs:
        return []
    ref = runs[0]["params"]
    keys = sorted({k for r in runs for k in r["params"]})
    return [
        {
            "run": r["name"],
            "changed": {k: r["params"].get(k) for k in keys if r["params"].get(k) != ref.get(k)},
            "accuracy": r["accuracy"],
        }
        for r in runs
    ]


def study(runs: list[dict[str, Any]], method: str = "ta_loop") -> dict[str, Any]:
    tested = [r for r in runs if r["split"] == "test"]
    random_runs = [r for r in tested if r["acquisition"] == "random"]
    full = max(r["budget"] for r in random_runs)
    return {
        **seeds_table([r for r in random_runs if r["budget"] == full]),
        "budget_curve": budget_curve(random_runs, full, method),
        "acquisition": acquisition_pairs(tested),
        "tuning": tuning([r for r in runs if r["split"] == "val"]),
    }


def _rel(cmp: dict[str, float]) -> str:
    return (
        f"{100 * cmp['mean_relative_improvement']:+.1f}% ({100 * cmp['ci_low']:+.1f}% to "
        f"{100 * cmp['ci_high']:+.1f}%)"
    )


def markdown(result: dict[str, Any]) -> str:
    base = result["baseline"]
    seeds = list(result["accuracy"][base])
    lines = [
        "# Effect-size study",
        "",
        f"{len(seeds)} training seeds (warmup, signals and stage2 seeds; data, teacher and eval seeds "
        f"fixed), teacher budget {result['budget']} replies, random acquisition, "
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
        rel = f"{_rel(cmp)} over {cmp['seeds']} seeds" if cmp else "(baseline)"
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {100 * result['mean_accuracy'][v]:.1f} | {rel} |")

    curve = result["budget_curve"]
    lines += [
        "", "## Budget curve", "",
        f"Random acquisition, training seeds run at every budget: {', '.join(map(str, curve['seeds']))}.", "",
        "| variant | budget | share of full | seeds | accuracy | teacher USD |", "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for v, points in curve["curves"].items():
        for p in points:
            lines.append(
                f"| {v} | {p['budget']} | {100 * p['share_of_full']:.0f}% | {p['seeds']} | "
                f"{100 * p['accuracy']:.1f} | {p['teacher_usd']:.4f} |"
            )
    match, target = curve["method_matches_baseline_at"], curve["baseline_full_accuracy"]
    lines.append("")
    if target is None:
        lines.append(f"{base} was not run at the full budget.")
    elif match is None:
        lines.append(
            f"{curve['method']} does not reach {base}'s full-budget accuracy ({100 * target:.1f}%) at any "
            "measured budget."
        )
    else:
        full_usd = next(
            p["teacher_usd"] for p in curve["curves"][base] if p["budget"] == curve["full_budget"]
        )
        lines.append(
            f"{curve['method']} matches {base}'s full-budget accuracy ({100 * target:.1f}%) at about "
            f"{match['budget']:.0f} replies (USD {match['teacher_usd']:.4f}; {base} spent "
            f"USD {full_usd:.4f})."
        )

    acq = result["acquisition"]
    lines += ["", "## Active against random acquisition at equal budget", ""]
    if not acq["variants"]:
        lines.append("No active run with a random twin (same seeds and budget).")
    else:
        lines += [
            "| variant | pairs | random | active | active vs random (95% CI) |",
            "|---|---|---|---|---|",
        ]
        for v, row in acq["variants"].items():
            lines.append(
                f"| {v} | {row['pairs']} | {100 * row['random_accuracy']:.1f} | "
                f"{100 * row['active_accuracy']:.1f} | {_rel(row['active_vs_random'])} |"
            )
    if result["tuning"]:
        variants = list(dict.fromkeys(v for row in result["tuning"] for v in row["accuracy"]))
        lines += [
            "", "## Tuning on the validation split", "",
            "Each run against the first (the reference); accuracy on the validation split in %.", "",
            "| run | changed | " + " | ".join(variants) + " |", "|---|---|" + "---|" * len(variants),
        ]  # fmt: skip
        for row in result["tuning"]:
            changed = ", ".join(f"{k}={v}" for k, v in row["changed"].items()) or "(reference)"
            cells = [f"{100 * row['accuracy'][v]:.1f}" if v in row["accuracy"] else "-" for v in variants]
            lines.append(f"| {row['run']} | {changed} | " + " | ".join(cells) + " |")
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
