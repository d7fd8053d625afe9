"""The README's headline, generated from a published study's JSON so that every number in it
is the study's. The README's markers name the study (``<!-- headline:start map -->``);
``taloop study headline`` prints the block from that study's JSON, ``--write`` puts it into the
README, and a test holds the README's copy to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taloop.studies import spec
from taloop.studies.aggregate import points_ci
from taloop.studies.ta_quality import break_even_lines, stop_rule_lines

START = "<!-- headline:start {name} -->"
END = "<!-- headline:end -->"
_START = re.compile(r"<!-- headline:start (\S+) -->\n")


def _points(x: float) -> str:
    return f"{x * 100:+.1f}"


def _mde(cmp: Mapping[str, Any]) -> str:
    return "none detectable" if cmp["mde"] is None else f"{cmp['mde'] * 100:.1f}"


def _ratio(rec: Mapping[str, Any] | None) -> str:
    if rec is None or rec["ratio"] is None:
        return "n/a"
    if rec["ci_low"] is None and rec["ci_high"] is None:
        return f"{rec['ratio']:.2f} (unbounded)"
    bounds = [("unbounded" if b is None else f"{b:.2f}") for b in (rec["ci_low"], rec["ci_high"])]
    return f"{rec['ratio']:.2f} ({bounds[0]} to {bounds[1]})"


def error_rate_map(result: Mapping[str, Any]) -> str:
    """The error-rate map (report ``effect_size``): per teacher error rate, each variant's mean
    test accuracy and ta_loop's differences with their intervals and MDEs."""
    base = result["baseline"]
    rows = [
        "| teacher error rate | seeds | ft | two_stage | ta_loop | oracle | ta_loop - ft (95% CI) "
        "| MDE (seeds) | ta_loop - two_stage (95% CI) | MDE (seeds) | oracle - ft (95% bootstrap CI) "
        "| recovery (95% bootstrap CI) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["error_rate_map"]:
        acc = r["mean_accuracy"]
        rec = r["recovery"]
        oracle = f"{_points(rec['oracle_gain'])} ({_points(rec['oracle_gain_ci'][0])} to " \
            f"{_points(rec['oracle_gain_ci'][1])})"  # fmt: skip
        rows.append(
            f"| {r['error_rate']:g} | {len(r['seeds'])} | "
            + " | ".join(f"{acc[v] * 100:.1f}" for v in (base, "two_stage", "ta_loop", "oracle"))
            + "".join(f" | {points_ci(r[k])} | {_mde(r[k])}" for k in ("vs_baseline", "vs_two_stage"))
            + f" | {oracle} | {_ratio(rec)} |"
        )
    pooled = result["error_rate_map_pooled"]
    said = []
    for key in ("vs_baseline", "vs_two_stage"):
        p = pooled[key]
        said.append(
            f"against {p['against']} {points_ci(p)} points, lower in {p['losses']} of {p['cells']} cells "
            f"(sign test p = {p['sign_test_p']:.3f})"
        )
    return "\n".join(rows) + (
        f"\n\nPooled over the cells (exploratory: one effect at every error rate), ta_loop came out "
        f"{said[0]}, and {said[1]}."
    )


def _arm_cells(row: Mapping[str, Any] | None) -> list[str]:
    if row is None:
        return ["-", "-", "-"]
    vs_two = row["vs_two_stage"]
    return [
        f"{row['mean_accuracy']['ta_loop'] * 100:.1f}",
        points_ci(row["vs_baseline"]),
        points_ci(vs_two) if vs_two else "-",
    ]


def ta_quality(result: Mapping[str, Any]) -> str:
    """The TA-quality map (report ``ta_quality``): per TA AUC the levels (ft, two_stage, the
    oracle) and each arm's ta_loop against ft and two_stage; the blind-spot and real-TA cells
    below the curve's rows; then each arm's break-even AUC."""
    base = result["baseline"]
    arms = list(result["arms"])
    header = ["TA AUC (set; real TA: measured)", "seeds", base, "two_stage", "oracle"]
    for arm in arms:
        header += [
            f"ta_loop ({arm})",
            f"ta_loop ({arm}) - {base} (95% CI)",
            f"ta_loop ({arm}) - two_stage (95% CI)",
        ]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    # (0 curve, 1 blind spot, 2 real TA; the row's label) -> arm -> row
    keyed: dict[tuple[int, str], dict[str, Mapping[str, Any]]] = {}
    for arm in arms:
        entry = result["arms"][arm]
        for r in entry["curve"]:
            keyed.setdefault((0, f"{r['auc']:.2f}"), {})[arm] = r
        for r in entry["blind_spot"]:
            measured = "" if r["measured_auc"] is None else f", measured {r['measured_auc']:.2f}"
            keyed.setdefault((1, f"{r['auc']:.2f}, blind spot shared{measured}"), {})[arm] = r
        for r in entry["real"]:
            keyed.setdefault((2, f"{r['ta']} (measured {r['auc']:.2f})"), {})[arm] = r
    for (_, label), by_arm in sorted(keyed.items()):
        first = next(iter(by_arm.values()))
        if any(r["seeds"] != first["seeds"] for r in by_arm.values()):
            raise spec.StudyError(f"headline row {label}: the arms ran different seeds; run them alike first")
        acc = first["mean_accuracy"]
        cells = [label, str(len(first["seeds"]))]
        cells += [f"{acc[v] * 100:.1f}" if v in acc else "-" for v in (base, "two_stage", "oracle")]
        for arm in arms:
            cells += _arm_cells(by_arm.get(arm))
        rows.append("| " + " | ".join(cells) + " |")
    lines = [line for arm in arms for line in break_even_lines(arm, result["arms"][arm])]
    lines += stop_rule_lines(result.get("stop_rules", []))
    return "\n".join(rows) + "\n\n" + "\n".join(lines)


def headline(name: str, root: Path = Path()) -> str:
    """The headline block of study ``name`` (markers included) from its published JSON."""
    result = json.loads((root / spec.KEPT_DIR / f"{name}.json").read_text())
    if "arms" in result:
        block = ta_quality(result)
    elif result.get("error_rate_map"):
        block = error_rate_map(result)
    else:
        raise spec.StudyError(
            f"study {name}: no headline form (the error-rate map and TA-quality map have one)"
        )
    return f"{START.format(name=name)}\n{block}\n{END}"


def in_readme(readme: str) -> tuple[str, str]:
    """The study the README's headline block names and the block as it stands there."""
    found = _START.search(readme)
    if found is None or END not in readme[found.end() :]:
        raise spec.StudyError("the README has no headline block (<!-- headline:start <study> --> ... end)")
    end = readme.index(END, found.end()) + len(END)
    return found.group(1), readme[found.start() : end]


def write(readme_path: Path, root: Path = Path()) -> str:
    """Regenerate the README's headline block in place; returns the study it came from."""
    text = readme_path.read_text()
    name, block = in_readme(text)
    readme_path.write_text(text.replace(block, headline(name, root)))
    return name
