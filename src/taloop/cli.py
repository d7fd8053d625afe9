"""`taloop` command line: validate params, apply profiles."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from taloop import logs
from taloop.config import ConfigError, load_params
from taloop.profiles import apply_profile

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
    args = parser.parse_args(argv)
    try:
        if args.command == "validate":
            load_params(args.params)
            log.info("%s: valid", args.params)
        elif args.command == "profile":
            apply_profile(args.name, Path(args.params))
            log.info("applied profile %s to %s", args.name, args.params)
    except (ConfigError, FileNotFoundError) as err:
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
