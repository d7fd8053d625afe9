"""`taloop` command line: run the pipeline, validate params, apply profiles, estimate teacher
cost, compare experiments."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from dvc.exceptions import DvcException

from taloop.cli import repro
from taloop.core import logs, paths
from taloop.core.errors import DEBUG_ENV, UsageError, debug
from taloop.params import load_params
from taloop.params.profiles import apply_profile
from taloop.reporting.compare import exp_show, runs_from_exp_show, write_compare
from taloop.studies import engine as studies_engine
from taloop.studies import headline as studies_headline
from taloop.studies import spec as studies_spec
from taloop.teachers.planning import estimate_collection

log = logging.getLogger("taloop")


def main(argv: list[str] | None = None) -> int:
    logs.setup()
    parser = argparse.ArgumentParser(prog="taloop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="dvc repro with a time estimate for this machine, stage progress and the verdicts at the end",
    )
    run.add_argument("--profile", help="merge profiles/<name>.yaml into params.yaml first (e.g. quick)")
    validate = sub.add_parser("validate", help="check a params file against the schema")
    validate.add_argument("params", nargs="?", default="params.yaml")
    profile = sub.add_parser("profile", help="merge profiles/<name>.yaml into params.yaml")
    profile.add_argument("name")
    profile.add_argument("--params", default="params.yaml")
    compare = sub.add_parser("compare", help="accuracy vs budget and error rate across dvc experiments")
    compare.add_argument("--out", default=str(paths.COMPARE_HTML), help="HTML file to write")
    compare.add_argument(
        "--all-commits", action="store_true", help="experiments of every commit, not just HEAD"
    )
    compare.add_argument(
        "--exp-show-json", type=Path, help="saved `dvc exp show --json` output to read instead"
    )
    estimate = sub.add_parser("estimate", help="what collect_teacher would buy and cost; sends nothing")
    estimate.add_argument("params", nargs="?", default="params.yaml")
    study = sub.add_parser("study", help="run a study (studies/<name>.yaml) as DVC experiments, or report it")
    study_sub = study.add_subparsers(dest="study_command", required=True)
    study_run = study_sub.add_parser("run", help="queue the cells not yet run and work the queue")
    study_run.add_argument("name")
    study_run.add_argument(
        "-j", "--jobs", type=int, default=1, help="cells run side by side (dvc queue start -j)"
    )
    study_run.add_argument("--dry-run", action="store_true", help="only list the cells that would be queued")
    study_run.add_argument("--cells", nargs="+", default=(), metavar="CELL", help="only these cells")
    study_run.add_argument(
        "--keep",
        action="store_true",
        help="copy each finished cell's params, metrics and predictions into reports/studies/<name>/<cell>/ "
        "and commit them as it finishes",
    )
    study_report = study_sub.add_parser("report", help="aggregate into reports/studies/<name>.{json,md}")
    study_report.add_argument("name")
    study_report.add_argument(
        "--kept-only",
        action="store_true",
        help="only the kept cells in reports/studies/<name>/, no experiments",
    )
    study_sub.add_parser("list", help="the study files")
    study_headline = study_sub.add_parser(
        "headline", help="print the README's headline block, generated from the study its markers name"
    )
    study_headline.add_argument("--write", action="store_true", help="rewrite the block in README.md")
    # what `taloop run` does not know goes to dvc repro (`taloop run -s warmup`)
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command == "run":
            return _run(args.profile, rest[1:] if rest[:1] == ["--"] else rest)
        if args.command == "validate":
            load_params(args.params)
            log.info("%s: valid", args.params)
        elif args.command == "profile":
            apply_profile(args.name, Path(args.params))
            log.info("applied profile %s to %s", args.name, args.params)
        elif args.command == "study":
            _study(args)
        elif args.command == "estimate":
            sys.stdout.write(estimate_collection(load_params(args.params)) + "\n")
        elif args.command == "compare":
            payload = (
                json.loads(args.exp_show_json.read_text())
                if args.exp_show_json
                else exp_show(args.all_commits)
            )
            result = write_compare(runs_from_exp_show(payload), Path(args.out))
            log.info("compared %d experiments: %s", len(result["experiments"]), args.out)
    except (UsageError, DvcException, FileNotFoundError, ValueError, RuntimeError) as err:
        if debug():
            raise
        log.error("%s\n(set %s=1 for the traceback)", err, DEBUG_ENV)
        return 1
    return 0


def _study(args: argparse.Namespace) -> None:
    if args.study_command == "list":
        for name in studies_spec.available():
            sys.stdout.write(f"{name}: {studies_spec.load(name).description}\n")
    elif args.study_command == "run":
        studies_engine.run(
            args.name, jobs=args.jobs, dry_run=args.dry_run, only=args.cells, keep_cells=args.keep
        )
        if not args.dry_run:
            studies_engine.report(args.name)
    elif args.study_command == "headline":
        if args.write:
            log.info(
                "README.md: headline regenerated from study %s", studies_headline.write(Path("README.md"))
            )
        else:
            name, _ = studies_headline.in_readme(Path("README.md").read_text())
            sys.stdout.write(studies_headline.headline(name) + "\n")
    else:
        studies_engine.report(args.name, kept_only=args.kept_only)


def _run(profile: str | None, repro_args: list[str]) -> int:
    if profile:
        apply_profile(profile, paths.PARAMS)
        log.info("applied profiles/%s.yaml to params.yaml (`git checkout params.yaml` undoes it)", profile)
    params = load_params(paths.PARAMS)
    # With dvc repro's own targets or options (-s, -f, a stage) which stages run is dvc's to
    # say: no count and no estimate then.
    stages = None if repro_args else repro.stages_to_run()
    estimate = repro.announce(params, stages, profile or "default")
    code = repro.follow(["dvc", "repro", *repro_args], stages, estimate)
    if code == 0 and stages is not None:  # a whole repro: the report is current
        repro.conclude()
    return code


if __name__ == "__main__":
    sys.exit(main())
