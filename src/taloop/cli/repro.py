"""`taloop run`: `dvc repro` that says up front what it will do and how long it will take here,
counts the stages as they run, and ends with the verdicts and where the report is."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from taloop.cli import runtime
from taloop.core import paths, precision
from taloop.core.io import read_json
from taloop.params.schema import Params

log = logging.getLogger("taloop")

_RUNNING = re.compile(r"^Running stage '(?P<stage>[^']+)':")
_SKIPPED = re.compile(r"^Stage '(?P<stage>[^']+)' (?:didn't change|is cached)")


def stages_to_run(root: Path = Path()) -> list[str]:
    """The stages `dvc repro` will run, in dvc.yaml's order: those `dvc status` finds changed
    and every stage downstream of them (unchanged now, but their inputs will change). A stage
    DVC then restores from its run-cache takes seconds, so this errs long."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        changed = set(repo.status())
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        pending = [stage for stage in graph if stage.addressing in changed]
        todo = set()
        while pending:
            stage = pending.pop()
            if stage.addressing not in todo:
                todo.add(stage.addressing)
                pending.extend(graph.predecessors(stage))  # the stages that read its outputs
        return [s.name for s in repo.index.stages if s.addressing in todo]


def announce(params: Params, stages: Sequence[str] | None, profile: str) -> runtime.Estimate | None:
    """Log the precision, the estimate and where the report will be; the estimate for later.
    ``stages`` None: dvc repro was given its own targets or options, so no estimate."""
    resolved = precision.student(params.student.bf16)
    reference = runtime.load_reference(profile)
    est = None
    if stages is None:
        log.info("dvc repro with its own targets or options: no time estimate")
    elif not stages:
        log.info("every stage is up to date: nothing to run")
    elif reference is None:
        log.info("no benchmark record for profile %r in %s: no time estimate", profile, runtime.STAGE_TIMES)
    elif runtime.on_gpu():
        log.info("the benchmark's stage times are a CPU's: no time estimate on a GPU machine")
    else:
        if differ := runtime.params_differ(params, reference):
            shown = ", ".join(differ[:6]) + (f" and {len(differ) - 6} more" if len(differ) > 6 else "")
            log.info("params.yaml differs from the benchmarked %s workload in %s: the estimate is for that "
                     "workload", profile, shown)  # fmt: skip
        est = runtime.estimate(stages, reference, runtime.speed_probe(resolved.bf16))
        log.info(
            "%d of %d stages to run, about %s on this machine (%s there on the benchmark's %s "
            "machine in %s; a quick probe runs %.2fx its speed here in %s)",
            len(stages), len(reference["stages"]), runtime.duration(est.total),
            runtime.duration(sum(reference["stages"].get(s, 0.0) for s in stages)),
            reference.get("cpu_capability", "?"), reference.get("precision", "?"),
            1 / est.scale, resolved.name,
        )  # fmt: skip
        if resolved.bf16 and est.scale > 5:
            log.warning(
                "bf16 runs %.0fx slower than the reference here: set student.bf16: auto or false", est.scale
            )
    log.info("the report will be %s (and %s)", paths.REPORT_HTML.resolve(), paths.REPORT_MD)
    return est


def follow(cmd: Sequence[str], stages: Sequence[str] | None, est: runtime.Estimate | None) -> int:
    """Run ``cmd`` (dvc repro), passing its output through, with a line per stage it starts:
    which of how many, and the time left by the estimate. A stage dvc skips or restores from
    its run-cache counts as done."""
    start = time.monotonic()
    done: set[str] = set()
    total = "?" if stages is None else str(len(stages))
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                skipped = _SKIPPED.match(line)
                if skipped and stages is not None and skipped["stage"] in stages:
                    done.add(skipped["stage"])  # restored from the run-cache, or up to date
                if (match := _RUNNING.match(line)) is None:
                    continue
                left = ""
                if est is not None:  # this stage and those not yet done
                    rest = sum(s for name, s in est.seconds.items() if name not in done)
                    left = f", about {runtime.duration(rest)} left"
                done.add(match["stage"])
                log.info("[%d/%s] %s (%s elapsed%s)", len(done), total, match["stage"],
                         runtime.duration(time.monotonic() - start), left)  # fmt: skip
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            log.error("interrupted: stages already done are kept; `make run` again goes on from there")
            return 130
    return proc.returncode


def conclude() -> None:
    """The verdicts of the run and where its report is."""
    if not paths.SUMMARY.is_file():
        return
    summary = read_json(paths.SUMMARY)
    for text in summary["verdicts"].values():
        log.info("verdict: %s", text)
    log.info("report: %s", paths.REPORT_HTML.resolve())
