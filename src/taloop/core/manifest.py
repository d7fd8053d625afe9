"""Run manifests: what produced a stage's outputs (versions, seed, git revision, experiment,
and the CPU and thread settings that decide floating-point results)."""

from __future__ import annotations

import logging
import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from taloop.core.precision import Precision

log = logging.getLogger(__name__)

PACKAGES = (
    "taloop", "torch", "transformers", "trl", "peft", "accelerate", "dvc", "reasoning-gym",
    "pydantic", "openai", "anthropic", "numpy",
)  # fmt: skip

# CPU features that pick different matmul kernels (and so different rounding) in torch/oneDNN.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


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


def _cpuinfo() -> tuple[str | None, dict[str, bool] | None]:
    """(CPU model name, which of :data:`CPU_FLAGS` it has), or None where /proc/cpuinfo is
    missing (macOS, Windows) or unreadable."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return None, None
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    name = model.group(1).strip() if model else None
    if flags is None:  # e.g. ARM kernels list "Features", not "flags"
        return name, None
    present = set(flags.group(1).split())
    return name, {f: f in present for f in CPU_FLAGS}


def onednn_version(config: str) -> str | None:
    """The oneDNN (formerly MKL-DNN) version in ``torch.__config__.show()`` text: torch has
    no API for it."""
    m = re.search(r"(?:oneDNN|MKL-DNN)\s+v?(\d+(?:\.\d+)+)", config)
    return m.group(1) if m else None


def numerics() -> dict[str, Any]:
    """What decides floating-point results besides the code: thread counts (reduction
    order), the kernels the CPU and torch build select, and the oneDNN version."""
    import torch

    model, flags = _cpuinfo()
    try:
        capability: str | None = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        capability = None
    try:
        onednn = onednn_version(torch.__config__.show()) if torch.backends.mkldnn.is_available() else None
    except RuntimeError:
        log.warning("could not read torch's build configuration; oneDNN version unknown")
        onednn = None
    return {
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "cpu_model": model,
        "cpu_flags": flags,
        "cpu_capability": capability,
        "onednn_version": onednn,
    }


def build_manifest(stage: str, seeds: dict[str, int], precision: Precision | None = None) -> dict[str, Any]:
    """``precision``: for the stages that run the student, the precision it ran in and why."""
    manifest = {
        "stage": stage,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_revision": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME"),
        "seeds": seeds,
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in PACKAGES},
        "numerics": numerics(),
    }
    if precision is not None:
        manifest["precision"] = precision.record()
    return manifest
