"""Running a study's cells as DVC experiments, and aggregating them.

``run``: each cell not yet run from this commit (``dvc exp ls``) is queued with ``dvc exp run
--queue -n <study>-<cell> -S ...`` and the queue is worked with ``dvc queue start -j N``. DVC
runs each in its own temporary workspace and restores every stage whose command, deps and
params an earlier run already had (its run-cache), so a cell pays only for the stages its
params reach. With N > 1 the first cell runs alone first, so the stages every cell shares
(data, teacher replies, base models) are in the run-cache before cells run side by side; a
teacher reply is never bought twice either way (the reply cache is shared and locked).

``report``: the cells' params, metrics and predictions read back from the experiments (and
from kept directories of cells run before studies were experiments), aggregated into
reports/studies/<study>.{json,md} and the studies page.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from taloop.params import validate_params
from taloop.params.profiles import flatten
from taloop.studies import aggregate, headroom, keep, page, spec, ta_quality
from taloop.studies.sources import (
    CellFiles,
    ExperimentCell,
    KeptCell,
    headroom_cell,
    load_run,
    params,
    read_json,
)

log = logging.getLogger(__name__)
POLL_S = 2.0


def _dvc(repo: Path, *args: str) -> str:
    done = subprocess.run(["dvc", *args], cwd=repo, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise spec.StudyError(f"dvc {' '.join(args)} failed:\n{(done.stderr or done.stdout).strip()}")
    return done.stdout


def experiments(repo: Path, all_commits: bool = False) -> dict[str, str]:
    """Experiment name -> commit; from HEAD's baseline, or (``all_commits``) from every commit
    with the newest baseline winning a name. Queued and failed ones are not listed."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        found = dvc_repo.experiments.ls(rev="HEAD", num=-1 if all_commits else 1)
    history = subprocess.run(
        ["git", "rev-list", "--first-parent", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.split()
    rank = {sha: i for i, sha in enumerate(history)}
    out: dict[str, str] = {}
    for baseline in sorted(found, key=lambda sha: rank.get(sha, len(rank)), reverse=True):
        for name, sha in found[baseline]:
            if sha:
                out[name] = sha
    return out


def start_workers(repo: Path, jobs: int) -> None:
    """`dvc queue start -j jobs`. Its workers are daemons that inherit the command's output:
    read through a pipe, the call would not return before the queue is empty, so the output
    goes to a file."""
    with tempfile.TemporaryFile(mode="w+") as out:
        done = subprocess.run(
            ["dvc", "queue", "start", "-j", str(jobs)], cwd=repo, stdout=out, stderr=out, check=False
        )
        if done.returncode != 0:
            out.seek(0)
            raise spec.StudyError(f"dvc queue start -j {jobs} failed:\n{out.read().strip()}")


@dataclass(frozen=True)
class Task:
    id: str  # the queue's task id: a name can come back (a failed cell queued again)
    name: str
    status: str  # Queued | Running | Success | Failed


def queue_tasks(repo: Path) -> tuple[list[Task], int]:
    """The tasks `dvc queue status` lists (finished ones stay listed) and its active workers."""
    tasks, active = [], 0
    for line in _dvc(repo, "queue", "status").splitlines():
        fields = line.split()
        if len(fields) >= 4 and re.fullmatch(r"[0-9a-f]{7,}", fields[0]):
            tasks.append(Task(fields[0], fields[1], fields[-1]))
        elif m := re.match(r"Worker status: (\d+) active", line.strip()):
            active = int(m.group(1))
    return tasks, active


@dataclass(frozen=True)
class Finished:
    task: str
    status: str
    seconds: float  # from the queue's start (or the previous cell's end, with one job)


# Polls a task may be missing from `dvc queue status` (it lists active tasks, then queued
# ones, so a task starting in between is in neither) or wait with no worker alive.
PATIENCE = 15


def queue_cells(repo: Path, cells: Sequence[spec.Cell]) -> dict[str, str]:
    """Queue ``cells``; experiment name -> its new task id."""
    before = {t.id for t in queue_tasks(repo)[0]}
    for cell in cells:
        _dvc(repo, "exp", "run", "--queue", "-n", cell.experiment, *cell.set_args())
    new = {t.name: t.id for t in queue_tasks(repo)[0] if t.id not in before}
    lost = [c.experiment for c in cells if c.experiment not in new]
    if lost:
        raise spec.StudyError(f"queued but not listed by dvc queue status: {', '.join(lost)}")
    return new


def work_queue(
    repo: Path, tasks: dict[str, str], jobs: int, on_finished: Callable[[str, Finished], None] | None = None
) -> dict[str, Finished]:
    """``dvc queue start -j jobs``, then wait until every task in ``tasks`` (experiment name ->
    task id) has finished, calling ``on_finished`` with each as it does; a worker that went
    idle while tasks wait is started again."""
    start_workers(repo, jobs)
    start = last = time.monotonic()
    finished: dict[str, Finished] = {}
    missing = dict.fromkeys(tasks, 0)
    stalled = 0
    with tqdm(total=len(tasks), desc="study cells", unit="cell") as bar:
        while len(finished) < len(tasks):
            time.sleep(POLL_S)
            listed, active = queue_tasks(repo)
            status = {t.id: t.status for t in listed}
            for name, task in tasks.items():
                if name in finished:
                    continue
                missing[name] = 0 if task in status else missing[name] + 1
                if missing[name] > PATIENCE:
                    raise spec.StudyError(f"experiment {name} left the queue without a result")
                if status.get(task) in ("Success", "Failed"):
                    now = time.monotonic()
                    finished[name] = Finished(task, status[task], now - (last if jobs == 1 else start))
                    last = now
                    bar.update()
                    log.info("%s: %s (%.0f s)", name, status[task].lower(), finished[name].seconds)
                    if on_finished is not None:
                        on_finished(name, finished[name])
            left = [status.get(t) for n, t in tasks.items() if n not in finished]
            idle = "Queued" in left and "Running" not in left and active == 0
            stalled = stalled + 1 if idle else 0
            if stalled > PATIENCE:
                log.warning("no queue worker running while cells wait: starting the queue again")
                start_workers(repo, jobs)
                stalled = 0
    return finished


def run(
    name: str,
    repo: Path = Path(),
    jobs: int = 1,
    dry_run: bool = False,
    only: Iterable[str] = (),
    keep_cells: bool = False,
) -> dict[str, Finished]:
    """Queue and run the cells of study ``name`` not yet run from this commit nor kept; cells
    already waiting in the queue (an interrupted run) are followed, not queued again.
    ``keep_cells``: each cell that succeeds is kept in git as it finishes (:mod:`keep`)."""
    study = spec.load(name, repo)
    wanted = set(only)
    cells = [c for c in spec.cells(study) if not wanted or c.name in wanted]
    if wanted - {c.name for c in cells}:
        raise spec.StudyError(
            f"study {name}: no cell named {', '.join(sorted(wanted - {c.name for c in cells}))}"
        )
    done = experiments(repo) | {c.experiment: "kept" for c in cells if keep.is_kept(repo, c)}
    pending = {t.name: t.id for t in queue_tasks(repo)[0] if t.status in ("Queued", "Running")}
    todo = [c for c in cells if c.experiment not in done and c.experiment not in pending]
    followed = {c.experiment: pending[c.experiment] for c in cells if c.experiment in pending}
    log.info("study %s: %d cells, %d already run from this commit or kept, %d in the queue, %d to run", name,
             len(cells), len(cells) - len(todo) - len(followed), len(followed), len(todo))  # fmt: skip
    if dry_run:
        for cell in todo:
            log.info(
                "%s: dvc exp run --queue -n %s %s", cell.name, cell.experiment, " ".join(cell.set_args())
            )
        return {}
    by_experiment = {c.experiment: c for c in cells}

    def kept(experiment: str, done: Finished) -> None:
        if done.status == "Success":
            keep.keep(repo, by_experiment[experiment], experiments(repo, all_commits=True)[experiment])

    finished: dict[str, Finished] = {}
    # Alone first when cells run side by side (see the module docstring), unless some are
    # already queued: then everything goes together.
    batches = [todo[:1], todo[1:]] if jobs > 1 and not followed else [todo]
    for i, batch in enumerate(batches):
        tasks = queue_cells(repo, batch) if batch else {}
        if i == 0:
            tasks |= followed
        if tasks:
            finished |= work_queue(repo, tasks, jobs, kept if keep_cells else None)
        failed = [n for n, f in finished.items() if f.status != "Success"]
        if failed:
            raise spec.StudyError(
                f"study {name}: {len(failed)} cells failed: {', '.join(failed)} (see `dvc queue logs <name>`)"
            )
    return finished


STAGE_LINE = re.compile(
    r"^(?:Running stage '(?P<ran>[^']+)'"
    r"|Stage '(?P<unchanged>[^']+)' didn't change, skipping"
    r"|Stage '(?P<restored>[^']+)' is cached - skipping run, checking out outputs)"
)


def stage_outcomes(log_text: str) -> dict[str, str]:
    """Stage -> "ran", "unchanged" or "restored" (from the run-cache), as DVC's own output of
    one experiment (`dvc queue logs`) says."""
    out = {}
    for line in log_text.splitlines():
        m = STAGE_LINE.match(line.strip())
        if m:
            kind = next(k for k, v in m.groupdict().items() if v)
            out[m.group(kind)] = kind
    return out


def cell_log(repo: Path, task: str) -> str:
    """DVC's output of one queued experiment (``task``: its task id, or its name when unique)."""
    return _dvc(repo, "queue", "logs", task)


def _kept(study: str, root: Path) -> list[CellFiles]:
    folder = root / spec.KEPT_DIR / study
    if not folder.is_dir():
        return []
    return [KeptCell(d.name, d) for d in sorted(folder.iterdir()) if (d / "params.yaml").is_file()]


def study_cells(name: str, repo: Path = Path(), kept_only: bool = False) -> list[CellFiles]:
    """The cells of study ``name`` and of the studies it includes: each cell's experiment
    where it has one (the newest), else its kept directory."""
    study = spec.load(name, repo)
    found = {} if kept_only else experiments(repo, all_commits=True)
    out: list[CellFiles] = []
    for member in dict.fromkeys([*study.include, name]):
        by_name: dict[str, CellFiles] = {c.name: c for c in _kept(member, repo)}
        for exp, sha in found.items():
            if exp.startswith(f"{member}-"):
                by_name[exp.removeprefix(f"{member}-")] = ExperimentCell(
                    exp.removeprefix(f"{member}-"), repo, sha
                )
        out.extend(by_name[k] for k in sorted(by_name))
    return out


def _note(kept: int, experiments: int) -> str:
    return f"{kept + experiments} cells: {kept} kept, {experiments} experiments"


def aggregate_study(name: str, cells: Sequence[CellFiles], repo: Path = Path()) -> tuple[dict[str, Any], str]:
    study = spec.load(name, repo)
    from_experiments = sum(isinstance(c, ExperimentCell) for c in cells)
    if study.report == "headroom":
        # kept headroom cells are one JSON file each (they ran outside the pipeline)
        pipeline = {c.name: headroom_cell(c) for c in cells}
        kept = [p for p in sorted((repo / spec.KEPT_DIR / name).glob("*.json")) if p.stem not in pipeline]
        legacy = [json.loads(p.read_text()) for p in kept]
        note = _note(len(cells) - from_experiments + len(kept), from_experiments)
        summary = {**headroom.summarise([*legacy, *pipeline.values()]), "note": note}
        return summary, headroom.markdown(summary)
    if study.report == "ta_quality":
        runs = [
            load_run(c)
            | {
                "calibration": read_json(c, "metrics/calibration.json"),
                "resolved": flatten(validate_params(params(c), c.name).model_dump(mode="json")),
            }
            for c in cells
        ]
        note = _note(len(cells) - from_experiments, from_experiments)
        summary = {**ta_quality.summarise(runs, study.arms), "note": note}
        return summary, ta_quality.markdown(summary)
    default_params = repo / "params.yaml"
    default = flatten(yaml.safe_load(default_params.read_text())) if default_params.is_file() else None
    note = _note(len(cells) - from_experiments, from_experiments)
    result = {**aggregate.study([load_run(c) for c in cells], default=default), "note": note}
    return result, aggregate.markdown(result)


def report(name: str, repo: Path = Path(), kept_only: bool = False) -> Path:
    cells = study_cells(name, repo, kept_only)
    if not cells and spec.load(name, repo).report != "headroom":
        raise spec.StudyError(f"study {name}: no cell has run yet (taloop study run {name})")
    result, markdown = aggregate_study(name, cells, repo)
    out = repo / spec.KEPT_DIR / name
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown)
    figure = page.main_figure(name, result)
    if figure is not None:
        out.with_suffix(".svg").write_text(figure)
    titles = {n: f"{n}: {spec.load(n, repo).description}" for n in spec.available(repo)}
    (repo / spec.KEPT_DIR / "index.html").write_text(page.page(repo / spec.KEPT_DIR, titles))
    log.info("study %s: %s -> %s.{json,md}", name, result["note"], out)
    return out.with_suffix(".md")
