"""Benchmark the pipeline: wall time, peak memory and where the time goes in every stage,
training and generation throughput, teacher cache hit rates; optionally side by side with an
earlier revision.

    python benchmarks/run.py [--profile NAME] [--set key=value ...] [--out benchmarks/results.json]
    python benchmarks/run.py --baseline-rev REV     # also time REV's code, stage by stage alongside
    python benchmarks/run.py --table       # only rewrite the docs/performance.md table from results.json
    python benchmarks/run.py --baseline-rev REV --eval-repeats 3   # evaluate stages 4x, medians
    python benchmarks/run.py --repeat-in WORKDIR --eval-repeats 3  # the same, after a --workdir run
    python benchmarks/run.py --baseline-rev HEAD --baseline-set student.bf16=false --bf16-units
        # student.bf16 auto against false side by side, and what `true` would cost here

Runs `dvc repro -s <stage>` for each stage in order, in a fresh copy of the repository with
an empty teacher cache (so nothing is reused from earlier runs), polling the resident memory
of the stage's process tree and collecting each stage's profile (taloop.core.profiling: start-up,
named phases, the rest); then reruns collect_teacher to measure the cache. Writes
results.json and regenerates the performance table in docs/performance.md from it.

With ``--baseline-rev`` a second copy holds what REV would ship (its committed tree, the same
profile and overrides), with its own DVC cache and its own empty teacher cache. The two
copies run their stages alternately, so a drift in the machine's load reaches both alike,
and the speed-ups are ratios measured on the same machine at the same time. The simulated
teacher (required here) is deterministic, so both copies buy the same replies, under the
same conditions (an empty cache each: collect_teacher is timed alike); results.json records
whether the replies did come out identical and which params the two revisions differ in.
The machine's cache of de-quantised models (taloop.student.models) is left as it is, so prepare_models
takes what a new clone on this machine would; its profile shows a "dequantise" phase when that
cache was empty.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import psutil
import yaml

from taloop.cli import runtime
from taloop.core import logs
from taloop.core.io import read_json, read_jsonl
from taloop.core.manifest import numerics
from taloop.core.profiling import PROFILE_ENV
from taloop.params import validate_params
from taloop.params.profiles import flatten
from taloop.reporting.summary import ran_in

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.pipeline import copy_repo  # noqa: E402  (the tests' repository copy, reused)

sys.path.insert(0, str(Path(__file__).parent))
from precision import extrapolate  # noqa: E402  (benchmarks/precision.py)

RESULTS = REPO / "benchmarks/results.json"
PERFORMANCE_DOC = REPO / "docs/performance.md"
START, END = "<!-- benchmark-table:start -->", "<!-- benchmark-table:end -->"

# Phases that the stages run one after another, never one inside another, so that together
# with the start-up they are disjoint parts of a process's time and "other" is the rest
# (imports after the first phase, data handling between phases, interpreter exit). Phases
# timed inside one of these ("lm_head", within the training "forward") are reported but not
# subtracted; a negative "other" would mean two of these overlapped after all.
DISJOINT_PHASES = (
    "make_splits",
    "teacher_collect",
    "dequantise",
    "model_load",
    "prefill",
    "decode",
    "frozen_prefix",
    "forward",
    "backward",
    "optimizer",
    "ta_tokenize",
    "ta_forward",
    "ta_contrastive",
    "ta_judge",
    "calibrate_decide",
    "signal_metrics",
    "summarise",
    "build_report",
    "write_outputs",
)
# Generation time in taloop.student.generation's profile: the prompt's prefill and the decoding after it.
GENERATION_PHASES = ("prefill", "decode")

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


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=_env(), capture_output=True, text=True, check=True
    ).stdout.strip()


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


def collect_profile(directory: Path, seconds: float) -> dict[str, Any] | None:
    """The profile taloop.core.profiling wrote under ``directory`` for one stage run of ``seconds``
    wall time; None when no process wrote one (code from before the profiling, or a stage
    that times no phase).

    Of several processes (an accelerate launch with one per device), the longest one's: they
    run in parallel, so their sum would exceed the wall time. ``other_s``: its process time
    less its start-up and the :data:`DISJOINT_PHASES`; ``outside_process_s``: the stage's wall
    time outside that process (DVC hashing outputs and dependencies, a launcher).
    """
    records = [read_json(path) for path in sorted(directory.glob("*.json"))]
    if not records:
        return None
    main = max(records, key=lambda r: r["process_s"] or 0.0)
    phases = main["phases"]
    known = sum(phases[name]["seconds"] for name in DISJOINT_PHASES if name in phases)
    process, startup = main["process_s"], main["startup_s"]
    return {
        "processes": len(records),
        "startup_s": startup,
        "process_s": process,
        "phases": phases,
        "other_s": None if process is None or startup is None else process - startup - known,
        "outside_process_s": None if process is None else seconds - process,
    }


def run_stage(repo: Path, stage: str, env: dict[str, str], profile_dir: Path, *extra: str) -> dict[str, Any]:
    """Wall time and peak resident memory (MiB, whole process tree) of one `dvc repro -s`, and
    its profile (:func:`collect_profile`), which the stage's processes write to ``profile_dir``."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["dvc", "repro", "-s", *extra, stage],
        cwd=repo,
        env={**env, PROFILE_ENV: str(profile_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(ps))
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    output = proc.stdout.read().decode() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"stage {stage} failed in {repo}:\n{output[-4000:]}")
    return {
        "seconds": seconds,
        "peak_rss_mib": peak / 2**20,
        "profile": collect_profile(profile_dir, seconds),
    }


class Copy(NamedTuple):
    """One repository copy under benchmark: the code of one revision and its own caches."""

    name: str  # "this" or "baseline", for logs
    repo: Path
    env: dict[str, str]
    profiles: Path  # one subdirectory per stage run
    rev: dict[str, Any]
    stages: list[str]

    def run(self, stage: str, *extra: str, label: str = "") -> dict[str, Any]:
        """One stage run; ``label`` tells a rerun's profile apart from the first run's."""
        result = run_stage(self.repo, stage, self.env, self.profiles / f"{stage}{label}", *extra)
        log.info(
            "%-8s %-24s %7.1f s  peak %6.0f MiB", self.name, stage, result["seconds"], result["peak_rss_mib"]
        )
        return result


def make_copy(root: Path, name: str, rev: str | None, profile: str | None, overrides: list[str]) -> Copy:
    """A repository copy in ``root``/repo with its teacher cache in ``root``/cache: the working
    tree (``rev`` None) or what ``rev`` would ship."""
    copy_repo(root / "repo", profile, overrides_dict(overrides), rev=rev)
    if rev is None:
        status = _git(REPO, "status", "--porcelain")
        revision = {"commit": _git(REPO, "rev-parse", "HEAD"), "uncommitted_changes": bool(status)}
    else:
        revision = {"commit": _git(REPO, "rev-parse", f"{rev}^{{commit}}"), "uncommitted_changes": False}
    return open_copy(root, name, revision)


