"""``python -m taloop.params [params.yaml]``: validate a params file, naming each bad key."""

from __future__ import annotations

import sys

from taloop.params import load_params
from taloop.params.schema import ConfigError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else "params.yaml"
    try:
        load_params(path)
    except (ConfigError, FileNotFoundError) as err:
        sys.stderr.write(f"{err}\n")
        return 1
    sys.stdout.write(f"{path}: valid\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
