"""Named params overrides (profiles/*.yaml) deep-merged into params.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from taloop.config import validate_params

PROFILE_DIR = Path("profiles")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists included) is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_profile(name: str, params_path: Path, profile_dir: Path = PROFILE_DIR) -> dict[str, Any]:
    """Merge ``profiles/<name>.yaml`` into ``params_path`` (validated before writing)."""
    path = profile_dir / f"{name}.yaml"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in profile_dir.glob("*.yaml")))
        raise FileNotFoundError(f"no profile {name!r} in {profile_dir}; available: {available}")
    merged = deep_merge(yaml.safe_load(params_path.read_text()), yaml.safe_load(path.read_text()))
    validate_params(merged, f"{params_path} + {path}")
    params_path.write_text(yaml.safe_dump(merged, sort_keys=False))
    return merged
