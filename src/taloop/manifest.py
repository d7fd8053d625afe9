"""Run manifests: what produced a stage's outputs (versions, seed, git revision, experiment)."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

PACKAGES = (
    "taloop", "torch", "transformers", "trl", "peft", "accelerate", "dvc", "reasoning-gym",
    "pydantic", "openai", "anthropic",
)  # fmt: skip


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def build_manifest(stage: str, seeds: dict[str, int]) -> dict[str, Any]:
    return {
        "stage": stage,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_revision": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME"),
        "seeds": seeds,
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in PACKAGES},
    }
