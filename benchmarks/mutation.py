"""Summarise a `mutmut run` (see `make mutation`) into benchmarks/results/mutation.json.

    python benchmarks/mutation.py

Reads mutmut's per-file results under mutants/, counts each core module's mutants by status,
and lists every mutant no test killed with its diff and the explanation written by hand in
benchmarks/mutation_explained.yaml (mutant name -> why no test can tell it from the original,
or which test was added for it). Score = mutants killed by a failing test over all mutants
checked; survivors explained as equivalent still count against it. Timeouts are counted
apart, in ``score_with_timeouts``: mutmut calls a mutant timed out when its tests take
``timeout_multiplier`` times their normal time, which a loop the mutant causes does, but so
can two parallel workers slowing tests that load a model.

Exits 1 when a survivor has no explanation, so a new survivor cannot pass unread.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from taloop.core import logs

log = logging.getLogger("mutation")
REPO = Path(__file__).resolve().parents[1]
EXPLAINED = REPO / "benchmarks/mutation_explained.yaml"
OUT = REPO / "benchmarks/results/mutation.json"
DETECTED = {"killed", "caught by type check", "segfault"}


def statuses(mutants: Path) -> dict[str, dict[str, str]]:
    """Source file -> mutant name -> status, from mutmut's .meta files."""
    from mutmut.stats import status_by_exit_code

    out = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        source = str(meta.relative_to(mutants)).removesuffix(".meta")
        out[source] = {name: status_by_exit_code[code] for name, code in sorted(codes.items())}
    return out


def diff(name: str) -> str:
    shown = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", name], cwd=REPO, capture_output=True, text=True, check=True
    )
    return shown.stdout.split("\n", 1)[-1].strip()


def summary(found: dict[str, dict[str, str]], explained: dict[str, str]) -> dict[str, Any]:
    modules, survivors = {}, []
    total = Counter()
    for source, mutants in found.items():
        counts = Counter(mutants.values())
        total.update(counts)
        checked = sum(counts.values()) - counts["not checked"] - counts["skipped"]
        killed = sum(counts[s] for s in DETECTED)
        modules[source] = {
            "mutants": len(mutants),
            "killed": killed,
            "score": killed / checked if checked else None,
            "by_status": dict(sorted(counts.items())),
        }
        for name, status in mutants.items():
            if status not in DETECTED and status != "timeout":
                survivors.append({"name": name, "module": source, "status": status,
                                  "explanation": explained.get(name)})  # fmt: skip
    checked = sum(total.values()) - total["not checked"] - total["skipped"]
    killed = sum(total[s] for s in DETECTED)
    equivalent = sum(1 for s in survivors if s["explanation"] and s["status"] == "survived")
    return {
        "score": killed / checked if checked else None,
        "score_with_timeouts": (killed + total["timeout"]) / checked if checked else None,
        "score_without_explained_equivalents": killed / (checked - equivalent)
        if checked > equivalent
        else None,
        "mutants": sum(total.values()),
        "checked": checked,
        "killed": killed,
        "by_status": dict(sorted(total.items())),
        "modules": modules,
        "survivors": survivors,
    }


def main() -> None:
    logs.setup()
    found = statuses(REPO / "mutants")
    if not found:
        sys.exit("no mutmut results under mutants/: run `make mutation`")
    explained = (yaml.safe_load(EXPLAINED.read_text()) if EXPLAINED.exists() else None) or {}
    result = summary(found, explained)
    for survivor in result["survivors"]:
        survivor["diff"] = diff(survivor["name"])
    import mutmut

    result["mutmut"] = mutmut.__version__
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    log.info("mutation score %.1f%% (%d of %d checked mutants killed; %.1f%% counting %d timeouts) -> %s",
             100 * result["score"], result["killed"], result["checked"], 100 * result["score_with_timeouts"],
             result["by_status"].get("timeout", 0), OUT.relative_to(REPO))  # fmt: skip
    for source, module in result["modules"].items():
        log.info(
            "  %-36s %4d mutants  %5.1f%% killed", source, module["mutants"], 100 * (module["score"] or 0)
        )
    missing = [s["name"] for s in result["survivors"] if not s["explanation"]]
    if missing:
        log.error(
            "%d survivors have no explanation in %s:\n  %s",
            len(missing),
            EXPLAINED.name,
            "\n  ".join(missing),
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
