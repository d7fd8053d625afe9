"""The reply cache's journal: replies that arrive together are written as one group, a line
cut short by a kill is skipped without losing the others, and caches written before the
journal still answer."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest

from taloop.teachers.base import TeacherReply
from taloop.teachers.cache import ReplyCache


def _reply(n: int) -> TeacherReply:
    return TeacherReply(text=f"rationale {n}", input_tokens=10 + n, output_tokens=20 + n, meta={"n": n})


async def _put_all(cache: ReplyCache, count: int, first: int = 0) -> None:
    try:
        await asyncio.gather(
            *(cache.put(f"key{n}", _reply(n), {"usd": n / 1000}) for n in range(first, first + count))
        )
    finally:
        await cache.aclose()


def test_replies_put_together_are_one_fsynced_group_readable_by_a_new_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real_fdatasync(fd))[1])
    cache = ReplyCache(tmp_path)
    asyncio.run(_put_all(cache, 50))
    # The first put starts the writer, which runs after the other 49 puts have queued.
    assert len(synced) == 1
    (journal,) = (tmp_path / "teacher").glob("journal-*.jsonl")
    lines = journal.read_text().splitlines()
    assert len(lines) == 50 and json.loads(lines[0])["record"] == {"usd": 0.0}
    fresh = ReplyCache(tmp_path)
    assert len(fresh) == 50 and fresh.get("key7") == _reply(7) and "key50" not in fresh


def test_a_line_cut_short_by_a_kill_is_skipped_and_the_next_run_writes_a_new_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = ReplyCache(tmp_path)
    asyncio.run(_put_all(cache, 3))
    (journal,) = (tmp_path / "teacher").glob("journal-*.jsonl")
    with journal.open("ab") as fh:  # what a kill in the middle of a write leaves
        fh.write(b'{"key": "key3", "reply": {"text": "rati')
    resumed = ReplyCache(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert len(resumed) == 3 and "key3" not in resumed
    assert "skipped 1 incomplete journal lines" in caplog.text

    async def resume() -> None:
        await resumed.put("key3", _reply(3), {})
        await resumed.aclose()

    asyncio.run(resume())
    assert len(list((tmp_path / "teacher").glob("journal-*.jsonl"))) == 2
    assert ReplyCache(tmp_path).get("key3") == _reply(3)


def test_a_cache_from_before_the_journal_still_answers(tmp_path: Path) -> None:
    legacy = tmp_path / "teacher" / "ab" / "abcdef.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"key": "abcdef", "reply": vars(_reply(1)), "record": {"usd": 0.1}}))
    assert ReplyCache(tmp_path).get("abcdef") == _reply(1)


def test_a_failed_write_reaches_every_waiting_put(tmp_path: Path) -> None:
    (tmp_path / "teacher").write_text("a file where the cache directory should be")
    cache = ReplyCache(tmp_path)
    with pytest.raises(OSError):
        asyncio.run(_put_all(cache, 5))
    assert len(cache) == 0


def test_after_a_failed_sync_the_next_group_starts_a_new_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fdatasync, calls = os.fdatasync, []

    def fail_once(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fail_once)
    cache = ReplyCache(tmp_path)
    assert len(cache) == 0
    with pytest.raises(OSError, match="No space"):
        asyncio.run(_put_all(cache, 3))
    assert "key0" not in cache  # not known durable, so not counted as cached
    asyncio.run(_put_all(cache, 3, first=3))
    assert len(list((tmp_path / "teacher").glob("journal-*.jsonl"))) == 2
    assert all(f"key{n}" in ReplyCache(tmp_path) for n in range(3, 6))
