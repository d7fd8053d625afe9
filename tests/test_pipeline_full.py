"""End to end on tiny in-process models: every stage, every default variant, the report, a
stage2-only experiment that must not rerun anything upstream of train_stage2, a budget
experiment compared with the first run, and active acquisition. Tests that change the run
take the ``experiment`` fixture, which restores the first run afterwards."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from taloop.cli.repro import stages_to_run
from taloop.core import precision
from taloop.method.acquisition import warm_count
from taloop.params import load_params
from taloop.params.schema import TA_MEASURES
from taloop.reporting import ta_map

from .conftest import REPO, chromium
from .pipeline import copy_repo, run, trace_dir

TASKS = set(load_params(REPO / "params.yaml").data.tasks)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = copy_repo(tmp_path_factory.mktemp("full") / "repo")
    result = run(repo, "taloop", "run")  # dvc repro, as `make run` runs it
    (repo.parent / "taloop-run.log").write_text(result.stdout + result.stderr)
    run(repo, "git", "add", "dvc.lock")
    run(repo, "git", "commit", "-qm", "tiny run")
    return repo


@pytest.fixture
def experiment(tiny_run: Path) -> Iterator[Path]:
    """The tiny run for a test that changes it (an experiment applied to the workspace, a
    stage rerun in place): afterwards the workspace is the first run's again (params and
    lock from git, outputs from the DVC cache), so no other test sees what it did."""
    yield tiny_run
    run(tiny_run, "git", "checkout", "--", ".")
    run(tiny_run, "dvc", "checkout", "--force")
    assert run(tiny_run, "dvc", "status").stdout.strip().endswith("Data and pipelines are up to date.")


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_every_variant_is_evaluated_against_the_baseline(tiny_run: Path) -> None:
    for variant in ("ft", "two_stage", "ta_loop", "oracle"):
        metrics = _json(tiny_run / f"metrics/eval/{variant}.json")
        assert 0 <= metrics["ci_low"] <= metrics["accuracy"] <= metrics["ci_high"] <= 1
        assert set(metrics["per_task"]) == TASKS
        assert 0 <= metrics["vs_baseline"]["p_value"] <= 1
        predictions = (tiny_run / f"data/predictions/{variant}.jsonl").read_text().splitlines()
        assert len(predictions) == metrics["n"] == 12
        assert (tiny_run / f"models/stage2/{variant}/adapter_model.safetensors").is_file()
    assert _json(tiny_run / "metrics/eval/oracle.json")["uses_gold"] is True


@pytest.mark.slow
def test_adapters_name_their_upstream_base_and_carry_a_model_card(tiny_run: Path) -> None:
    origin = _json(tiny_run / "models/base/student/taloop_origin.json")
    assert origin == {"alias": "tiny-random", "upstream": "tiny-random", "quantisation": "none"}
    for adapter in ("warmup", "stage2/ft", "stage2/ta_loop", "release/ft", "release/ta_loop"):
        folder = tiny_run / "models" / adapter
        assert _json(folder / "adapter_config.json")["base_model_name_or_path"] == origin["upstream"]
        assert not list(folder.glob("checkpoint-*")), "no optimizer states in DVC outs"
        assert "base_model: tiny-random" in (folder / "README.md").read_text()
    card = (tiny_run / "models/release/ta_loop/README.md").read_text()
    ev = _json(tiny_run / "metrics/eval/ta_loop.json")
    assert f"| test accuracy | {100 * ev['accuracy']:.1f}% (95% CI {100 * ev['ci_low']:.1f}%" in card
    assert f"p = {ev['vs_baseline']['p_value']:.3f}" in card and "simulated" in card
    assert "see models/release/ta_loop" in (tiny_run / "models/stage2/ta_loop/README.md").read_text()
    release = {p.name for p in (tiny_run / "models/release/ta_loop").iterdir()}
    assert {p.name for p in (tiny_run / "models/stage2/ta_loop").iterdir()} == release


@pytest.mark.slow
def test_training_curves_are_dvc_plots_from_dvclive_itself(tiny_run: Path) -> None:
    shown = json.loads(run(tiny_run, "dvc", "plots", "show", "--json").stdout)["data"]
    for curves in ("warmup", "stage2_ft", "stage2_ta_loop"):
        assert f"metrics/train/{curves}/plots/metrics/loss.tsv" in shown
    assert "metrics/plots/train_loss" not in " ".join(shown), "no copy made after the fact"


# The README's view for comparing experiments (section "Comparing experiments").
EXP_VIEW = ("--drop", ".*", "--keep", r"Experiment|acc\.|usd$|ta_auc$|precision$")


@pytest.mark.slow
def test_readme_exp_show_view_leads_with_what_users_compare(tiny_run: Path) -> None:
    assert f"dvc exp show --drop '.*' --keep '{EXP_VIEW[3]}'" in (REPO / "README.md").read_text()
    swept = ("--keep", r"stage2\.mode")  # as the README says: add the params you swept
    csv = run(tiny_run, "dvc", "exp", "show", "--csv", *EXP_VIEW, *swept).stdout.splitlines()
    variants = ["ft", "two_stage", "ta_loop", "oracle"]
    assert csv[0].split(",") == [
        "Experiment",
        *(f"acc.{v}" for v in variants),
        "usd",
        "ta_auc",
        "precision",
        "stage2.mode",
    ]
    headline = _json(tiny_run / "metrics/headline.json")
    ev = _json(tiny_run / "metrics/eval/ta_loop.json")
    assert headline["acc"]["ta_loop"].startswith(f"{100 * ev['accuracy']:.1f}% ")
    assert headline["acc"]["ta_loop"].endswith(f" p={ev['vs_baseline']['p_value']:.2f}")


@pytest.mark.slow
def test_taloop_run_counts_the_stages_and_ends_with_the_verdicts(tiny_run: Path) -> None:
    log = (tiny_run.parent / "taloop-run.log").read_text()
    stages = run(tiny_run, "dvc", "stage", "list", "--name-only").stdout.split()
    assert f"[1/{len(stages)}] prepare_data" in log and f"[{len(stages)}/{len(stages)}] report" in log
    assert f"the report will be {(tiny_run / 'reports/report.html').resolve()}" in log
    summary = _json(tiny_run / "metrics/summary.json")
    for text in summary["verdicts"].values():
        assert f"verdict: {text}" in log
    assert log.rstrip().endswith(f"report: {(tiny_run / 'reports/report.html').resolve()}")


@pytest.mark.slow
def test_taloop_run_passes_dvc_options_through(tiny_run: Path) -> None:
    result = run(tiny_run, "taloop", "run", "-s", "report")
    out = result.stdout + result.stderr
    assert "dvc repro with its own targets or options: no time estimate" in out
    assert "Stage 'report' didn't change, skipping" in out
    assert "verdict:" not in out  # the report may not be current after a partial repro


@pytest.mark.slow
def test_the_precision_the_student_ran_in_is_recorded(tiny_run: Path) -> None:
    """The test profile says `student.bf16: auto`: what it resolved to on this machine is in the
    model manifests, every stage's metrics, the run card and `dvc exp show`'s headline."""
    expected = precision.resolve("auto")
    for model in ("warmup", "stage2/ft", "stage2/ta_loop", "release/ta_loop"):
        manifest = _json(tiny_run / "models" / model / "manifest.json")
        assert manifest["precision"] == expected.record()
    for metrics in ("samples.json", "stage2/oracle.json", "eval/two_stage.json"):
        assert _json(tiny_run / "metrics" / metrics)["student_precision"] == expected.name
    run_card = _json(tiny_run / "metrics/summary.json")["run"]
    assert run_card["precision"] == {"bf16_setting": "auto", "resolved": expected.name}
    assert (
        f"| student precision | {expected.name} (student.bf16: auto) |"
        in (tiny_run / "reports/report.md").read_text()
    )
    assert _json(tiny_run / "metrics/headline.json")["precision"] == expected.name


@pytest.mark.slow
def test_variants_share_the_teacher_data(tiny_run: Path) -> None:
    stage2 = [_json(p) for p in (tiny_run / "metrics/stage2").glob("*.json")]
    assert len(stage2) == 4
    assert len({m["teacher_data_fingerprint"] for m in stage2}) == 1
    assert {m["teacher_replies"] for m in stage2} == {16}
    by_name = {m["variant"]: m for m in stage2}
    assert by_name["ft"]["examples_trained"] == 16 and not by_name["ft"]["from_warmup"]
    assert by_name["two_stage"]["examples_trained"] == 12 and by_name["two_stage"]["from_warmup"]
    # Equal optimiser budget: ft's 4 steps (16 replies / 4 per batch, 1 epoch) for every variant,
    # the two-stage ones after the warm-up's 1 step (4 replies), the oracle revisiting its rows.
    assert {m["optimizer_steps_total"] for m in stage2} == {4}
    assert by_name["ft"]["steps"] == 4
    assert {by_name[v]["steps"] for v in ("two_stage", "ta_loop", "oracle")} == {3}
    for m in stage2:
        per_task = m["per_task"].values()
        assert sum(t["replies"] for t in per_task) == (16 if m["variant"] == "ft" else 12)
        assert sum(t["kept"] for t in per_task) == m["examples_trained"] and m["train_tokens"] > 0
    assert all(t["wrong_loss_share"] == 0 for t in by_name["oracle"]["per_task"].values())
    plan = by_name["ta_loop"]["signal_plan"]
    # the default weighting (chosen on validation: reports/studies/ta_quality_val.md) has no combination
    assert plan["weighting"] == "calibrated" and "combine" not in plan
    calibration = _json(tiny_run / "metrics/calibration.json")
    assert calibration["split"] == "val" and calibration["replies"] == 8  # 2 validation items x 4 tasks
    assert by_name["ta_loop"]["signal_plan"]["measure"] == calibration["chosen"]["measure"]


@pytest.mark.slow
def test_a_forced_rerun_gives_byte_identical_predictions(tiny_run: Path, tmp_path: Path) -> None:
    first = {p.name: p.read_bytes() for p in (tiny_run / "data/predictions").glob("*.jsonl")}
    signals = (tiny_run / "data/signals.jsonl").read_bytes()
    run(tiny_run, "dvc", "repro", "--force")
    again = {p.name: p.read_bytes() for p in (tiny_run / "data/predictions").glob("*.jsonl")}
    assert len(first) == 4 and again == first
    assert (tiny_run / "data/signals.jsonl").read_bytes() == signals


@pytest.mark.slow
def test_signals_cover_stage2_replies(tiny_run: Path) -> None:
    rows = [json.loads(x) for x in (tiny_run / "data/signals.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {r["stage"] for r in rows} == {"stage2"}
    for r in rows:
        assert r["sc"] in (0.5, 1.0)
        for whose in ("teacher", "student"):
            # log-probabilities: the least likely token is at most the mean, both below 0
            assert r[f"ta_{whose}_min_logprob"] <= r[f"ta_{whose}_mean_logprob"] < 0
            assert all(f"ta_{whose}_{m}" in r for m in TA_MEASURES)
        assert "ta_conf_teacher" not in r  # ta.scorer: auto decides at stage 2
    metrics = _json(tiny_run / "metrics/signals.json")
    assert metrics["diagnostic_uses_gold"] is True and "auc_ta_teacher_flags_wrong_teacher" in metrics
    chosen = _json(tiny_run / "metrics/calibration.json")["chosen"]["measure"]
    assert metrics["ta_summary_measure"] == chosen
    assert set(metrics["signals"][f"ta_teacher_{chosen}"]["per_group"]) == TASKS
    assert (tiny_run / "metrics/train/warmup/plots/metrics/train/loss.tsv").is_file()


@pytest.mark.slow
def test_stages_to_run_are_the_changed_ones_and_all_downstream(experiment: Path) -> None:
    assert stages_to_run(experiment) == []
    path = experiment / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["stage2"]["learning_rate"] = 0.0031
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    stages = run(experiment, "dvc", "stage", "list", "--name-only").stdout.split()
    expected = [s for s in stages if s.startswith(("train_", "evaluate")) or s == "report"]
    assert stages_to_run(experiment) == expected


@pytest.mark.slow
def test_stage2_experiment_reruns_nothing_upstream(experiment: Path) -> None:
    out = run(experiment, "dvc", "exp", "run", "-S", "stage2.learning_rate=0.004").stdout
    for stage in ("prepare_data", "collect_teacher", "prepare_models", "warmup", "sample_student",
                  "calibrate_signals", "score_signals", "plan_stage2"):  # fmt: skip
        assert f"'{stage}' didn't change" in out, out
    assert "Running stage 'train_stage2@ta_loop'" in out


@pytest.mark.slow
def test_a_weighting_change_retrains_only_the_variants_whose_plan_it_changes(experiment: Path) -> None:
    """ft, two_stage and oracle read no signal: their stage-2 plans come out as before, so DVC
    keeps their training and evaluation."""
    before = {v: (experiment / f"data/stage2/{v}.json").read_bytes() for v in ("ft", "two_stage", "ta_loop")}
    out = run(
        experiment, "dvc", "exp", "run", "-S", "stage2.mode=filter", "-S", "signals.selection=as_listed"
    ).stdout
    assert "Running stage 'plan_stage2'" in out and "'score_signals' didn't change" in out, out
    for stage in ("train_baseline", "train_stage2@two_stage", "train_stage2@oracle", "evaluate_baseline"):
        assert f"'{stage}' didn't change" in out, out
    assert (experiment / "data/stage2/ft.json").read_bytes() == before["ft"]
    assert (experiment / "data/stage2/ta_loop.json").read_bytes() != before["ta_loop"]
    assert "Running stage 'train_stage2@ta_loop'" in out


def _matches(shown: str, value: float, scale: float = 100.0) -> bool:
    """``shown`` is ``value`` (times ``scale``) rounded to the decimals it displays."""
    text = shown.strip().replace("\N{MINUS SIGN}", "-").rstrip("%").lstrip("$")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(float(text) - scale * value) <= 0.5 * 10**-decimals + 1e-9


def _ablation_rows(report: str) -> tuple[list[str], list[list[str]]]:
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| variant |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return header, rows


@pytest.mark.slow
def test_report_numbers_equal_the_metrics_they_came_from(tiny_run: Path) -> None:
    report = (tiny_run / "reports/report.md").read_text()
    teacher = _json(tiny_run / "metrics/teacher.json")
    header, rows = _ablation_rows(report)
    task_columns = header[1 : header.index("mean")]
    tasks = [c.split(" (n=")[0] for c in task_columns]
    assert set(tasks) == TASKS
    assert [r[0].removesuffix(" (uses gold)") for r in rows] == ["ft", "two_stage", "ta_loop", "oracle"]
    for row in rows:
        cells = dict(zip(header, row, strict=True))
        metrics = _json(tiny_run / f"metrics/eval/{row[0].removesuffix(' (uses gold)')}.json")
        for task, column in zip(tasks, task_columns, strict=True):
            shown, lo, hi = re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", cells[column]).groups()
            per_task = metrics["per_task"][task]
            assert column == f"{task} (n={per_task['n']})"
            assert _matches(shown, per_task["accuracy"]), (task, cells[column])
            assert _matches(lo, per_task["ci_low"]) and _matches(hi, per_task["ci_high"])
        assert _matches(cells["mean"], metrics["accuracy"])
        correct, n = map(int, cells["correct"].split("/"))
        assert n == metrics["n"] and correct / n == pytest.approx(metrics["accuracy"])
        lo, hi = cells["95% CI"].split(" to ")
        assert _matches(lo, metrics["ci_low"]) and _matches(hi, metrics["ci_high"])
        assert _matches(cells["teacher USD"], teacher["usd_value"], scale=1.0)
        if metrics["variant"] == "ft":
            continue
        cmp = metrics["vs_baseline"]
        assert _matches(cells["p"], cmp["p_value"], scale=1.0)
        if cmp["mde"] is None:
            assert cells["MDE (80% power)"] == "none detectable"
        else:
            assert _matches(cells["MDE (80% power)"].split()[0], cmp["mde"])
        rel = cells["relative vs ft (95% CI)"]
        if cmp["relative_improvement"] is not None:
            shown, ci = rel.split(" (")
            assert _matches(shown, cmp["relative_improvement"])
            lo, hi = ci.rstrip(")").split(" to ")
            assert _matches(lo, cmp["relative_ci_low"]) and _matches(hi, cmp["relative_ci_high"])
    spend = next(line for line in report.splitlines() if line.startswith("| teacher spend |"))
    assert f"for {teacher['replies']} replies" in spend
    assert _matches(spend.split("|")[2].split()[0], teacher["usd_value"], scale=1.0)
    summary = _json(tiny_run / "metrics/summary.json")
    for variant, text in summary["verdicts"].items():
        assert f"- {text}" in report
        assert f"p = {_json(tiny_run / f'metrics/eval/{variant}.json')['vs_baseline']['p_value']:.3f}" in text
    # the tiny student lies outside any map the default setting publishes, or there is none yet
    assert summary["ta_map"]["status"] in ("no_map", "outside")
    assert ta_map.sentence(summary["ta_map"]) in report


@pytest.mark.slow
def test_report_html_is_self_contained_and_renders(tiny_run: Path, tmp_path: Path) -> None:
    page = tiny_run / "reports/report.html"
    html = page.read_text()
    assert "http://" not in html and "https://" not in html
    assert 'src="figures/' not in html and html.count("data:image/png;base64,") == 7
    browser = chromium()
    shot = tmp_path / "report.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    with Image.open(shot) as img:
        gray = np.asarray(img.convert("L"))
    assert gray.shape == (2400, 1200)
    # text, tables and figures: a blank or error page is almost entirely one colour
    assert (gray < 200).mean() > 0.01


@pytest.mark.slow
def test_compare_draws_a_line_per_variant_across_budgets(experiment: Path) -> None:
    run(experiment, "dvc", "exp", "run", "-S", "budget.queries=24")
    run(experiment, "taloop", "compare")
    result = _json(experiment / "reports/compare.json")
    budget = result["series"]["budget"]
    assert set(budget) == {"ft", "two_stage", "ta_loop", "oracle"}
    for points in budget.values():
        assert [x for x, _ in points] == [16.0, 24.0]
    html = (experiment / "reports/compare.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "https://" not in html


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_active_acquisition_buys_the_rest_on_the_least_sure_questions(experiment: Path) -> None:
    # 16 of the 24 train questions: 4 up front, then 12 chosen from the other 20 (candidates
    # capped by what is left unbought in each task)
    out = run(experiment, "dvc", "exp", "run", "-S", "acquisition.mode=active", "-S", "budget.queries=16")
    params = load_params(experiment / "params.yaml")
    queries = params.budget.queries
    upfront = _jsonl(experiment / "data/teacher/responses.jsonl")
    acquired = _jsonl(experiment / "data/acquired/responses.jsonl")
    assert len(upfront) == warm_count(queries, params.warmup.fraction)
    assert len(upfront) + len(acquired) == queries
    assert not {r["id"] for r in upfront} & {r["id"] for r in acquired}
    scores = _jsonl(experiment / "data/acquired/scores.jsonl")
    assert {s["id"] for s in scores if s["chosen"]} == {r["id"] for r in acquired}
    for task in TASKS:
        chosen = [s["sureness"] for s in scores if s["task"] == task and s["chosen"]]
        left = [s["sureness"] for s in scores if s["task"] == task and not s["chosen"]]
        assert chosen and left and max(chosen) <= min(left)
    metrics = _json(experiment / "metrics/acquisition.json")
    assert metrics["teacher"]["replies"] == len(acquired) and metrics["scored_questions"] == len(scores)
    assert metrics["teacher"]["budget"]["queries"] == queries - len(upfront)  # what collect left
    # stage 2 is exactly what was acquired; ft trains on both purchases
    signals = _jsonl(experiment / "data/signals.jsonl")
    assert {(r["id"], r["sample"]) for r in signals} == {(r["id"], r["sample"]) for r in acquired}
    # score_signals took the student's samples from acquire instead of drawing them again
    questions = len({r["id"] for r in acquired})
    assert f"reusing acquire's student samples for {questions} of {questions}" in out.stdout + out.stderr
    sampled = {s["id"]: s for s in scores}
    assert all(r["student_output"] == sampled[r["id"]]["student_output"] for r in signals)
    # ... and the TA's scores of those outputs, not computed a second time
    assert f"reusing acquire's TA scores of the student's outputs for {questions} questions" in out.stderr
    assert all(r["ta_student_mean_logprob"] == sampled[r["id"]]["ta_student_mean_logprob"] for r in signals)
    assert _json(experiment / "metrics/stage2/ft.json")["examples_trained"] == queries
    report = (experiment / "reports/report.md").read_text()
    assert f"then {len(acquired)} replies on the least-sure of {len(scores)} scored questions" in report
    assert f"for {queries} replies" in report


def _declared_params(repo: Path) -> dict[str, list[str]]:
    """Each stage's declared param keys from dvc.yaml as DVC resolves it ("" = the whole file)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc:
        return {
            stage.name: [
                key for dep in stage.deps if isinstance(dep, ParamsDependency) for key in dep.params or [""]
            ]
            for stage in dvc.index.stages
        }


