"""params.yaml: its schema (:mod:`taloop.params.schema`), its profiles, and loading a file.

Every stage calls :func:`load_params` first, so a bad value fails before any work (or money)
is spent, with a message naming the key path and what is allowed. Run
``python -m taloop.params params.yaml`` to validate a file by hand.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from taloop.core import param_trace
from taloop.params.schema import ConfigError, Params, Section, problems
from taloop.tasks.registry import CATALOGUE


def validate_params(raw: Any, source: str = "params") -> Params:
    if not isinstance(raw, dict):
        raise ConfigError([("<root>", "params must be a mapping of sections")], source)
    try:
        return Params.model_validate(raw, context={"tasks": CATALOGUE})
    except ValidationError as err:
        raise ConfigError(problems(err), source) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError([("<file>", f"not valid YAML: {err}")], str(path)) from None
    params = validate_params(raw, str(path))
    if trace_dir := os.environ.get(param_trace.TRACE_ENV):
        param_trace.trace(params, Section, Path(trace_dir))
    return params