def open_copy(root: Path, name: str, revision: dict[str, Any]) -> Copy:
    """The copy in ``root`` (made by :func:`make_copy`) ready to run stages."""
    repo = root / "repo"
    # The copy's own source, not the editable install: editing the checkout during a
    # half-hour run must not change the code the later stages run.
    env = dict(_env(), TALOOP_CACHE_DIR=str(root / "cache"), PYTHONPATH=str(repo / "src"))
    stages = subprocess.run(
        ["dvc", "stage", "list", "--name-only"], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return Copy(name, repo, env, root / "profiles", revision, stages)


def repeat_evaluations(
    copies: Sequence[Copy], first: Sequence[Mapping[str, Any]], repeats: int
) -> dict[str, Any]:
    """Each evaluate stage run ``repeats`` more times in every copy (``dvc repro -f``, on the
    models the pipeline trained), the copies alternating which goes first, and the median of
    all its runs (the first included) per copy. One run of a 20-second stage moves by a third
    when the machine is busy for a moment; the median of several alternated runs does not."""
    stages = [s for s in copies[0].stages if s.startswith("evaluate")]
    seconds = {s: [[first[i][s]["seconds"]] for i in range(len(copies))] for s in stages}
    for n in range(repeats):
        for stage in stages:
            order = range(len(copies)) if n % 2 else reversed(range(len(copies)))
            for i in order:
                seconds[stage][i].append(copies[i].run(stage, "-f", label=f"-repeat{n + 1}")["seconds"])
    out = {}
    for stage, runs in seconds.items():
        medians = [float(np.median(r)) for r in runs]
        out[stage] = {
            "seconds": {c.name: r for c, r in zip(copies, runs, strict=True)},
            "median_seconds": {c.name: m for c, m in zip(copies, medians, strict=True)},
        }
        if len(copies) == 2:
            out[stage]["speedup_of_medians"] = medians[1] / medians[0]
    return {"repeats": repeats, "stages": out}


def run_order(stage_lists: Sequence[Sequence[str]]) -> list[tuple[int, str]]:
    """(copy index, stage) in the order to run them: with equal stage lists, each stage in
    every copy before the next stage, the copy going first alternating (the second run of a
    stage finds the files both read in the page cache); otherwise one copy after the other."""
    if all(list(stages) == list(stage_lists[0]) for stages in stage_lists):
        order = []
        for n, stage in enumerate(stage_lists[0]):
            copies = range(len(stage_lists)) if n % 2 == 0 else reversed(range(len(stage_lists)))
            order.extend((i, stage) for i in copies)
        return order
    return [(i, stage) for i, stages in enumerate(stage_lists) for stage in stages]


def _eval_stage(variant: str, baseline: str) -> str:
    return "evaluate_baseline" if variant == baseline else f"evaluate@{variant}"


def throughput(repo: Path, variants: list[str], stages: Mapping[str, Any], baseline: str) -> dict[str, Any]:
    """Training tokens per second (the trainer's own runtime) and evaluation items per second,
    over the evaluate stage's wall time and over its generation time when profiled."""
    train: dict[str, Any] = {}
    evaluation: dict[str, Any] = {}
    generated: dict[str, float] = {}
    for v in variants:
        stage2 = read_json(repo / f"metrics/stage2/{v}.json")
        runtime = read_json(repo / f"metrics/train/stage2_{v}/metrics.json")["train"]["runtime"]
        train[v] = {"tokens": stage2["train_tokens"], "seconds": runtime,
                    "tokens_per_s": stage2["train_tokens"] / runtime}  # fmt: skip
        predictions = read_jsonl(repo / f"data/predictions/{v}.jsonl")
        stage = stages[_eval_stage(v, baseline)]
        phases = (stage["profile"] or {}).get("phases", {})
        generation_s = sum(phases[p]["seconds"] for p in GENERATION_PHASES if p in phases)
        evaluation[v] = {
            "items": len(predictions),
            "items_per_stage_s": len(predictions) / stage["seconds"],
            "generation_s": generation_s or None,
            "items_per_generation_s": len(predictions) / generation_s if generation_s else None,
        }
        generated[v] = sum(r["output_tokens"] for r in predictions) / stage["seconds"]
    return {"training": train, "evaluation": evaluation, "evaluation_tokens_per_stage_second": generated}


def summarise_run(
    copy: Copy, stages: dict[str, Any], rerun: dict[str, Any], first: dict[str, Any]
) -> dict[str, Any]:
    """One copy's figures: per stage, totals, teacher cache, throughput."""
    again = read_json(copy.repo / "metrics/teacher.json")
    params = yaml.safe_load((copy.repo / "params.yaml").read_text())
    variants = [params["baseline"], *params["compare"]]
    evals = [read_json(p) for p in sorted((copy.repo / "metrics/eval").glob("*.json"))]
    return {
        "rev": copy.rev,
        "precision": ran_in(*evals),
        "params": flatten(validate_params(params).model_dump(mode="json")),  # resolved, defaults included
        "stages": stages,
        "total_seconds": sum(r["seconds"] for r in stages.values()),
        "cache": {
            "first_run": {"hits": first["cache_hits"], "replies": first["replies"]},
            "rerun": {"hits": again["cache_hits"], "replies": again["replies"], "seconds": rerun["seconds"]},
        },
        **throughput(copy.repo, variants, stages, params["baseline"]),
    }


def params_differ(a: Path, b: Path) -> list[str]:
    """The dotted params keys whose values differ between two params.yaml files."""
    fa, fb = (flatten(yaml.safe_load(p.read_text())) for p in (a, b))
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k, ...) != fb.get(k, ...))


