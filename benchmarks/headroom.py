"""Headroom probe (issue 16, item 3): where do wrong teacher replies cost the student?

    python benchmarks/headroom.py --error-rate 0.2 --error-mode systematic --seed 0 [--budget 96]
    python benchmarks/headroom.py --summarise

One cell trains ft (every reply) and oracle_one_stage (the replies right by gold only, at ft's
optimiser steps) on the same replies and evaluates both on the validation split, never the
test split: the probe chooses the default's error setting. No signals, no warm-up: the oracle's
gain over ft is the most any signal could win at that setting, so where it is small there is
nothing for ta_loop to find. Each cell runs the stage modules in a fresh repository copy (the
working tree's code, --set overrides on top) with its own empty reply cache, and writes
reports/studies/headroom/<cell>.json the moment it is done, so cells can be committed one by
one. ``--summarise`` turns every cell into reports/studies/headroom.{json,md}: per setting,
the mean over seeds of both accuracies, the gain with the t-interval of per-seed gains, and
each seed's exact McNemar p-value and minimum detectable effect on the validation items.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from taloop import logs
from taloop.io import read_json, write_jsonl
from taloop.metrics import seed_interval

sys.path.insert(0, str(Path(__file__).parent))
from run import REPO, make_copy  # benchmarks/run.py: repository copies

log = logging.getLogger("headroom")
OUT = REPO / "reports/studies/headroom"
VARIANTS = ("ft", "oracle_one_stage")
# leg_counting at the default's settings has 138 distinct questions: beside the test split's
# 20, a pool of 48 per task (budget 192 at most) leaves 64 per task for validation, 256 in all.
TRAIN_PER_TASK, VAL_PER_TASK = 48, 64


def cell_name(error_mode: str, error_rate: float, budget: int, seed: int) -> str:
    return f"{error_mode}-e{error_rate:g}-b{budget}-s{seed}"


def _stage(repo: Path, env: dict[str, str], module: str, *args: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", f"taloop.stages.{module}", *args],
        cwd=repo, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed in {repo}:\n{done.stderr[-4000:]}")
    seconds = time.perf_counter() - start
    log.info("%-16s %-18s %6.1f s", module, " ".join(args), seconds)
    return seconds


def run_cell(error_mode: str, error_rate: float, budget: int, seed: int, extra: list[str]) -> dict[str, Any]:
    overrides = [
        f"teacher.error_mode={error_mode}", f"teacher.error_rate={error_rate}", f"teacher.seed={seed}",
        f"stage2.seed={seed}", f"budget.queries={budget}", f"data.train_per_task={TRAIN_PER_TASK}",
        f"data.val_per_task={VAL_PER_TASK}",
        "eval.split=val", f"eval.batch_size={4 * VAL_PER_TASK}", "baseline=ft", "compare=[oracle_one_stage]",
        *extra,
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="headroom-") as tmp:
        copy = make_copy(Path(tmp), "cell", None, None, overrides)
        repo, seconds = copy.repo, {}
        for module in ("prepare_data", "collect_teacher", "prepare_models"):
            seconds[module] = _stage(repo, copy.env, module)
        # Outputs of the stages the two variants do not use (no signals, random acquisition).
        write_jsonl(repo / "data/signals.jsonl", [])
        write_jsonl(repo / "data/acquired/responses.jsonl", [])
        for variant in VARIANTS:
            seconds[f"train {variant}"] = _stage(repo, copy.env, "train_stage2", variant)
        for variant in VARIANTS:
            seconds[f"evaluate {variant}"] = _stage(repo, copy.env, "evaluate", variant)
        teacher = read_json(repo / "metrics/teacher.json")
        evals = {v: read_json(repo / f"metrics/eval/{v}.json") for v in VARIANTS}
        trained = {v: read_json(repo / f"metrics/stage2/{v}.json") for v in VARIANTS}
    oracle = evals["oracle_one_stage"]
    return {
        "cell": cell_name(error_mode, error_rate, budget, seed),
        "error_mode": error_mode,
        "error_rate": error_rate,
        "budget": budget,
        "seed": seed,
        "overrides": overrides,
        "code": copy.rev,
        "teacher_accuracy": teacher["diagnostic_teacher_accuracy_vs_gold"],
        "replies": {v: trained[v]["examples_trained"] for v in VARIANTS},
        "optimizer_steps": {v: trained[v]["optimizer_steps_total"] for v in VARIANTS},
        "accuracy": {v: evals[v]["accuracy"] for v in VARIANTS},
        "per_task": {v: evals[v]["per_task"] for v in VARIANTS},
        "n": evals["ft"]["n"],
        "gain": oracle["accuracy"] - evals["ft"]["accuracy"],
        "vs_ft": oracle["vs_baseline"],
        "seconds": seconds,
    }


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


def main() -> None:
    logs.setup()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--error-mode", choices=["random", "systematic"], default="systematic")
    parser.add_argument("--error-rate", type=float, default=0.2)
    parser.add_argument("--budget", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more overrides")
    parser.add_argument(
        "--summarise", action="store_true", help="only write headroom.{json,md} from the cells"
    )
    args = parser.parse_args()
    if not args.summarise:
        result = run_cell(args.error_mode, args.error_rate, args.budget, args.seed, args.set)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"{result['cell']}.json").write_text(json.dumps(result, indent=2) + "\n")
        log.info("%s: ft %.3f, oracle %.3f", result["cell"], *result["accuracy"].values())
    cells = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    summary = summarise(cells)
    (OUT.parent / "headroom.json").write_text(json.dumps(summary, indent=2) + "\n")
    (OUT.parent / "headroom.md").write_text(markdown(summary))


if __name__ == "__main__":
    main()
