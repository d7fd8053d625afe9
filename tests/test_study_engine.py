"""A study end to end on the tiny profile: 2 values of a ta.* param x 2 seeds, queued with
`dvc exp run --queue` and run with `dvc queue start` (taloop study run), once with one job
and once with two in a fresh copy, keeping each cell in git as it finishes; DVC's own output
says which stages ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taloop.studies import engine
from taloop.studies.sources import ExperimentCell
from taloop.teachers.cache import ReplyCache

from .pipeline import copy_repo, run

STUDY = """\
description: tiny TA sweep
cell: "{ta.scorer}-s{seed}"
variants: [ta_loop]
sweep:
  ta.scorer: [mean_logprob, min_logprob]
seeds: [0, 1]
"""
# What a TA change must not reach: everything up to the student's own samples. (acquire reads
# ta.*, as it scores with the TA under active acquisition; under the profile's random
# acquisition it rewrites the same empty outputs in seconds, so sample_student is restored.)
UPSTREAM = ("prepare_data", "collect_teacher", "prepare_models", "warmup", "sample_student")
BUYING = {"collect_teacher": "metrics/teacher.json", "calibrate_signals": "metrics/calibration.json"}


def _study_repo(dest: Path) -> Path:
    repo = copy_repo(dest)
    (repo / "studies/tiny.yaml").write_text(STUDY)
    run(repo, "git", "add", "studies/tiny.yaml")
    run(repo, "git", "commit", "-qm", "tiny study")
    return repo


@pytest.fixture(scope="module")
def one_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = _study_repo(tmp_path_factory.mktemp("study1") / "repo")
    run(repo, "taloop", "study", "run", "tiny")
    return repo


@pytest.fixture(scope="module")
def two_jobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = _study_repo(tmp_path_factory.mktemp("study2") / "repo")
    run(repo, "taloop", "study", "run", "tiny", "-j", "2", "--keep")
    return repo


def _experiments(repo: Path) -> dict[str, str]:
    # every commit's: keeping a cell commits, so HEAD moves on from the cells' baseline
    return engine.experiments(repo, all_commits=True)


def _outcomes(repo: Path) -> dict[str, dict[str, str]]:
    return {name: engine.stage_outcomes(engine.cell_log(repo, name)) for name in _experiments(repo)}


def _metric(repo: Path, experiment: str, path: str) -> dict:
    text = ExperimentCell(experiment, repo, _experiments(repo)[experiment]).text(path)
    assert text is not None, f"{experiment}: no {path}"
    return json.loads(text)


@pytest.mark.slow
def test_a_ta_sweep_point_restores_every_stage_upstream_of_ta_scoring(one_job: Path) -> None:
    outcomes = _outcomes(one_job)
    assert sorted(outcomes) == [
        f"tiny-{s}-s{seed}" for s in ("mean_logprob", "min_logprob") for seed in (0, 1)
    ]
    for seed in (0, 1):
        second = outcomes[f"tiny-min_logprob-s{seed}"]
        for stage in UPSTREAM:
            assert second[stage] in ("unchanged", "restored"), (seed, stage, second)
        assert second["calibrate_signals"] == second["score_signals"] == "ran", second
        # ft reads no signal: its plan is unchanged and its training restored, not rerun
        assert second["train_baseline"] in ("unchanged", "restored"), second
    # seed 1's first cell shares the data, teacher replies and base models with seed 0's
    first_of_seed_1 = outcomes["tiny-mean_logprob-s1"]
    for stage in ("prepare_data", "collect_teacher", "prepare_models"):
        assert first_of_seed_1[stage] in ("unchanged", "restored"), first_of_seed_1
    assert first_of_seed_1["warmup"] == "ran"
    result = json.loads((one_job / "reports/studies/tiny.json").read_text())
    assert result["note"] == "4 cells: 0 kept, 4 experiments"
    assert {s["stage2"] for s in result["seeds"]} == {0, 1} and set(result["accuracy"]) == {"ft", "ta_loop"}
    assert "<h2>tiny: tiny TA sweep</h2>" in (one_job / "reports/studies/index.html").read_text()
    done = run(one_job, "taloop", "study", "run", "tiny").stderr
    assert "4 already run from this commit or kept, 0 in the queue, 0 to run" in done


def _bought(repo: Path) -> int:
    """Replies sent to the teacher over every stage that ran (restored stages bought nothing)."""
    total = 0
    for name, stages in _outcomes(repo).items():
        for stage, metrics in BUYING.items():
            if stages.get(stage) == "ran":
                m = _metric(repo, name, metrics)
                total += (m["teacher"] if stage == "calibrate_signals" else m)["queries_sent"]
    return total


@pytest.mark.slow
def test_each_kept_cell_is_committed_as_it_finishes_and_counts_as_run(two_jobs: Path) -> None:
    log = run(two_jobs, "git", "log", "--format=%s").stdout.splitlines()
    kept = [line for line in log if line.startswith("study tiny: cell ")]
    assert len(kept) == 4, log  # one commit per cell
    assert run(two_jobs, "git", "status", "--porcelain", "reports/studies/tiny").stdout == ""
    for name in _experiments(two_jobs):
        folder = two_jobs / "reports/studies/tiny" / name.removeprefix("tiny-")
        for path in ("metrics/eval/ta_loop.json", "metrics/calibration.json"):
            assert json.loads((folder / path).read_text()) == _metric(two_jobs, name, path), (name, path)
        assert (folder / "data/predictions/ta_loop.jsonl").is_file()
        assert not (folder / "metrics/plots").exists()
    # from the new HEAD no experiment is "from this commit": the kept folders are what says run
    assert engine.experiments(two_jobs) == {}
    again = run(two_jobs, "taloop", "study", "run", "tiny", "--dry-run")
    assert "4 already run from this commit or kept, 0 in the queue, 0 to run" in again.stdout + again.stderr
    assert json.loads((two_jobs / "reports/studies/tiny.json").read_text())["note"].startswith("4 cells")


@pytest.mark.slow
def test_two_jobs_buy_no_reply_twice_and_give_the_one_job_metrics(one_job: Path, two_jobs: Path) -> None:
    for repo in (one_job, two_jobs):
        assert _bought(repo) == len(ReplyCache(repo / ".taloop-cache")) > 0
    # every experiment is whole: applied to the workspace, its lock, params and cached outputs agree
    for name in sorted(_experiments(two_jobs)):
        run(two_jobs, "dvc", "exp", "apply", name)
        assert run(two_jobs, "dvc", "status").stdout.strip().endswith("Data and pipelines are up to date.")
    assert sorted(_experiments(two_jobs)) == sorted(_experiments(one_job)) and len(_experiments(one_job)) == 4
    for name in _experiments(one_job):
        for path in ("metrics/eval/ft.json", "metrics/eval/ta_loop.json", "metrics/signals.json"):
            assert _metric(two_jobs, name, path) == _metric(one_job, name, path), (name, path)


@pytest.mark.slow
def test_a_study_is_shared_with_exp_push_to_a_bare_git_repo_and_a_directory_remote(
    one_job: Path, tmp_path: Path
) -> None:
    """What docs/studies.md's "Sharing a study" says: push the experiments (git refs to a bare
    repository, their outputs to a DVC remote); a teammate's fresh clone pulls them and
    aggregates the same numbers without running anything."""
    bare, storage, mate = tmp_path / "team.git", tmp_path / "dvc-storage", tmp_path / "mate"
    run(tmp_path, "git", "init", "-q", "--bare", str(bare))
    run(one_job, "git", "remote", "add", "team", str(bare))
    run(one_job, "dvc", "remote", "add", "--local", "-d", "storage", str(storage))
    run(one_job, "git", "push", "-q", "team", "HEAD:refs/heads/main")
    names = sorted(engine.experiments(one_job))
    run(one_job, "dvc", "exp", "push", "team", *names)
    assert sorted(run(one_job, "dvc", "exp", "list", "team", "--name-only").stdout.split()) == names
    run(tmp_path, "git", "clone", "-q", "-b", "main", str(bare), str(mate))
    run(mate, "dvc", "remote", "add", "--local", "-d", "storage", str(storage))
    run(mate, "dvc", "exp", "pull", "origin", *names)
    run(mate, "taloop", "study", "report", "tiny")
    mine = json.loads((one_job / "reports/studies/tiny.json").read_text())
    theirs = json.loads((mate / "reports/studies/tiny.json").read_text())
    assert theirs == mine and theirs["note"] == "4 cells: 0 kept, 4 experiments"


@pytest.mark.slow
def test_exp_show_over_a_study_fits_160_columns_with_swept_params_and_headline(one_job: Path) -> None:
    """The view of a study's experiments that docs/studies.md shows."""
    shown = run(
        one_job, "dvc", "exp", "show", "--no-pager", "--drop", ".*",
        "--keep", r"Experiment|acc\.|usd$|ta_auc$", "--keep", r"ta\.scorer|warmup\.seed",
        env={"COLUMNS": "160"},
    ).stdout  # fmt: skip
    lines = shown.splitlines()
    assert max(map(len, lines)) <= 160, shown
    header = next(line for line in lines if "Experiment" in line)
    for column in ("ta_loop", "usd", "ta_auc", "ta.scorer", "warmup.seed"):
        assert column in header, shown
    assert sum("tiny-" in line for line in lines) == 4, shown
