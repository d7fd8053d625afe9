"""report.md from the summary and diagnostics, and a self-contained report.html from it
(figures inlined as data URIs, no external references)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from taloop.reporting import ta_map
from taloop.reporting.verdict import pct
from taloop.student.model_card import combination_label

FIGURES = {
    "accuracy": "Test accuracy by variant",
    "roc": "How well each signal flags wrong answers (ROC, against gold)",
    "ta_confidence": "TA confidence in correct and wrong teacher replies",
    "self_consistency": "Student self-consistency against student correctness",
    "reliability": "Reliability of the TA's confidence in the teacher",
    "training": "Training curves",
    "cost": "Teacher cost breakdown",
}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _acc(x: float) -> str:
    return f"{100 * x:.1f}"


def _task_cell(task: Mapping[str, float]) -> str:
    return f"{_acc(task['accuracy'])} [{_acc(task['ci_low'])}, {_acc(task['ci_high'])}]"


def usd(x: float) -> str:
    return f"${x:.4f}"


_SPLIT_NAMES = {"test": "test", "val": "validation (a tuning run, not a result)"}


def _acquisition(acq: Mapping[str, Any]) -> str:
    if acq["mode"] == "random":
        return "random: the whole budget bought up front in the fixed task-stratified order"

    def share(key: str) -> str:  # None where every scored question was bought
        return "n/a" if acq[key] is None else pct(acq[key])

    return (
        f"active: warm-up share bought up front, then {acq['replies']} replies on the least-sure of "
        f"{acq['scored_questions']} scored questions (mean sureness {share('sureness_mean_chosen')} "
        f"chosen vs {share('sureness_mean_not_chosen')} not; the warmed-up student was right on "
        f"{share('diagnostic_student_accuracy_chosen')} of those chosen and "
        f"{share('diagnostic_student_accuracy_not_chosen')} of the others, by gold)"
    )


def run_card_table(run: Mapping[str, Any], teacher_accuracy: float | None) -> str:
    t = run["teacher"]
    teacher = f"{t['model']} ({t['backend']} backend, prompt {t['prompt_template']})"
    if t["simulated"]:
        acc = f"; {pct(teacher_accuracy)} of its replies are correct" if teacher_accuracy is not None else ""
        errors = f"{t['error_mode']} errors at rate {t['error_rate']:g}"
        teacher += f": SIMULATED offline teacher ({errors}), not a real LLM{acc}"
    budget, spend = run["budget"], run["spend"]
    cap = "none" if budget["usd"] is None else usd(budget["usd"])
    rows = [
        ("student", run["student"]),
        (
            "student precision",
            f"{run['precision']['resolved']} (student.bf16: {str(run['precision']['bf16_setting']).lower()})",
        ),
        ("teaching assistant", f"{run['ta']} ({run['ta_scorer']} scorer)"),
        ("teacher", teacher),
        ("budget", f"{budget['queries']} teacher queries; USD cap {cap}"),
        ("acquisition", _acquisition(run["acquisition"])),
        (
            "teacher spend",
            f"{usd(spend['usd_value'])} for {spend['replies']} replies "
            f"({usd(spend['usd_spent_this_run'])} new this run, {spend['cache_hits']} from the cache)",
        ),
        ("seeds", ", ".join(f"{k} {v}" for k, v in run["seeds"].items())),
        ("git revision", run["git_revision"] or "unknown (not a git checkout)"),
        ("experiment", run["experiment"]),
        ("params hash", run["params_hash"]),
    ]
    return table(["field", "value"], rows)


def ablation_table(summary: Mapping[str, Any]) -> str:
    """Per variant: accuracy per task with its n and 95% Wilson interval, overall accuracy with
    its bootstrap CI, the change against the baseline with its CI, the exact McNemar p, and
    the minimum detectable effect (80% power) of that comparison."""
    base = summary["baseline"]
    variants = summary["variants"]
    first = next(iter(variants.values()))["per_task"]
    tasks = sorted(first)
    rows = []
    for name, v in variants.items():
        if name == base:
            rel, p, mde = "(baseline)", "", ""
        else:
            mde = "none detectable" if v["mde"] is None else f"{_acc(v['mde'])} points"
            if v["mde_relative"] is not None:
                mde += f" ({pct(v['mde_relative'])})"
            if v["relative_improvement"] is None:
                rel, p = "undefined (baseline at 0%)", f"{v['p_value']:.3f}"
            else:
                ci = (
                    f" ({pct(v['relative_ci_low'])} to {pct(v['relative_ci_high'])})"
                    if v["relative_ci_low"] is not None
                    else ""
                )
                rel, p = pct(v["relative_improvement"]) + ci, f"{v['p_value']:.3f}"
        label = f"{name} (uses gold)" if v["uses_gold"] else name
        rows.append([
            label, *(_task_cell(v["per_task"][t]) for t in tasks), _acc(v["accuracy"]),
            f"{v['correct']}/{v['n']}", f"{_acc(v['ci_low'])} to {_acc(v['ci_high'])}", rel, p, mde,
            usd(v["teacher_usd"]),
        ])  # fmt: skip
    header = [
        "variant",
        *(f"{t} (n={first[t]['n']})" for t in tasks),
        "mean",
        "correct",
        "95% CI",
        f"relative vs {base} (95% CI)",
        "p",
        "MDE (80% power)",
        "teacher USD",
    ]
    return table(header, rows)


def _auc_ci(entry: Mapping[str, Any]) -> str:
    if entry.get("auc") is None:
        return "n/a"
    if entry.get("ci_low") is None:
        return f"{entry['auc']:.2f}"
    return f"{entry['auc']:.2f} ({entry['ci_low']:.2f} to {entry['ci_high']:.2f})"


def signals_table(signals: Mapping[str, Any]) -> str:
    details = signals["signals"]
    tasks = sorted({t for d in details.values() for t in d["per_group"]})
    rows = [
        (
            name,
            "teacher" if d["target"] == "teacher_correct" else "student",
            _auc_ci(d),
            *(_auc_ci(d["per_group"][t]) if t in d["per_group"] else "n/a" for t in tasks),
        )
        for name, d in details.items()
    ]
    header = ["signal", "flags wrong answers of the", "within-task AUC (95% CI)", *tasks]
    return table(header, rows)


def error_kind_table(signals: Mapping[str, Any], measure: str) -> str:
    kinds = signals["signals"][f"ta_teacher_{measure}"].get("by_error_kind", {})
    rows = [
        (kind, sum(g["wrong"] for g in entry["per_group"].values()), _auc_ci(entry))
        for kind, entry in kinds.items()
    ]
    return table(["simulated mistake", "wrong replies", f"AUC of ta_teacher_{measure} (95% CI)"], rows)


_SIGN_WORDS = {1: "kept", -1: "kept, reversed", 0: "left out"}


def calibration_table(calibration: Mapping[str, Any]) -> str:
    chosen = calibration["chosen"]
    measure = chosen["measure"]
    auc = calibration["auc"]
    rows = [
        ("ta_teacher", _auc_ci(auc["ta_teacher"][measure]), _SIGN_WORDS[chosen["signs"]["ta_teacher"]]),
        ("ta_student", _auc_ci(auc["ta_student"][measure]), _SIGN_WORDS[chosen["signs"]["ta_student"]]),
        (
            "self_consistency",
            _auc_ci(auc["self_consistency"]),
            _SIGN_WORDS[chosen["signs"]["self_consistency"]],
        ),
    ]
    measures = table(
        ["TA measure", "AUC at flagging wrong teacher replies (95% CI)", "at flagging wrong student answers"],
        [(m, _auc_ci(auc["ta_teacher"][m]), _auc_ci(auc["ta_student"][m])) for m in auc["ta_teacher"]],
    )
    return "\n\n".join([
        f"Chosen on {calibration['replies']} validation replies (teacher wrong on "
        f"{pct(calibration['teacher_wrong_rate'])}, warmed-up student on "
        f"{pct(calibration['student_wrong_rate'])}; the replies cost {usd(calibration['usd_spent'])} "
        f"new this run, inside the same budget.usd cap): TA measure **{measure}**. "
        f"Rule: {calibration['rule']}.",
        measures,
        table(["signal", f"validation AUC ({measure})", "decision"], rows),
    ])  # fmt: skip


def stage2_table(stage2: Mapping[str, Mapping[str, Any]]) -> str:
    tasks = sorted({t for m in stage2.values() for t in m["per_task"]})
    rows = []
    for name, m in stage2.items():
        plan = m["signal_plan"]
        signs = "none" if plan is None else ", ".join(f"{s} ({v:+d})" for s, v in plan["signs"].items())
        how = "none" if plan is None else f"{combination_label(plan)} of {signs or 'none'}"
        rows.append([
            name, how, f"{m['steps']:.0f} / {m['optimizer_steps_total']}", m["examples_trained"],
            f"{m['train_tokens']:.0f}",
            *(f"{m['per_task'][t]['weight_sum']:.1f} / {pct(m['per_task'][t]['wrong_loss_share'])}"
              if t in m["per_task"] else "n/a" for t in tasks),
        ])  # fmt: skip
    header = ["variant", "signals (combine, sign)", "steps (stage / total)", "examples", "tokens seen",
              *(f"{t}: weight sum / wrong-reply loss share" for t in tasks)]  # fmt: skip
    return table(header, rows)


def flagged_table(flagged: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (
            f["task"],
            f["question"] if len(f["question"]) <= 160 else f["question"][:157] + "...",
            f["teacher_answer"],
            f["gold"],
            f"{f['ta_confidence']:.3f}",
            "yes" if f["teacher_correct"] else "no",
        )
        for f in flagged
    ]
    return table(
        ["task", "question", "teacher answer", "gold answer", "TA confidence", "teacher right?"], rows
    )


def markdown(summary: Mapping[str, Any], flagged: Sequence[Mapping[str, Any]], figures: Sequence[str]) -> str:
    run = summary["run"]
    base = summary["baseline"]
    parts = [
        "# taloop report",
        "Every number below is read from the tracked metrics (metrics/summary.json, built from "
        "metrics/eval/*.json, metrics/teacher.json and metrics/signals.json). Accuracies are "
        f"percentages of the {_SPLIT_NAMES[run['eval_split']]} split; CIs are task-stratified "
        "bootstrap intervals and p-values "
        f"exact McNemar tests on the items paired with {base}.",
        "## Verdict",
        "\n".join(f"- {text}" for text in summary["verdicts"].values()) or f"- Only {base} was run.",
    ]
    if run["teacher"]["simulated"]:
        parts.append(
            "The teacher is simulated: these results show the pipeline's behaviour with a known "
            "error rate, not how a real teacher LLM would do."
        )
    parts += [
        "## Run card",
        run_card_table(run, summary["teacher"]["accuracy_vs_gold"]),
        "## Ablation",
        ablation_table(summary),
        "## Signal choices (validation split)",
        calibration_table(summary["calibration"]),
        "## Where this TA sits on the TA-quality map",
        ta_map.sentence(summary["ta_map"]),
        "## Stage-2 training",
        "Every variant takes the same optimiser steps in total (ft's count; two-stage variants "
        "split it between warm-up and stage 2, filtered ones revisit their kept rows). Weights "
        "are normalised within each task; the wrong-reply loss share is judged by gold (diagnostic).",
        stage2_table(summary["stage2"]),
        "## Signals",
        "ROC-AUC of each signal at flagging wrong answers on the stage-2 teacher data, per task "
        "and pooled within task (the mean of per-task AUCs), with 95% bootstrap CIs (0.5 is "
        "chance; judged against gold, a diagnostic the method itself never sees).",
        signals_table(summary["signals"]),
        "By kind of simulated teacher mistake (wrong replies of that kind against all correct ones):",
        error_kind_table(summary["signals"], summary["calibration"]["chosen"]["measure"]),
        "## Teacher replies the TA flagged",
        "The replies the TA trusted least in each task, with the gold answer beside them.",
        flagged_table(flagged) if flagged else "No scored replies.",
        "## Figures",
    ]
    parts += [f"### {FIGURES[name]}\n\n![{name}](figures/{name}.png)" for name in figures]
    return "\n\n".join(parts) + "\n"


_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
img { max-width: 100%; }
"""


def render(md_text: str) -> str:
    """Markdown (tables included; raw HTML escaped) as an HTML fragment."""
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(md_text)


def to_html(md_text: str, base_dir: Path, title: str = "taloop report") -> str:
    """Render the markdown and inline every image it references (relative to ``base_dir``)."""
    body = render(md_text)

    def inline(match: re.Match[str]) -> str:
        data = base64.b64encode((base_dir / html.unescape(match.group(1))).read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+\.png)"', inline, body)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )
