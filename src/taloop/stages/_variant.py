"""Start-up shared by the per-variant stages (train_stage2, evaluate)."""

from __future__ import annotations

import argparse

from taloop.core import logs, paths
from taloop.params import load_params
from taloop.params.schema import Params


def start(doc: str | None, argv: list[str] | None) -> tuple[str, Params]:
    """Set up logging, read the variant argument and the params, and check the variant exists."""
    logs.setup()
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("variant")
    variant = parser.parse_args(argv).variant
    params = load_params(paths.PARAMS)
    if variant not in params.variants:
        raise SystemExit(f"variants: no variant named {variant!r}; defined: {', '.join(params.variants)}")
    return variant, params