def reply_fingerprint(repo: Path) -> str:
    """SHA-256 over every bought reply's (id, sample, rationale): what the students train on,
    blind to columns a revision may add or drop."""
    digest = hashlib.sha256()
    for path in (repo / "data/teacher/responses.jsonl", repo / "data/acquired/responses.jsonl"):
        for row in read_jsonl(path) if path.is_file() else []:
            digest.update(json.dumps([row["id"], row["sample"], row["rationale"]]).encode())
    return digest.hexdigest()


def speedups(new: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """How many times faster the new run is: baseline time / new time, new throughput /
    baseline throughput (above 1: faster). Only what both runs have."""

    def ratio(numerator: float | None, denominator: float | None) -> float | None:
        return numerator / denominator if numerator and denominator else None

    stages = {s: ratio(base["stages"][s]["seconds"], r["seconds"]) for s, r in new["stages"].items()
              if s in base["stages"]}  # fmt: skip
    training = {v: ratio(t["tokens_per_s"], base["training"][v]["tokens_per_s"])
                for v, t in new["training"].items() if v in base["training"]}  # fmt: skip
    evaluation = {
        v: {
            key: ratio(e[key], base["evaluation"][v][key])
            for key in ("items_per_stage_s", "items_per_generation_s")
        }
        for v, e in new["evaluation"].items()
        if v in base["evaluation"]
    }
    return {
        "stages": stages,
        "total": ratio(base["total_seconds"], new["total_seconds"]),
        "training_tokens_per_s": training,
        "evaluation_items_per_s": evaluation,
    }


def bf16_units(copy: Copy, out: Path) -> dict[str, Any]:
    """benchmarks/precision.py in ``copy`` after its pipeline ran: bf16 against fp32 per phase."""
    script = copy.repo / "benchmarks/precision.py"
    cmd = [sys.executable, str(script), "--repo", str(copy.repo), "--out", str(out)]
    subprocess.run(cmd, cwd=copy.repo, env={**copy.env, PROFILE_ENV: str(out.parent / "precision-profile")},
                   check=True)  # fmt: skip
    return read_json(out)


def record_stage_times(results: Mapping[str, Any], profile: str | None, probe_s: float, path: Path) -> None:
    """The run's stage times and this machine's speed probe, under the profile's name, for
    `taloop run`'s estimate (taloop.cli.runtime); other profiles' records stay."""
    record = json.loads(path.read_text()) if path.is_file() else {}
    record[profile or "default"] = {
        "stages": {s: round(r["seconds"], 1) for s, r in results["stages"].items()},
        "probe_s": probe_s,
        "precision": results["precision"],
        "cpu_capability": results["machine"]["numerics"]["cpu_capability"],
        "rev": results["rev"]["commit"],
        "params": results["params"],
    }
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def _workspace(workdir: Path | None) -> Iterator[Path]:
    if workdir is None:
        with tempfile.TemporaryDirectory() as tmp:
            yield Path(tmp)
    else:
        workdir.mkdir(parents=True)
        yield workdir


def benchmark(
    overrides: list[str],
    profile: str | None,
    workdir: Path | None = None,
    baseline_rev: str | None = None,
    eval_repeats: int = 0,
    own_overrides: tuple[list[str], list[str]] = ([], []),
    units: bool = False,
) -> dict[str, Any]:
    """``overrides`` go to both copies, ``own_overrides`` to the new copy and the baseline's
    only (e.g. a param the baseline revision does not have). ``eval_repeats``: see
    :func:`repeat_evaluations`. ``workdir``: run there and leave the
    repository copy (models, DVC cache) and its teacher cache behind (repo/, cache/; the
    baseline's under baseline/), e.g. to run `dvc exp run` variations on top; default: a
    temporary directory. ``units``: then :func:`bf16_units` in the new copy, and its stages
    extrapolated to ``student.bf16: true``."""
    with _workspace(workdir) as tmp:
        copies = [make_copy(tmp, "this", None, profile, overrides + own_overrides[0])]
        if baseline_rev is not None:
            copies.append(
                make_copy(tmp / "baseline", "baseline", baseline_rev, profile, overrides + own_overrides[1])
            )
            for c in copies:
                backend = yaml.safe_load((c.repo / "params.yaml").read_text())["teacher"]["backend"]
                if backend != "simulated":
                    raise SystemExit(
                        f"--baseline-rev needs the simulated teacher ({c.name} has {backend!r}): both "
                        "copies buy their replies, which from an API would be paid twice and could differ"
                    )
        results: list[dict[str, Any]] = [{} for _ in copies]
        for i, stage in run_order([c.stages for c in copies]):
            results[i][stage] = copies[i].run(stage)
        firsts = [read_json(c.repo / "metrics/teacher.json") for c in copies]
        reruns = [c.run("collect_teacher", "-f", label="-rerun") for c in copies]
        runs = [
            summarise_run(c, r, rerun, first)
            for c, r, rerun, first in zip(copies, results, reruns, firsts, strict=True)
        ]
        out: dict[str, Any] = {}
        if eval_repeats:
            out["evaluation_repeats"] = repeat_evaluations(copies, results, eval_repeats)
        if baseline_rev is not None:
            this, base = copies
            out |= {
                "baseline": {"rev_asked": baseline_rev, **runs[1]},
                "speedup": speedups(runs[0], runs[1]),
                "run_order": "alternating stage by stage"
                if this.stages == base.stages
                else "one copy after the other (the stage lists differ)",
                "same_teacher_replies": reply_fingerprint(this.repo) == reply_fingerprint(base.repo),
                "params_differ": params_differ(this.repo / "params.yaml", base.repo / "params.yaml"),
            }
            if not out["same_teacher_replies"] or out["params_differ"]:
                log.warning(
                    "the two revisions did not run the same workload (same teacher replies: %s; params "
                    "differing: %s): compare throughputs rather than stage times",
                    out["same_teacher_replies"],
                    ", ".join(out["params_differ"]) or "none",
                )
        if units and runs[0]["precision"] != "fp32":
            log.warning(
                "--bf16-units: the new copy already ran in %s; nothing to extrapolate", runs[0]["precision"]
            )
        elif units:
            measured = bf16_units(copies[0], tmp / "bf16-units.json")
            out["bf16_forced"] = {"units": measured, "stages_extrapolated": extrapolate(results[0], measured)}
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    return {
        "machine": {**machine, "python": platform.python_version(), "numerics": numerics()},
        "profile": profile,
        "overrides": overrides,
        **({"new_overrides": own_overrides[0]} if own_overrides[0] else {}),
        **({"baseline_overrides": own_overrides[1]} if own_overrides[1] else {}),
        "profile_disjoint_phases": list(DISJOINT_PHASES),  # what each stage's "other_s" leaves out
        **runs[0],
        **out,
    }


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s" if seconds >= 60 else f"{seconds:.1f} s"


def _cache_line(cache: Mapping[str, Any]) -> str:
    return (
        f"Teacher cache: {cache['first_run']['hits']} of {cache['first_run']['replies']} replies from "
        f"the cache on the first run (empty cache), {cache['rerun']['hits']} of "
        f"{cache['rerun']['replies']} on a forced rerun of collect_teacher "
        f"({_minutes(cache['rerun']['seconds'])})."
    )


def performance_table(results: dict[str, Any]) -> str:
    if "baseline" in results:
        return comparison_table(results)
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
    lines.append("")
    lines.append(_cache_line(results["cache"]))
    return "\n".join(lines)


def _rev_label(rev: Mapping[str, Any]) -> str:
    return f"`{rev['commit'][:7]}{'*' if rev['uncommitted_changes'] else ''}`"


def _times(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio:.2f}x"


def comparison_table(results: dict[str, Any]) -> str:
    """The performance table of a run with a baseline: both revisions' figures and the speed-ups."""
    base, speed = results["baseline"], results["speedup"]
    old, new = (
        f"{copy} {_rev_label(r['rev'])}"
        + (f" `{' '.join(results[f'{copy}_overrides'])}`" if results.get(f"{copy}_overrides") else "")
        for copy, r in (("baseline", base), ("new", results))
    )
    lines = [
        f"| stage | {old} | {new} | speed-up | peak memory, {old} | peak memory, {new} |",
        "|---|---|---|---|---|---|",
    ]
    for stage in dict.fromkeys([*base["stages"], *results["stages"]]):
        runs = [r["stages"].get(stage) for r in (base, results)]
        times = [_minutes(r["seconds"]) if r else "–" for r in runs]
        memory = [f"{r['peak_rss_mib']:.0f} MiB" if r else "–" for r in runs]
        ratio = _times(speed["stages"].get(stage))
        lines.append(f"| {stage} | {times[0]} | {times[1]} | {ratio} | {memory[0]} | {memory[1]} |")
    totals = [_minutes(r["total_seconds"]) for r in (base, results)]
    lines.append(f"| **total** | **{totals[0]}** | **{totals[1]}** | **{_times(speed['total'])}** | | |")
    lines += [
        "",
        f"| variant | training tokens/s, {old} | {new} | speed-up "
        f"| evaluation items/s, {old} | {new} | speed-up | generation speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v, ratios in speed["evaluation_items_per_s"].items():
        training = [f"{r['training'][v]['tokens_per_s']:.0f}" for r in (base, results)]
        items = [f"{r['evaluation'][v]['items_per_stage_s']:.2f}" for r in (base, results)]
        lines.append(
            f"| {v} | {training[0]} | {training[1]} | {_times(speed['training_tokens_per_s'][v])} "
            f"| {items[0]} | {items[1]} | {_times(ratios['items_per_stage_s'])} "
            f"| {_times(ratios['items_per_generation_s'])} |"
        )
    lines += _repeats_table(results, old, new)
    lines += [
        "",
        f"Both revisions ran on this machine in one benchmark, {results['run_order']}. Speed-up: "
        "the baseline's time over the new code's, or the new code's throughput over the "
        "baseline's. Evaluation items per second of the evaluate stage's wall time; generation "
        "speed-up: the same over the time spent generating (when both revisions profile it), "
        "without model loading and scoring.",
    ]
    if results["rev"]["uncommitted_changes"]:
        lines.append("`*`: the working tree, with changes not yet committed.")
    own = [
        f"{copy} copy: `{' '.join(results[f'{copy}_overrides'])}`"
        for copy in ("new", "baseline")
        if results.get(f"{copy}_overrides")
    ]
    if results.get("overrides") or own:
        both = [f"both: `{' '.join(results['overrides'])}`"] if results.get("overrides") else []
        lines.append(f"Param overrides: {'; '.join(both + own)}.")
    if not results["same_teacher_replies"] or results["params_differ"]:
        same = "yes" if results["same_teacher_replies"] else "no"
        differing = ", ".join(results["params_differ"]) or "none"
        lines.append(f"The workloads differ (same teacher replies: {same}; params differing: {differing}).")
    prepare = results["stages"].get("prepare_models", {}).get("profile") or {}
    if "dequantise" in prepare.get("phases", {}):
        lines.append("The new code de-quantised its GGUF models: the machine's model cache was empty.")
    lines += ["", f"New code: {_cache_line(results['cache'])}"]
    lines += machine_kinds_table(results)
    return "\n".join(lines)


# The default pipeline on a 2-core machine with avx512_bf16, bf16 autocast (a460440's run).
BF16_MACHINE_RESULTS = REPO / "benchmarks/results/default-avx512_bf16.json"


def _kinds_row(stage: str, bf16_machine: float | None, auto: float, false: float, true: float) -> str:
    other = _minutes(bf16_machine) if bf16_machine is not None else "–"
    return (
        f"| {stage} | {other} | {_minutes(auto)} | {_minutes(false)} | {auto / false:.2f} "
        f"| {_minutes(true)} | {true / auto:.1f}x |"
    )


def machine_kinds_table(results: Mapping[str, Any]) -> list[str]:
    """Stage times on both machine kinds: the earlier run on a CPU with avx512_bf16, and this
    run's copies (``auto`` and forced ``false``) with ``true`` extrapolated from the measured
    bf16/fp32 ratios (benchmarks/precision.py), when this run measured them."""
    forced = results.get("bf16_forced")
    if forced is None or not BF16_MACHINE_RESULTS.is_file():
        return []
    other = json.loads(BF16_MACHINE_RESULTS.read_text())
    numbers = results["machine"]["numerics"]
    kind = numbers["cpu_capability"]
    has = "with" if (numbers["cpu_flags"] or {}).get("avx512_bf16") else "no"
    base, extrapolated = results["baseline"], forced["stages_extrapolated"]
    units = forced["units"]
    lines = [
        "",
        f"Both machine kinds, stage by stage (this run: {kind}, {has} avx512_bf16; `auto` resolved to "
        f"{results['precision']}):",
        "",
        f"| stage | avx512_bf16 machine, bf16 ({_rev_label(other['rev'])}) | {kind}, `auto` "
        f"| {kind}, `false` | `auto` / `false` | {kind}, `true` (extrapolated) | `true` / `auto` |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage, r in results["stages"].items():
        theirs = other["stages"].get(stage)
        times = (theirs["seconds"] if theirs else None, r["seconds"], base["stages"][stage]["seconds"])
        lines.append(_kinds_row(stage, *times, extrapolated[stage]))
    totals = (other["total_seconds"], results["total_seconds"], base["total_seconds"])
    lines.append(_kinds_row("**total**", *totals, sum(extrapolated.values())))
    train, gen = units["training"]["ratio"], units["generation"]["ratio"]
    lines += [
        "",
        f"`true` on this machine: measured bf16/fp32 ratios over {units['steps']} warm-up optimiser "
        f"steps ({train['wall']:.1f}x the whole call; "
        + ", ".join(
            f"{p} {train[p]:.1f}x"
            for p in ("frozen_prefix", "forward", "backward", "optimizer")
            if p in train
        )
        + f") and {units['items']} evaluation items ({gen['wall']:.1f}x; "
        + ", ".join(f"{p} {gen[p]:.1f}x" for p in ("prefill", "decode") if p in gen)
        + "); each stage's student phases in the `auto` run scaled by them (a whole run under `true` "
        "would take the hours the table shows).",
    ]
    return lines


def _repeats_table(results: Mapping[str, Any], old: str, new: str) -> list[str]:
    repeats = results.get("evaluation_repeats")
    if not repeats or "baseline" not in results:
        return []
    lines = [
        "",
        f"Evaluate stages run {repeats['repeats'] + 1} times each, alternated (median wall time):",
        "",
        f"| stage | {old}, median | {new}, median | speed-up of medians "
        f"| every run, {old} | every run, {new} |",
        "|---|---|---|---|---|---|",
    ]
    for stage, r in repeats["stages"].items():
        runs = [" / ".join(f"{x:.1f}" for x in r["seconds"][c]) for c in ("baseline", "this")]
        lines.append(
            f"| {stage} | {r['median_seconds']['baseline']:.1f} s | {r['median_seconds']['this']:.1f} s "
            f"| {_times(r['speedup_of_medians'])} | {runs[0]} | {runs[1]} |"
        )
    return lines


def write_table(results: dict[str, Any]) -> None:
    text = PERFORMANCE_DOC.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    PERFORMANCE_DOC.write_text(f"{head}{START}\n{performance_table(results)}\n{END}{tail}")


def main() -> None:
    logs.setup()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", help="apply profiles/<name>.yaml first (default: params.yaml as is)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="param override")
    for copy in ("new", "baseline"):
        parser.add_argument(
            f"--{copy}-set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"param override for the {copy} copy only (after --set)",
        )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--workdir", type=Path, help="run in this new directory and keep it (repo copy with models, cache)"
    )
    parser.add_argument(
        "--baseline-rev",
        metavar="REV",
        help="also run what git revision REV would ship, alternating stage by stage, and report speed-ups",
    )
    parser.add_argument(
        "--eval-repeats",
        type=int,
        default=0,
        metavar="N",
        help="then run every evaluate stage N more times per copy, alternated, and report medians",
    )
    parser.add_argument(
        "--repeat-in",
        type=Path,
        metavar="WORKDIR",
        help="only the --eval-repeats runs, in the --workdir of the run that wrote --out, added to it",
    )
    parser.add_argument(
        "--bf16-units",
        action="store_true",
        help="then time training and decoding in fp32 and bf16 in the new copy (benchmarks/precision.py)",
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="only regenerate the table in docs/performance.md (from benchmarks/results.json)",
    )
    args = parser.parse_args()
    if args.repeat_in is not None:
        results = json.loads(args.out.read_text())
        copies = [open_copy(args.repeat_in, "this", results["rev"])]
        firsts = [results["stages"]]
        if "baseline" in results:
            copies.append(open_copy(args.repeat_in / "baseline", "baseline", results["baseline"]["rev"]))
            firsts.append(results["baseline"]["stages"])
        results["evaluation_repeats"] = repeat_evaluations(copies, firsts, args.eval_repeats)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    elif not args.table:
        results = benchmark(
            args.set,
            args.profile,
            args.workdir,
            args.baseline_rev,
            args.eval_repeats,
            (args.new_set, args.baseline_set),
            args.bf16_units,
        )
        # in the precision the new copy ran in: what `taloop run` measures on a user's machine
        probe = runtime.speed_probe(bf16=results["precision"] == "bf16", repeats=9)
        results["speed_probe_s"] = probe
        if args.out.is_file():  # benchmarks/study_cost.py's figures are measured apart
            kept = json.loads(args.out.read_text()).get("study_cost")
            results |= {"study_cost": kept} if kept else {}
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        if args.set or args.new_set:
            log.info("not recorded in %s: the new copy ran with overrides", runtime.STAGE_TIMES)
        else:
            record_stage_times(results, args.profile, probe, REPO / runtime.STAGE_TIMES)
    # The performance doc shows the committed default run only, not a study run written elsewhere.
    if args.out.resolve() == RESULTS.resolve():
        write_table(json.loads(RESULTS.read_text()))


if __name__ == "__main__":
    main()
