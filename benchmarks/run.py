"""Benchmark the pipeline: wall time and peak memory of every stage, training and generation
throughput, teacher cache hit rates.

    python benchmarks/run.py [--profile NAME] [--set key=value ...] [--out benchmarks/results.json]
    python benchmarks/run.py --readme      # only rewrite the README table from results.json

Runs `dvc repro -s <stage>` for each stage in order, in a fresh copy of the repository with
an empty teacher cache (so nothing is reused from earlier runs), polling the resident memory
of the stage's process tree; then reruns collect_teacher to measure the cache. Writes
results.json and regenerates the README's performance table from it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from taloop import logs
from taloop.io import read_json, read_jsonl

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.pipeline import copy_repo  # noqa: E402  (the tests' repository copy, reused)

RESULTS = REPO / "benchmarks/results.json"
README = REPO / "README.md"
START, END = "<!-- benchmark-table:start -->", "<!-- benchmark-table:end -->"

log = logging.getLogger("benchmark")


def overrides_dict(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[x, y]"]`` -> ``{"a": {"b": 1}, "c": ["x", "y"]}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out


def _env() -> dict[str, str]:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    env.setdefault("GIT_AUTHOR_NAME", "taloop-benchmark")
    env.setdefault("GIT_AUTHOR_EMAIL", "benchmark@taloop.invalid")
    env.setdefault("GIT_COMMITTER_NAME", "taloop-benchmark")
    env.setdefault("GIT_COMMITTER_EMAIL", "benchmark@taloop.invalid")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def _tree_rss(proc: psutil.Process) -> int:
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):  # it may exit between listing and reading
            total += p.memory_info().rss
    return total


def run_stage(repo: Path, stage: str, env: dict[str, str], *extra: str) -> dict[str, float]:
    """Wall time and peak resident memory (MiB, whole process tree) of one `dvc repro -s`."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["dvc", "repro", "-s", *extra, stage],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(ps))
        time.sleep(0.2)
    output = proc.stdout.read().decode() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{output[-4000:]}")
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": peak / 2**20}


def throughput(repo: Path, variants: list[str]) -> dict[str, Any]:
    train: dict[str, Any] = {}
    for v in variants:
        stage2 = read_json(repo / f"metrics/stage2/{v}.json")
        runtime = read_json(repo / f"metrics/train/stage2_{v}/metrics.json")["train"]["runtime"]
        train[v] = {"tokens": stage2["train_tokens"], "seconds": runtime,
                    "tokens_per_s": stage2["train_tokens"] / runtime}  # fmt: skip
    generated = {
        v: sum(r["output_tokens"] for r in read_jsonl(repo / f"data/predictions/{v}.jsonl")) for v in variants
    }
    return {"training": train, "evaluation_generated_tokens": generated}


def benchmark(
    overrides: list[str], profile: str | None, keep: Path | None = None, workdir: Path | None = None
) -> dict[str, Any]:
    """``workdir``: run there and leave the repository copy (models, DVC cache) and its teacher
    cache behind, e.g. to run `dvc exp run` variations on top; default: a temporary directory."""
    if workdir is not None:
        workdir.mkdir(parents=True)
    with contextlib.nullcontext(str(workdir)) if workdir else tempfile.TemporaryDirectory() as tmp:
        repo, cache = Path(tmp) / "repo", Path(tmp) / "cache"
        copy_repo(repo, profile, overrides_dict(overrides))
        # The copy's own source, not the editable install: editing the checkout during a
        # half-hour run must not change the code the later stages run.
        env = dict(_env(), TALOOP_CACHE_DIR=str(cache), PYTHONPATH=str(repo / "src"))
        stages = subprocess.run(
            ["dvc", "stage", "list", "--name-only"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        results = {}
        for stage in stages:
            results[stage] = run_stage(repo, stage, env)
            log.info(
                "%-24s %7.1f s  peak %6.0f MiB",
                stage,
                results[stage]["seconds"],
                results[stage]["peak_rss_mib"],
            )
        first = read_json(repo / "metrics/teacher.json")
        rerun = run_stage(repo, "collect_teacher", env, "-f")
        again = read_json(repo / "metrics/teacher.json")
        params = yaml.safe_load((repo / "params.yaml").read_text())
        variants = [params["baseline"], *params["compare"]]
        perf = throughput(repo, variants)
        for v in variants:
            perf["evaluation_generated_tokens"][v] /= results[_eval_stage(v, params["baseline"])]["seconds"]
        if keep is not None:  # the run's numbers (not its models), e.g. for the effect-size study
            for sub in ("metrics", "data/predictions"):
                shutil.copytree(repo / sub, keep / sub, dirs_exist_ok=True)
            shutil.copy2(repo / "params.yaml", keep / "params.yaml")
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    return {
        "machine": {**machine, "python": platform.python_version()},
        "profile": profile,
        "overrides": overrides,
        "stages": results,
        "total_seconds": sum(r["seconds"] for r in results.values()),
        "cache": {
            "first_run": {"hits": first["cache_hits"], "replies": first["replies"]},
            "rerun": {"hits": again["cache_hits"], "replies": again["replies"], "seconds": rerun["seconds"]},
        },
        "training": perf["training"],
        "evaluation_tokens_per_stage_second": perf["evaluation_generated_tokens"],
    }


def _eval_stage(variant: str, baseline: str) -> str:
    return "evaluate_baseline" if variant == baseline else f"evaluate@{variant}"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s" if seconds >= 60 else f"{seconds:.1f} s"


def readme_table(results: dict[str, Any]) -> str:
    lines = ["| stage | wall time | peak memory |", "|---|---|---|"]
    for stage, r in results["stages"].items():
        lines.append(f"| {stage} | {_minutes(r['seconds'])} | {r['peak_rss_mib']:.0f} MiB |")
    lines.append(f"| **total** | **{_minutes(results['total_seconds'])}** | |")
    lines.append("")
    lines.append(
        "| variant | training tokens | training tokens/s | evaluation tokens generated per stage second |"
    )
    lines.append("|---|---|---|---|")
    for v, t in results["training"].items():
        gen = results["evaluation_tokens_per_stage_second"][v]
        lines.append(f"| {v} | {t['tokens']:.0f} | {t['tokens_per_s']:.0f} | {gen:.1f} |")
    cache = results["cache"]
    lines.append("")
    lines.append(
        f"Teacher cache: {cache['first_run']['hits']} of {cache['first_run']['replies']} replies from "
        f"the cache on the first run (empty cache), {cache['rerun']['hits']} of "
        f"{cache['rerun']['replies']} on a forced rerun of collect_teacher "
        f"({_minutes(cache['rerun']['seconds'])})."
    )
    return "\n".join(lines)


def write_readme(results: dict[str, Any]) -> None:
    text = README.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{readme_table(results)}\n{END}{tail}")


def main() -> None:
    logs.setup()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", help="apply profiles/<name>.yaml first (default: params.yaml as is)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="param override")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", type=Path, help="copy the run's metrics, predictions and params here")
    parser.add_argument(
        "--workdir", type=Path, help="run in this new directory and keep it (repo copy with models, cache)"
    )
    parser.add_argument(
        "--readme",
        action="store_true",
        help="only regenerate the README table (from benchmarks/results.json)",
    )
    args = parser.parse_args()
    if not args.readme:
        results = benchmark(args.set, args.profile, args.keep, args.workdir)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    # The README shows the committed default run only, not a study run written elsewhere.
    if args.out.resolve() == RESULTS.resolve():
        write_readme(json.loads(RESULTS.read_text()))


if __name__ == "__main__":
    main()
