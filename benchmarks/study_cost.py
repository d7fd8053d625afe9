"""What a study's sweep point costs through the study engine, side by side on one machine.

    python benchmarks/study_cost.py [--workdir DIR] [--out benchmarks/results.json]
    python benchmarks/study_cost.py --resume DIR    # pull HEAD into DIR's clone, run the points it lacks
    python benchmarks/study_cost.py --points cost-ta-point,cost-simulated-point   # point 1 and these

In a fresh clone of this checkout's HEAD (empty DVC cache, empty teacher cache; the machine's
de-quantised model cache as it is), DVC experiments are queued and run one at a time with
`dvc queue start -j 1`, as `taloop study run` does:

1. map cell e0.2-s0 (reports/studies/map/e0.2-s0), the full cell: nothing to restore yet;
2. the same with another TA measure (``ta.scorer``): a point that changes a ta.* param only;
3. the same with ta_loop on teacher trust alone (``variants.ta_loop.signals``): a point that
   changes what a single variant's stage-2 training reads;
4. map cell e0.4-s3, a second full cell (the data and base models restored);
5. point 1 with the simulated TA (``ta.backend: simulated``, AUC 0.7 for both sides);
6. point 5 at another teacher-side AUC: a ta.* point on the axis the TA-quality study sweeps;
7. point 1 with ``signals.selection: calibrated``: the default run, kept from the old code path
   on this machine kind in fp32 (reports/studies/reference/default-avx2-fp32).

Per point: its wall time (queue completion to completion), which stages ran, which were
restored (DVC's own output, `dvc queue logs`), and for the points kept from before (the two
map cells, run in bf16 on an avx512_bf16 machine; the default run, in fp32 on an AVX2 one),
per variant, how many test items' correctness differs from the kept run's. Written under "study_cost" in
``--out``; the cost ratios are points 2, 3 and 6 against point 1. ``--resume`` runs, in an
earlier run's clone brought to this HEAD, the points that clone lacks, and keeps the earlier
points' figures (each point records the commit it ran).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from taloop.core import logs, precision
from taloop.core.io import read_jsonl
from taloop.core.manifest import numerics
from taloop.studies import engine, spec
from taloop.studies.sources import ExperimentCell
from taloop.studies.sources import read_jsonl as read_cell_jsonl

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks/results.json"
MAP_CELLS = ("e0.2-s0", "e0.4-s3")
# Points run before on the old code path (a whole pipeline per copy of the checkout), kept.
KEPT_RUNS = {
    "map-e0.2-s0": "map/e0.2-s0",
    "map-e0.4-s3": "map/e0.4-s3",
    "cost-calibrated": "reference/default-avx2-fp32",
}
# A measure other than the one calibration chose at e0.2-s0 (contrastive), so the point's
# ta_loop weights do change.
TA_POINT = {"ta.scorer": "min_logprob"}
VARIANT_POINT = {"variants.ta_loop.signals": ["ta_teacher"]}
SIMULATED = {"ta.backend": "simulated", "ta.auc_teacher": 0.7, "ta.auc_student": 0.7}
SIMULATED_POINT = {**SIMULATED, "ta.auc_teacher": 0.9}

log = logging.getLogger("study_cost")


def _points() -> list[tuple[spec.Cell, str]]:
    """Each point and the point its changed params are counted against."""
    by_name = {c.name: c for c in spec.cells(spec.load("map", REPO))}
    base = by_name[MAP_CELLS[0]]
    sim = spec.Cell("cost", "simulated-base", {**base.params, **SIMULATED})
    return [
        (base, base.experiment),
        (spec.Cell("cost", "ta-point", {**base.params, **TA_POINT}), base.experiment),
        (spec.Cell("cost", "variant-point", {**base.params, **VARIANT_POINT}), base.experiment),
        (by_name[MAP_CELLS[1]], base.experiment),
        (sim, base.experiment),
        (spec.Cell("cost", "simulated-point", {**base.params, **SIMULATED_POINT}), sim.experiment),
        (
            spec.Cell("cost", "calibrated", {**base.params, "signals.selection": "calibrated"}),
            base.experiment,
        ),
    ]


def _correct(rows: list[dict[str, Any]]) -> dict[str, bool]:
    return {r["id"]: bool(r["correct"]) for r in rows}


def item_differences(repo: Path, cell: spec.Cell, sha: str) -> dict[str, Any]:
    """Per variant: test items whose correctness differs from the kept run's, and both accuracies."""
    kept = REPO / spec.KEPT_DIR / KEPT_RUNS[cell.experiment]
    new = ExperimentCell(cell.experiment, repo, sha)
    out = {}
    for variant in [cell.params["baseline"], *cell.params["compare"]]:
        path = f"data/predictions/{variant}.jsonl"
        old_items = _correct(read_jsonl(kept / path))
        new_items = _correct(read_cell_jsonl(new, path))
        if old_items.keys() != new_items.keys():
            raise RuntimeError(f"{cell.name} {variant}: the test items differ from the kept cell's")
        differ = sorted(i for i in old_items if old_items[i] != new_items[i])
        out[variant] = {
            "items": len(old_items),
            "differing_items": len(differ),
            "differing_ids": differ,
            "accuracy_kept": sum(old_items.values()) / len(old_items),
            "accuracy_now": sum(new_items.values()) / len(new_items),
        }
    return out


