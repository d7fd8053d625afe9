"""The committed benchmark figures and the README's performance table agree."""

from __future__ import annotations

import json

from .conftest import REPO, load_benchmark


def test_readme_table_is_generated_from_results_json() -> None:
    results = json.loads((REPO / "benchmarks/results.json").read_text())
    bench = load_benchmark("run")
    stages = set(results["stages"])
    assert {
        "prepare_data",
        "collect_teacher",
        "warmup",
        "score_signals",
        "train_baseline",
        "report",
    } <= stages
    assert all(r["seconds"] > 0 and r["peak_rss_mib"] > 0 for r in results["stages"].values())
    assert results["total_seconds"] == sum(r["seconds"] for r in results["stages"].values())
    readme = (REPO / "README.md").read_text()
    assert f"{bench.START}\n{bench.readme_table(results)}\n{bench.END}" in readme
