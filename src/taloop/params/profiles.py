"""Named params overrides (profiles/*.yaml) deep-merged into params.yaml."""

from __future__ import annotations

import copy
import io
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.representer import RoundTripRepresenter

from taloop.params import validate_params

PROFILE_DIR = Path("profiles")


def merge_into(base: MutableMapping[str, Any], override: Mapping[str, Any]) -> None:
    """Mappings merge key by key; anything else (lists included) is replaced. In place, so
    that a round-trip document keeps its comments, key order and styles."""
    for key, value in override.items():
        current = base.get(key)
        if isinstance(value, Mapping) and isinstance(current, MutableMapping):
            merge_into(current, value)
        else:
            base[key] = value


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as ``{"a.b": value}``, the dotted keys `dvc exp run -S` takes."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged into a copy of ``base`` (see ``merge_into``)."""
    out = copy.deepcopy(base)
    merge_into(out, override)
    return out


def _represent_null(representer: RoundTripRepresenter, _: None) -> Any:
    # ruamel writes None as an empty value; params.yaml spells it `null`
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def _round_trip_yaml() -> YAML:
    rt = YAML()  # round-trip: comments, key order, flow/block style survive a load and dump
    rt.preserve_quotes = True
    rt.width = 4096  # the default (80) would re-wrap params.yaml's long flow mappings
    rt.representer.add_representer(type(None), _represent_null)
    return rt


def apply_profile(name: str, params_path: Path, profile_dir: Path = PROFILE_DIR) -> dict[str, Any]:
    """Merge ``profiles/<name>.yaml`` into ``params_path`` (validated before writing), keeping
    params.yaml's comments, key order and layout; returns the merged params as plain data."""
    path = profile_dir / f"{name}.yaml"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in profile_dir.glob("*.yaml")))
        raise FileNotFoundError(f"no profile {name!r} in {profile_dir}; available: {available}")
    rt = _round_trip_yaml()
    doc = rt.load(params_path.read_text())
    # the profile is loaded round-trip too, so a value it adds keeps the profile's flow style
    merge_into(doc, rt.load(path.read_text()))
    out = io.StringIO()
    rt.dump(doc, out)
    text = out.getvalue()
    # validate exactly what will be written, parsed the way every stage parses params.yaml
    merged: dict[str, Any] = yaml.safe_load(text)
    validate_params(merged, f"{params_path} + {path}")
    params_path.write_text(text)
    return merged
