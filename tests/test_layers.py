"""The package's layers (pyproject's import-linter contracts) hold, and a layer importing from
one above it breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


# (module, what it newly imports, the import lint-imports must name, the contracts' tally)
BREACHES = [
    # core importing from stages breaks the layers and closes a circle between siblings
    ("core/paths.py", "from taloop.stages import _run", "taloop.core.paths -> taloop.stages._run",
     "1 kept, 2 broken"),
    # params may import the tasks, but not the schema
    ("params/schema.py", "from taloop.tasks import registry", "taloop.params.schema -> taloop.tasks.registry",
     "2 kept, 1 broken"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("module", "line", "named", "tally"), BREACHES, ids=["core-from-stages", "schema-from-tasks"]
)
def test_an_import_against_the_layers_breaks_a_contract(
    tmp_path: Path, module: str, line: str, named: str, tally: str
) -> None:
    root = copy_of_package(tmp_path)
    path = root / "src/taloop" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa: E402, F401\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert named in result.stdout
    assert f"Contracts: {tally}" in result.stdout
