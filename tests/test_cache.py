"""The reply cache's journal: replies that arrive together are written as one group, a line
cut short by a kill is skipped without losing the others, and caches written before the
journal still answer. Its claims: a key claimed by a live collection is not claimed again,
and the claims of a collection that ended or died pass to the next. A saved batch id is
durable, rename included."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from taloop.teachers import cache as cache_module
from taloop.teachers.base import TeacherReply
from taloop.teachers.batch import BatchState
from taloop.teachers.cache import ReplyCache

KEYS = [f"key{n}" for n in range(4)]


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


def test_a_corrupt_file_from_before_the_journal_is_skipped_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    asyncio.run(_put_all(ReplyCache(tmp_path), 2))
    bad = tmp_path / "teacher" / "cd" / "cdef.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"key": "cdef", "reply": {"te')
    with caplog.at_level(logging.WARNING):
        cache = ReplyCache(tmp_path)
        assert len(cache) == 2 and cache.get("key1") == _reply(1)
    assert f"skipped unreadable file {bad}" in caplog.text


def test_a_key_in_two_journals_answers_with_the_first_journal_s_reply(tmp_path: Path) -> None:
    # Two runs that raced past their claims (or a copied cache) each journalled key0: every
    # reader gets the same reply, the one in the journal that sorts first.
    asyncio.run(_put_all(ReplyCache(tmp_path), 1))
    second = ReplyCache(tmp_path)

    async def put_other() -> None:
        await second.put("key0", _reply(9), {})
        await second.aclose()

    asyncio.run(put_other())
    journals = sorted((tmp_path / "teacher").glob("journal-*.jsonl"))
    assert len(journals) == 2
    first_reply = TeacherReply(**json.loads(journals[0].read_text().splitlines()[0])["reply"])
    assert ReplyCache(tmp_path).get("key0") == first_reply
    assert ReplyCache(tmp_path).get("key0") == ReplyCache(tmp_path).get("key0")


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


def test_a_line_being_written_by_another_process_is_read_once_it_is_whole(tmp_path: Path) -> None:
    line = json.dumps({"key": "key9", "reply": vars(_reply(9)), "record": {}}).encode() + b"\n"
    journal = tmp_path / "teacher" / "journal-1-other.jsonl"
    journal.parent.mkdir()
    journal.write_bytes(line[:20])
    cache = ReplyCache(tmp_path)
    assert "key9" not in cache
    with journal.open("ab") as fh:
        fh.write(line[20:])
    asyncio.run(cache.refresh())
    assert cache.get("key9") == _reply(9)


def test_keys_a_live_collection_claims_are_waited_for_and_what_it_leaves_is_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "CLAIM_POLL_S", 0.01)
    first, second = ReplyCache(tmp_path), ReplyCache(tmp_path)

    async def scenario() -> list[str]:
        assert await first.claim(KEYS) == KEYS
        assert await second.claim(KEYS) == []
        waiting = asyncio.create_task(second.wait_to_claim(KEYS))
        await asyncio.gather(first.put("key0", _reply(0), {}), first.put("key1", _reply(1), {}))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # key2 and key3 are still claimed
        await first.aclose()  # it ends without buying them
        try:
            return await waiting
        finally:
            await second.aclose()

    assert asyncio.run(scenario()) == ["key2", "key3"]
    assert second.get("key0") == _reply(0) and second.get("key1") == _reply(1)
    assert not list((tmp_path / "teacher" / "claims").iterdir())  # both gave their claims up


_DIE_HOLDING_CLAIMS = """
import asyncio, os, signal, sys
from pathlib import Path
from taloop.teachers.base import TeacherReply
from taloop.teachers.cache import ReplyCache

async def main() -> None:
    cache = ReplyCache(Path(sys.argv[1]))
    await cache.claim([f"key{n}" for n in range(4)])
    await cache.put("key0", TeacherReply("rationale 0", 10, 20, {"n": 0}), {})
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def test_the_claims_of_a_collection_that_died_pass_to_the_next_and_its_replies_stay(
    tmp_path: Path,
) -> None:
    died = subprocess.run([sys.executable, "-c", _DIE_HOLDING_CLAIMS, str(tmp_path)], check=False)
    assert died.returncode == -signal.SIGKILL
    cache = ReplyCache(tmp_path)

    async def claim() -> list[str]:
        try:
            return await cache.claim(KEYS)
        finally:
            await cache.aclose()

    assert asyncio.run(claim()) == ["key1", "key2", "key3"]
    assert cache.get("key0") == _reply(0)
    assert not list((tmp_path / "teacher" / "claims").iterdir())


def test_a_saved_batch_id_is_synced_and_so_is_its_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, int]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        real_replace(src, dst)
        events.append(("replace", os.stat(dst).st_ino))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    state = BatchState(tmp_path, "openai", KEYS)
    state.save("batch_1")
    file, directory, parent = (os.stat(p).st_ino for p in (state.path, state.path.parent, tmp_path))
    # the new batches/ directory is recorded in its parent, the file synced before its
    # rename, and the directory after it
    assert events == [("fsync", parent), ("fsync", file), ("replace", file), ("fsync", directory)]
    assert BatchState(tmp_path, "openai", KEYS).load() == "batch_1"


def test_without_the_env_var_the_cache_sits_at_the_repository_root_shared_by_queued_experiments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(cache_module.CACHE_ENV, raising=False)
    repo = tmp_path / "repo"
    (repo / ".dvc" / "tmp" / "exps" / "run" / "abc123" / "src").mkdir(parents=True)
    monkeypatch.chdir(repo)
    assert cache_module.default_cache_dir() == repo.resolve() / ".taloop-cache"
    # `dvc exp run --queue` works in .dvc/tmp/exps/<run>/<id>: the user's root, not that copy.
    monkeypatch.chdir(repo / ".dvc" / "tmp" / "exps" / "run" / "abc123" / "src")
    assert cache_module.default_cache_dir() == repo.resolve() / ".taloop-cache"
    monkeypatch.setenv(cache_module.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert cache_module.default_cache_dir() == tmp_path / "elsewhere"
