"""report: metrics/summary.json, reports/report.md, a self-contained reports/report.html and
the figures, all computed from the tracked metrics and data files."""

from __future__ import annotations

import logging

from taloop.core import logs, paths
from taloop.core.profiling import phase
from taloop.params import load_params
from taloop.reporting.build import build
from taloop.stages._run import run

log = logging.getLogger(__name__)


def main() -> None:
    logs.setup()
    with phase("build_report"):
        summary = build(load_params(paths.PARAMS))
    for text in summary["verdicts"].values():
        log.info("%s", text)
    log.info("wrote %s and %s", paths.REPORT_MD, paths.REPORT_HTML)


if __name__ == "__main__":
    run(main)
