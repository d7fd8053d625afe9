"""`taloop` command line: validate params, apply profiles, estimate teacher cost, compare experiments."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from taloop import logs, paths
from taloop.config import ConfigError, load_params
from taloop.profiles import apply_profile
from taloop.reporting.compare import exp_show, runs_from_exp_show, write_compare
from taloop.teachers.planning import estimate_collection

log = logging.getLogger("taloop")


def main(argv: list[str] | None = None) -> int:
    logs.setup()
    parser = argparse.ArgumentParser(prog="taloop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
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
    args = parser.parse_args(argv)
    try:
        if args.command == "validate":
            load_params(args.params)
            log.info("%s: valid", args.params)
        elif args.command == "profile":
            apply_profile(args.name, Path(args.params))
            log.info("applied profile %s to %s", args.name, args.params)
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
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as err:
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
