"""The committed benchmark figures and the README's performance table agree."""

from __future__ import annotations

import importlib.util
import json

from .conftest import REPO


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("benchmark_run", REPO / "benchmarks/run.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_table_is_generated_from_results_json() -> None:
    results = json.loads((REPO / "benchmarks/results.json").read_text())
    bench = _benchmark_module()
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
