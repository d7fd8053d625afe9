from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from taloop.core import logs

REPO = Path(__file__).resolve().parent.parent

logs.setup()


def chromium() -> str:
    """Headless Chromium's command; skips the test where it is missing, except in CI."""
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide chromium (.ci/run installs Debian's package)")
        pytest.skip("chromium not installed")
    return found


def load_benchmark(name: str) -> types.ModuleType:
    """A script under benchmarks/ as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / f"benchmarks/{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    """The tiny in-process model and its tokenizer (with a pad token), one per test module."""
    from taloop.student.models import TINY_RANDOM, load_source

    model, tok = load_source(TINY_RANDOM)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


@pytest.fixture
def raw_params() -> dict[str, Any]:
    """The repository's params.yaml as a dict; tests mutate their own copy."""
    return copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text()))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own teacher cache, never the developer's."""
    root = tmp_path_factory.mktemp("taloop-cache")
    monkeypatch.setenv("TALOOP_CACHE_DIR", str(root))
    return root
