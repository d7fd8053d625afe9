"""collect_teacher as a process against the local API server: no key, kill -9 and resume,
keys never written anywhere, and `taloop estimate` sending nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from taloop.core.io import read_jsonl
from taloop.teachers.cache import ReplyCache

from .conftest import REPO
from .fake_api import FakeAPI, Faults
from .pipeline import copy_repo, run

# Made up per run, so the test sources copied into the repo do not contain it.
FAKE_KEY = f"taloop-fake-{uuid.uuid4().hex}"


def _openai_repo(dest: Path, api: FakeAPI, train_per_task: int = 6, **teacher: Any) -> Path:
    extra = {
        "data": {"train_per_task": train_per_task},
        "budget": {"queries": train_per_task * 4},
        "teacher": {"backend": "openai", "model": "fake-gpt", "base_url": api.openai_url, "timeout_s": 2.0,
                    **teacher},
    }  # fmt: skip
    repo = copy_repo(dest, extra=extra)
    run(repo, sys.executable, "-m", "taloop.stages.prepare_data")
    return repo


def _collect(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taloop.stages.collect_teacher"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )


def test_collect_teacher_without_a_key_fails_before_any_request(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeAPI() as api:
        repo = _openai_repo(tmp_path / "repo", api)
        result = _collect(repo)
    assert result.returncode != 0
    assert "environment variable OPENAI_API_KEY is not set" in result.stderr
    assert api.ledger.requests == 0 and not (repo / "data/teacher").exists()


def test_kill_9_then_rerun_buys_nothing_twice(tmp_path: Path, isolated_cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    # The server honours Idempotency-Key (taloop sends the reply's cache key), so a request in
    # flight when the process died is not billed again when the rerun repeats it.
    with FakeAPI(Faults(latency_s=0.05, idempotent=True)) as api:
        repo = _openai_repo(tmp_path / "repo", api, train_per_task=30, concurrency=4)
        proc = subprocess.Popen(
            [sys.executable, "-m", "taloop.stages.collect_teacher"], cwd=repo,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while len(ReplyCache(isolated_cache)) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        cached_at_kill = len(ReplyCache(isolated_cache))
        assert 30 <= cached_at_kill < 120
        result = _collect(repo)
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(repo / "data/teacher/responses.jsonl")
    assert len(rows) == 120 and len({(r["id"], r["sample"]) for r in rows}) == 120
    assert len(api.ledger.billed) == 120 and set(api.ledger.billed.values()) == {1}


def test_the_key_reaches_the_server_and_no_file(tmp_path: Path, isolated_cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    with FakeAPI(Faults(rate=0.3, kinds=("429", "500"))) as api:
        repo = _openai_repo(tmp_path / "repo", api)
        run(repo, "dvc", "repro", "collect_teacher")
    assert api.ledger.auth_headers == {FAKE_KEY}
    needle = FAKE_KEY.encode()
    scanned = [p for root in (repo, isolated_cache) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "responses.jsonl" for p in scanned) and any(p.name == "dvc.lock" for p in scanned)
    assert [p for p in scanned if needle in p.read_bytes()] == []


def test_estimate_for_the_default_run_against_openai_sends_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    with FakeAPI() as api:
        raw["teacher"].update(backend="openai", model="gpt-4o", base_url=api.openai_url)
        params = tmp_path / "params.yaml"
        params.write_text(yaml.safe_dump(raw))
        out = run(REPO, "taloop", "estimate", str(params)).stdout
    queries = raw["budget"]["queries"]
    assert f"{queries} replies planned, 0 in the cache, {queries} to buy" in out
    assert f"up to {queries * raw['teacher']['max_tokens']} completion" in out
    assert "USD upper bound: " in out and "with the batch discount" in out
    assert api.ledger.requests == 0


def test_final_failures_exit_non_zero_and_keep_what_was_bought(
    tmp_path: Path, isolated_cache: Path, monkeypatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    with FakeAPI(Faults(rate=0.5, kinds=("500",), max_per_item=99)) as api:
        repo = _openai_repo(tmp_path / "repo", api, max_retries=1)
        result = _collect(repo)
    assert result.returncode != 0
    assert (
        "replies failed after 1 retries each" in result.stderr
        and "a rerun buys only the failed ones" in result.stderr
    )
    cached = len(ReplyCache(isolated_cache))
    assert 0 < cached == len(api.ledger.billed) < 24


def test_a_prompt_training_would_refuse_is_refused_before_any_request(tmp_path: Path, monkeypatch) -> None:
    # 40 tokens hold the chat template but no task question, so every planned prompt is refused.
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    with FakeAPI() as api:
        repo = _openai_repo(tmp_path / "repo", api)
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["student"]["max_length"] = 40
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        train_ids = {row["id"] for row in read_jsonl(repo / "data/prepared/train.jsonl")}
        result = _collect(repo)
    assert result.returncode != 0
    assert "cannot be trained on, nothing was bought" in result.stderr
    assert "student.max_length" in result.stderr
    named = re.findall(r"question (\S+) \(prompt", result.stderr)
    assert len(named) == 3 and set(named) <= train_ids
    assert api.ledger.requests == 0 and not (repo / "data/teacher").exists()
