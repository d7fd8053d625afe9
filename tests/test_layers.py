"""The package's layers (pyproject's import-linter contracts) hold, and a layer importing from
one above it breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the package under ``root``/src with ``root``'s pyproject contracts."""
    env = os.environ | {"PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def copy_of_package(tmp_path: Path) -> Path:
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", tmp_path / "src", ignore=skip)
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_layers_hold() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_core_importing_from_stages_breaks_the_layers(tmp_path: Path) -> None:
    root = copy_of_package(tmp_path)
    paths = root / "src/taloop/core/paths.py"
    paths.write_text(paths.read_text() + "\nfrom taloop.stages import _run  # noqa: E402, F401\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "taloop.core.paths -> taloop.stages._run" in result.stdout
    # the layers, and the circle it closes between core and the packages above it
    assert "Contracts: 1 kept, 2 broken" in result.stdout


def test_the_params_schema_importing_a_task_module_breaks_its_contract(tmp_path: Path) -> None:
    root = copy_of_package(tmp_path)
    schema = root / "src/taloop/params/schema.py"
    schema.write_text(schema.read_text() + "\nfrom taloop.tasks import registry  # noqa: E402, F401\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "taloop.params.schema -> taloop.tasks.registry" in result.stdout
