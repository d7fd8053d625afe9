"""pyproject.toml's ranges and requirements.txt's pins against what the code imports."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from collections.abc import Iterable, Mapping
from functools import cache

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from .conftest import REPO

# Imported but deliberately absent from requirements.txt.
NOT_PINNED = {
    # `make setup` installs it before requirements.txt, a CPU build unless one is present, so
    # that the lock can never pull a multi-GB CUDA build onto a CPU machine
    "torch": "installed separately",
    # generation.backend: vllm, installed by hand on GPU machines; imported only when chosen
    "vllm": "optional GPU backend",
    # only benchmarks/mutation.py reads its results; `make mutation` installs it, pinned there
    "mutmut": "installed by make mutation",
}
# benchmarks/ reuse tests/pipeline.py, and a benchmark script its siblings (run.py's copies)
LOCAL = {"taloop", "tests"} | {script.stem for script in (REPO / "benchmarks").glob("*.py")}

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(r) for r in PYPROJECT["dependencies"]]
DEV = [Requirement(r) for r in PYPROJECT["optional-dependencies"]["dev"]]


def _pins() -> dict[NormalizedName, Version]:
    pins: dict[NormalizedName, Version] = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if not (line := line.split("#")[0].strip()):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"requirements.txt pins exact versions: {line}"
        pins[canonicalize_name(req.name)] = Version(specs[0].version)
    return pins


PINS = _pins()


def _third_party_imports(*roots: str) -> dict[str, set[str]]:
    """Top-level module name -> files importing it, stdlib and local modules left out."""
    found: dict[str, set[str]] = {}
    for root in roots:
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for top in {name.split(".")[0] for name in names} - LOCAL:
                    if top not in sys.stdlib_module_names:
                        found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


@cache
def _packages_distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distributions(module: str, importers: Iterable[str]) -> set[NormalizedName]:
    dists = _packages_distributions().get(module)
    assert dists, f"no installed distribution provides {module!r} (imported by {sorted(importers)})"
    return {canonicalize_name(d) for d in dists}


def _declared(reqs: Iterable[Requirement]) -> set[NormalizedName]:
    return {canonicalize_name(r.name) for r in reqs}


@pytest.mark.parametrize(
    ("roots", "allowed"),
    [(("src",), RUNTIME), (("tests", "benchmarks"), RUNTIME + DEV)],
    ids=["src-runtime", "tests-benchmarks-dev"],
)
def test_every_import_is_declared_and_pinned(roots: tuple[str, ...], allowed: list[Requirement]) -> None:
    for module, importers in _third_party_imports(*roots).items():
        if module in NOT_PINNED:
            continue
        dists = _distributions(module, importers)
        assert dists & PINS.keys(), f"{module!r} (imported by {sorted(importers)}) is not in requirements.txt"
        assert dists & _declared(allowed), f"{module!r} (imported by {sorted(importers)}) is not in pyproject"


def test_pins_satisfy_pyproject_ranges() -> None:
    for req in RUNTIME + DEV:
        name = canonicalize_name(req.name)
        if name in NOT_PINNED:
            continue
        assert name in PINS, f"pyproject declares {req}, requirements.txt does not pin it"
        assert req.specifier.contains(PINS[name], prereleases=True), f"{name}=={PINS[name]} is outside {req}"


def test_extras_are_pinned() -> None:
    """What a declared extra (openai[aiohttp]) adds is in the lock too: `make setup` installs
    requirements.txt, not pyproject's dependencies."""
    extras = [(req, extra) for req in RUNTIME + DEV for extra in req.extras]
    assert extras  # the SDKs' aiohttp transport is declared as their extra
    for req, extra in extras:
        for line in importlib.metadata.requires(req.name) or []:
            dep = Requirement(line)
            # the extra's own requirements, not the base ones every install gets
            if dep.marker is None or not (
                dep.marker.evaluate({"extra": extra}) and not dep.marker.evaluate({"extra": ""})
            ):
                continue
            name = canonicalize_name(dep.name)
            assert name in PINS, f"{req.name}[{extra}] needs {dep}, requirements.txt does not pin it"
            assert dep.specifier.contains(PINS[name], prereleases=True), f"{name}=={PINS[name]} vs {dep}"


def test_setup_installs_the_project_without_its_dependencies() -> None:
    # pyproject's torch range would pull a CUDA build from PyPI; the lock has installed the rest
    assert "pip install -q --no-deps -e ." in (REPO / "Makefile").read_text()


def test_unpinned_exceptions_are_real() -> None:
    # an exception for a package that is pinned after all, or no longer imported, is stale
    imported = _third_party_imports("src", "tests", "benchmarks")
    for module in NOT_PINNED:
        assert module in imported and canonicalize_name(module) not in PINS, module
