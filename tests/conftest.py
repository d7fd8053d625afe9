from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from taloop import logs

REPO = Path(__file__).resolve().parent.parent

logs.setup()


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