def _undeclared(reads: set[str], declared: list[str]) -> set[str]:
    return {r for r in reads if not any(d in ("", r) or r.startswith(f"{d}.") for d in declared)}


@pytest.mark.slow
def test_every_param_a_stage_reads_is_declared(tiny_run: Path) -> None:
    # Traces of every stage run in this module so far (the first run and the experiments
    # above, e.g. active acquisition), see taloop.core.param_trace.
    reads: dict[str, set[str]] = {}
    for path in trace_dir(tiny_run).glob("*.json"):
        record = _json(path)
        reads.setdefault(record["stage"], set()).update(record["reads"])
    declared = _declared_params(tiny_run)
    assert set(reads) == set(declared), "every stage ran under the trace"
    gaps = {stage: _undeclared(keys, declared[stage]) for stage, keys in reads.items()}
    assert not any(gaps.values()), {s: sorted(g) for s, g in gaps.items() if g}
    # the check can fail: without its declaration, warmup would read student.bf16 undeclared
    assert "student.bf16" in reads["warmup"]
    assert _undeclared(reads["warmup"], [d for d in declared["warmup"] if d != "student.bf16"])


@pytest.mark.slow
def test_training_entry_point_runs_under_accelerate_launch(experiment: Path) -> None:
    metrics = experiment / "metrics/stage2/ft.json"
    metrics.unlink()
    run(
        experiment, "accelerate", "launch", "--config_file", "configs/accelerate/cpu.yaml",
        "-m", "taloop.stages.train_stage2", "ft",
    )  # fmt: skip
    trained = _json(metrics)
    # ft trains on every reply of the run: the first run's 16, whatever ran before
    assert trained["examples_trained"] == trained["teacher_replies"] == 16
    assert trained["steps"] > 0 and trained["train_tokens"] > 0
    assert (experiment / "models/stage2/ft/adapter_model.safetensors").is_file()