def measure(workdir: Path, earlier: dict[str, Any], only: set[str] | None = None) -> dict[str, Any]:
    """Run the points the clone in ``workdir`` lacks (cloning it first when there is none);
    ``earlier``: the figures of the points it ran before; ``only``: point 1 and these."""
    repo = workdir / "repo"
    if repo.is_dir():
        subprocess.run(["git", "pull", "-q", "--ff-only"], cwd=repo, check=True)
    else:
        subprocess.run(["git", "clone", "-q", str(REPO), str(repo)], check=True)
    # the clone's code, not this checkout's (the editable install), whatever is edited meanwhile
    os.environ["PYTHONPATH"] = str(repo / "src")
    rev = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    points = _points()
    if only is not None:
        unknown = only - {cell.experiment for cell, _ in points}
        if unknown:
            raise SystemExit(f"--points: no such point {sorted(unknown)}")
        points = [p for i, p in enumerate(points) if i == 0 or p[0].experiment in only]
    params = {cell.experiment: cell.params for cell, _ in points}
    todo = [cell for cell, _ in points if cell.experiment not in earlier]
    finished = engine.work_queue(repo, engine.queue_cells(repo, todo), jobs=1) if todo else {}
    shas = engine.experiments(repo, all_commits=True)
    cells = dict(earlier)
    for cell, reference in points:
        if cell.experiment not in finished:
            continue
        done = finished[cell.experiment]
        outcomes = engine.stage_outcomes(engine.cell_log(repo, done.task))
        cells[cell.experiment] = {
            "rev": rev,
            "status": done.status,
            "seconds": round(done.seconds, 1),
            "against": reference,
            "changed": {k: v for k, v in cell.params.items() if params[reference].get(k) != v},
            "ran": sorted(s for s, how in outcomes.items() if how == "ran"),
            "restored": sorted(s for s, how in outcomes.items() if how == "restored"),
            "unchanged": sorted(s for s, how in outcomes.items() if how == "unchanged"),
        }
        if cell.experiment in KEPT_RUNS and cell.experiment in shas:
            cells[cell.experiment]["vs_kept_cell"] = item_differences(repo, cell, shas[cell.experiment])
    full = cells[points[0][0].experiment]["seconds"]
    ratio = {
        "ta_point_over_full_cell": "cost-ta-point",
        "variant_point_over_full_cell": "cost-variant-point",
        "simulated_ta_point_over_full_cell": "cost-simulated-point",
        "simulated_ta_base_over_full_cell": "cost-simulated-base",
    }
    return {
        "rev": rev,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "numerics": numerics(),
            "student_precision": precision.resolve("auto").name,
        },
        "runner": "taloop.studies.engine: dvc exp run --queue, dvc queue start -j 1",
        "points": cells,
        "ratios": {k: cells[name]["seconds"] / full for k, name in ratio.items() if name in cells},
    }


def main() -> None:
    logs.setup()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, help="run here and keep the clone (default: a temporary one)")
    parser.add_argument(
        "--resume", type=Path, metavar="DIR", help="an earlier --workdir: run the points it lacks"
    )
    parser.add_argument(
        "--points", type=lambda s: set(s.split(",")), help="point 1 and these (experiment names)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    runs: list[dict[str, Any]] = results.get("study_cost", {}).get("runs", [])
    if args.resume is not None:
        last = runs.pop() if runs else {}
        points = {n: {"rev": last.get("rev"), **p} for n, p in last.get("points", {}).items()}
        result = measure(args.resume, points, args.points)
    elif args.workdir is not None:
        args.workdir.mkdir(parents=True)
        result = measure(args.workdir, {}, args.points)
    else:
        with tempfile.TemporaryDirectory(prefix="study-cost-") as tmp:
            result = measure(Path(tmp), {}, args.points)
    results["study_cost"] = {"runs": [*runs, result]}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    log.info("ratios: %s", result["ratios"])
    sys.exit(0 if all(p["status"] == "Success" for p in result["points"].values()) else 1)


if __name__ == "__main__":
    main()
