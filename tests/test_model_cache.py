"""The machine-level cache of de-quantised GGUF models (taloop.student.models.cached_dir and friends)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from taloop.student import models
from taloop.student.models import (
    GGUF_ALIASES,
    STALE_BUILD_S,
    GGUFModel,
    cached_dir,
    dequantised_key,
    materialize,
    user_cache_dir,
)

log = logging.getLogger(__name__)


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def _digests(directory: Path) -> dict[str, str]:
    """SHA-256 per file, read one at a time (the real models' weights are hundreds of MB)."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in directory.rglob("*")
        if p.is_file()
    }


def test_cached_dir_builds_once_and_leaves_no_temporary_directory(tmp_path: Path) -> None:
    builds: list[Path] = []

    def build(directory: Path) -> None:
        builds.append(directory)
        (directory / "weights").write_text("w")

    target = tmp_path / "entries" / "model-abc"
    assert cached_dir(target, build) == target
    assert cached_dir(target, build) == target
    assert len(builds) == 1 and builds[0] != target  # built elsewhere, then renamed into place
    assert _files(target) == {"weights": b"w"}
    assert sorted(p.name for p in target.parent.iterdir()) == ["model-abc"]


def test_a_failed_build_leaves_neither_entry_nor_temporary_directory(tmp_path: Path) -> None:
    def build(directory: Path) -> None:
        (directory / "half").write_text("written before the failure")
        raise RuntimeError("killed")

    target = tmp_path / "model-abc"
    with pytest.raises(RuntimeError, match="killed"):
        cached_dir(target, build)
    assert list(tmp_path.iterdir()) == []


def test_a_concurrent_build_that_finished_first_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "model-abc"

    def build(directory: Path) -> None:
        (directory / "weights").write_text("ours")
        target.mkdir()  # another process renames its complete copy into place meanwhile
        (target / "weights").write_text("theirs")

    assert cached_dir(target, build) == target
    assert _files(target) == {"weights": b"theirs"}
    assert [p.name for p in tmp_path.iterdir()] == ["model-abc"]


def test_abandoned_temporary_directories_are_swept_and_fresh_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "model-abc"
    abandoned, running = tmp_path / ".model-abc.old.tmp", tmp_path / ".model-abc.busy.tmp"
    for d in (abandoned, running):
        d.mkdir()
        (d / "partial").write_text("x")
    long_ago = time.time() - STALE_BUILD_S - 60
    os.utime(abandoned, (long_ago, long_ago))
    cached_dir(target, lambda d: (d / "weights").write_text("w"))
    assert not abandoned.exists() and running.exists()


def test_dequantised_key_follows_file_content_and_package_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(1000))
    name = "smollm2-135m-instruct"
    key = dequantised_key(name, gguf)
    assert key.startswith(f"{name}-") and key == dequantised_key(name, gguf)
    assert dequantised_key("gemma-3-270m", gguf) != key  # another origin record
    gguf.write_bytes(b"GGUF" + bytes(999) + b"\1")
    changed = dequantised_key(name, gguf)
    assert changed != key
    real_version = importlib.metadata.version

    def version(package: str) -> str:
        return "99.0" if package == "transformers" else real_version(package)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert dequantised_key(name, gguf) != changed


@pytest.fixture
def fake_alias(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny: tuple[Any, Any]) -> list[str]:
    """A GGUF alias whose "de-quantisation" returns the tiny model (recorded per call), with
    the machine cache under tmp_path."""
    gguf = tmp_path / "pkg" / "fake.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF fake")
    alias = GGUFModel("fake_pkg", "fake.gguf", "example/fake", "Q4_0")
    monkeypatch.setattr(GGUFModel, "location", lambda self: (gguf.parent, gguf.name))
    monkeypatch.setitem(GGUF_ALIASES, "fake", alias)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    calls: list[str] = []

    def load_source(name: str) -> tuple[Any, Any]:
        calls.append(name)
        return tiny

    monkeypatch.setattr(models, "load_source", load_source)
    return calls


def test_materialize_takes_a_gguf_alias_from_the_machine_cache_the_second_time(
    tmp_path: Path, fake_alias: list[str], tiny: tuple[Any, Any]
) -> None:
    materialize("fake", tmp_path / "clone1/models/base/student")
    materialize("fake", tmp_path / "clone2/models/base/student")
    assert fake_alias == ["fake"]  # de-quantised once
    reference = tmp_path / "reference"
    models._save("fake", *tiny, reference)  # what materialize wrote before the cache
    expected = _files(reference)
    assert "model.safetensors" in expected and models.ORIGIN_FILE in expected
    assert _files(tmp_path / "clone1/models/base/student") == expected
    assert _files(tmp_path / "clone2/models/base/student") == expected
    [entry] = (user_cache_dir() / "dequantised").iterdir()
    assert entry.name == dequantised_key("fake", tmp_path / "pkg/fake.gguf")
    # the outputs are copies: changing one leaves the cache entry as it was
    (tmp_path / "clone1/models/base/student/model.safetensors").write_bytes(b"changed")
    assert _files(entry) == expected


@pytest.mark.slow
def test_the_shipped_alias_is_dequantised_once_per_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    calls: list[str] = []
    real = models.load_source

    def load_source(name: str) -> tuple[Any, Any]:
        calls.append(name)
        return real(name)

    monkeypatch.setattr(models, "load_source", load_source)
    name = "smollm2-135m-instruct"
    seconds = []
    for clone in ("first", "second"):
        start = time.perf_counter()
        materialize(name, tmp_path / clone)
        seconds.append(time.perf_counter() - start)
    log.info("materialize %s: %.1f s de-quantising, %.1f s from the machine cache", name, *seconds)
    assert calls == [name]
    first, second = (_digests(tmp_path / c) for c in ("first", "second"))
    assert first == second and "model.safetensors" in first
