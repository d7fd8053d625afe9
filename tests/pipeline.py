"""Helpers to run the real DVC pipeline in a temporary copy of the repository."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import yaml

from taloop.core.param_trace import TRACE_ENV
from taloop.params.profiles import apply_profile, deep_merge

from .conftest import REPO

GIT_ENV = {
    "GIT_AUTHOR_NAME": "taloop-test",
    "GIT_AUTHOR_EMAIL": "test@taloop.invalid",
    "GIT_COMMITTER_NAME": "taloop-test",
    "GIT_COMMITTER_EMAIL": "test@taloop.invalid",
}


def trace_dir(repo: Path) -> Path:
    """Where the stages run in ``repo`` record the params they read (taloop.core.param_trace)."""
    return repo.parent / "params-trace"


def _env(cwd: Path) -> dict[str, str]:
    env = dict(os.environ, **GIT_ENV)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["DVC_NO_ANALYTICS"] = "1"
    env[TRACE_ENV] = str(trace_dir(cwd))
    return env


def run(cwd: Path, *cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``cmd`` in ``cwd`` with the venv first on PATH (and ``env`` added); fails with its output."""
    full_env = {**_env(cwd), **(env or {})}
    result = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def _ship_tree(dest: Path, source: Path, rev: str | None) -> None:
    """What git would ship: the working tree's tracked and not-ignored files, or ``rev``'s
    committed tree. Never a dvc.lock: it belongs to someone's runs, not to the code (and
    revisions from before it stopped being committed hold one)."""
    if rev is not None:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev], cwd=source, capture_output=True, check=True
        )
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(dest, filter="data")
        (dest / "dvc.lock").unlink(missing_ok=True)
        return
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=source, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for rel in filter(lambda rel: rel and rel != "dvc.lock", listed):
        src = source / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def copy_repo(
    dest: Path,
    profile: str | None = "test",
    extra: dict[str, Any] | None = None,
    rev: str | None = None,
    source: Path = REPO,
) -> Path:
    """Copy what git would ship of ``source`` (the working tree, or revision ``rev``), apply a
    profile (None: the default) and ``extra`` overrides, commit. Also used by benchmarks/run.py."""
    dest.mkdir(parents=True, exist_ok=True)
    _ship_tree(dest, source, rev)
    if profile:
        merged = apply_profile(profile, dest / "params.yaml", dest / "profiles")
    else:
        merged = yaml.safe_load((dest / "params.yaml").read_text())
    if extra:
        (dest / "params.yaml").write_text(yaml.safe_dump(deep_merge(merged, extra), sort_keys=False))
    run(dest, "git", "init", "-q")
    run(dest, "git", "add", "-A")
    run(dest, "git", "commit", "-qm", f"copy of {rev}" if rev else "test copy")
    return dest
