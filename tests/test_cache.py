"""The reply cache's journal: replies that arrive together are written as one group, a line
cut short by a kill is skipped without losing the others, and caches written before the
journal still answer. Its claims: a key claimed by a live collection is not claimed again,
and the claims of a collection that ended or died pass to the next. A saved batch id is
durable, rename included."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

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


# --- the cache key -----------------------------------------------------------------------

_SETTINGS = {"temperature": 0.7, "max_tokens": 256}
_IDENTITY = ("openai", "gpt-4o-mini", "What is 2+2?", _SETTINGS, 1)


def test_the_cache_key_is_the_sha256_of_the_canonical_json_of_what_shapes_the_reply() -> None:
    # The key is an on-disk contract: journals (and the per-file layout before them) store
    # it, and a cache written by an earlier taloop must still answer, or its replies are paid
    # for again. So it is pinned to a canonical JSON written out by hand here: the five
    # fields under these names, keys sorted (settings' too), json.dumps' default separators.
    canonical = (
        '{"backend": "openai", "model": "gpt-4o-mini", "prompt": "What is 2+2?", "sample": 1, '
        '"settings": {"max_tokens": 256, "temperature": 0.7}}'
    )
    assert cache_module.cache_key(*_IDENTITY) == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (0, "anthropic"),
        (1, "gpt-4o"),
        (2, "What is 2+3?"),
        (3, {"temperature": 0.0, "max_tokens": 256}),
        (4, 0),
    ],
    ids=["backend", "model", "prompt", "settings", "sample"],
)
def test_everything_that_shapes_a_reply_changes_its_key(field: int, value: object) -> None:
    changed = list(_IDENTITY)
    changed[field] = value
    assert cache_module.cache_key(*changed) != cache_module.cache_key(*_IDENTITY)  # type: ignore[arg-type]


def test_the_order_settings_were_written_in_does_not_change_the_key() -> None:
    reordered = {"max_tokens": 256, "temperature": 0.7}
    assert list(reordered) != list(_SETTINGS)
    assert cache_module.cache_key("openai", "gpt-4o-mini", "What is 2+2?", reordered, 1) == (
        cache_module.cache_key(*_IDENTITY)
    )


# --- the journal ---------------------------------------------------------------------------


def _line(n: int) -> bytes:
    return json.dumps({"key": f"key{n}", "reply": vars(_reply(n)), "record": {}}).encode() + b"\n"


def test_a_journal_line_is_canonical_json(tmp_path: Path) -> None:
    # Sorted keys at every level, like every JSON file taloop writes: the same reply and
    # record give the same bytes whatever order their dicts were built in.
    async def put() -> None:
        await cache.put("k", TeacherReply("t", 1, 2, {"z": 1, "a": 2}), {"usd": 0.5, "model": "m"})
        await cache.aclose()

    cache = ReplyCache(tmp_path)
    asyncio.run(put())
    (journal,) = (tmp_path / "teacher").glob("journal-*.jsonl")
    assert journal.read_text() == (
        '{"key": "k", "record": {"model": "m", "usd": 0.5}, '
        '"reply": {"input_tokens": 1, "meta": {"a": 2, "z": 1}, "output_tokens": 2, "text": "t"}}\n'
    )


@pytest.mark.parametrize("claim_first", [False, True], ids=["put", "claim-then-put"])
def test_the_directories_a_journal_needs_are_recorded_on_disk_before_a_put_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, claim_first: bool
) -> None:
    # cache/ and cache/teacher/ are new: each must be fsync'ed into its parent (tmp_path and
    # cache/), and teacher/ itself for the new journal's name, or a machine crash can lose the
    # journal with replies that counted as bought. Claiming first makes the directories, so
    # it must make them durably too: the put then finds them made.
    synced: set[int] = set()
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.add(os.fstat(fd).st_ino), real_fsync(fd))[1])
    root = tmp_path / "cache"
    cache = ReplyCache(root)

    async def scenario() -> None:
        if claim_first:
            assert await cache.claim(["key0"]) == ["key0"]
        await cache.put("key0", _reply(0), {})
        await cache.aclose()

    asyncio.run(scenario())
    assert synced == {os.stat(p).st_ino for p in (tmp_path, root, root / "teacher")}


@pytest.mark.parametrize(
    ("journals", "readable", "skipped"),
    [
        ({"journal-1-a.jsonl": _line(0) + _line(1)}, ["key0", "key1"], None),
        (
            {
                # killed while writing: the last line is cut short
                "journal-1-a.jsonl": _line(0) + _line(1)[:25],
                # a line whose first bytes a machine crash left as zeros: only it is lost
                "journal-2-b.jsonl": _line(2) + b"\0" * 24 + _line(5)[24:] + _line(3),
                "journal-3-c.jsonl": _line(4),
            },
            ["key0", "key2", "key3", "key4"],
            2,
        ),
    ],
    ids=["whole", "one-torn-one-garbled"],
)
def test_incomplete_journal_lines_are_counted_across_journals_and_cost_only_themselves(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    journals: dict[str, bytes],
    readable: list[str],
    skipped: int | None,
) -> None:
    (tmp_path / "teacher").mkdir()
    for name, data in journals.items():
        (tmp_path / "teacher" / name).write_bytes(data)
    with caplog.at_level(logging.WARNING, logger=cache_module.__name__):
        cache = ReplyCache(tmp_path)
        assert sorted(cache.replies) == readable
    warnings = [r.getMessage() for r in caplog.records if r.name == cache_module.__name__]
    if skipped is None:
        assert warnings == []
    else:
        why = "(a killed run's, or a run's now writing)"
        assert warnings == [f"reply cache: skipped {skipped} incomplete journal lines {why}"]
    assert all(cache.get(key) == _reply(int(key[3:])) for key in readable)


def test_a_poll_reads_only_the_journal_lines_written_since_the_last_one(tmp_path: Path) -> None:
    # Collections waiting on another poll the journals every CLAIM_POLL_S: each poll must cost
    # what was appended since the last, not the whole cache again.
    journal = tmp_path / "teacher" / "journal-1-other.jsonl"
    journal.parent.mkdir()
    journal.write_bytes(_line(0) + _line(1))
    cache = ReplyCache(tmp_path)
    assert sorted(cache._read_journals()[0]) == ["key0", "key1"]
    assert cache._read_journals() == ({}, 0)
    with journal.open("ab") as fh:
        fh.write(_line(2))
    assert cache._read_journals() == ({"key2": _reply(2)}, 0)


def test_an_unreadable_file_from_before_the_journal_is_logged_with_its_path_and_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "teacher" / "cd" / "cdef.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"key": "cdef"}')  # whole JSON, but without its reply: KeyError('reply')
    with caplog.at_level(logging.WARNING, logger=cache_module.__name__):
        assert len(ReplyCache(tmp_path)) == 0
    assert [r.getMessage() for r in caplog.records] == [
        f"reply cache: skipped unreadable file {bad} ('reply')"
    ]


class _CloseFails(io.BufferedWriter):
    """A journal whose close fails, as it can on a network filesystem (EIO)."""

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        raise OSError(errno.EIO, "Input/output error")


def test_a_journal_that_fails_to_close_is_logged_and_the_collection_still_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_open = Path.open

    def open_(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if self.name.startswith("journal-") and mode == "ab":
            return _CloseFails(io.FileIO(self, "ab"))
        return real_open(self, mode, *args, **kwargs)

    # A context, not monkeypatch.undo(): that would also drop the autouse cache-dir isolation.
    with monkeypatch.context() as patched:
        patched.setattr(Path, "open", open_)
        cache = ReplyCache(tmp_path)

        async def scenario() -> None:
            assert await cache.claim(["key0"]) == ["key0"]
            await cache.put("key0", _reply(0), {})
            await cache.aclose()  # does not raise: the reply was durable before the close

        with caplog.at_level(logging.WARNING, logger=cache_module.__name__):
            asyncio.run(scenario())
        (journal,) = (tmp_path / "teacher").glob("journal-*.jsonl")
        (record,) = caplog.records
        assert record.getMessage() == f"reply cache: closing {journal} failed"
        assert record.exc_info is not None and record.exc_info[0] is OSError
        assert not list((tmp_path / "teacher" / "claims").iterdir())  # claims still given up
    assert ReplyCache(tmp_path).get("key0") == _reply(0)


def _failing_first_sync(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """os.fdatasync that, on its first call, signals ``writing`` and holds the group until
    ``proceed``, then fails as a full disk would; later calls sync."""
    writing, proceed = threading.Event(), threading.Event()
    real_fdatasync, calls = os.fdatasync, []

    def fdatasync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            writing.set()
            proceed.wait(5)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return writing, proceed


async def _put_two_groups(cache: ReplyCache, writing: threading.Event) -> tuple[asyncio.Task, asyncio.Task]:
    """key0's put, then key1's once key0's group is being written: key1 joins the next group."""
    first = asyncio.create_task(cache.put("key0", _reply(0), {}))
    await asyncio.to_thread(writing.wait, 5)
    second = asyncio.create_task(cache.put("key1", _reply(1), {}))
    await asyncio.sleep(0)
    return first, second


def test_a_put_made_while_a_failing_group_is_written_is_still_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writing, proceed = _failing_first_sync(monkeypatch)
    cache = ReplyCache(tmp_path)

    async def scenario() -> list[BaseException | None]:
        first, second = await _put_two_groups(cache, writing)
        proceed.set()
        try:
            return await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 5)
        finally:
            await cache.aclose()

    failed, written = asyncio.run(scenario())
    assert isinstance(failed, OSError) and written is None
    assert cache.get("key1") == _reply(1)
    # the failed journal is never appended to again: key1 went to a new one
    assert len(list((tmp_path / "teacher").glob("journal-*.jsonl"))) == 2
    assert ReplyCache(tmp_path).get("key1") == _reply(1)


def test_when_the_writer_is_cancelled_no_put_waits_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer is cancelled when its event loop shuts down: the puts of the group being
    # written and of the next group are cancelled with it, not left waiting.
    writing, proceed = _failing_first_sync(monkeypatch)
    cache = ReplyCache(tmp_path)

    async def scenario() -> list[BaseException | None]:
        first, second = await _put_two_groups(cache, writing)
        assert cache._writer is not None
        cache._writer.cancel()
        try:
            return await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 5)
        finally:
            proceed.set()

    results = asyncio.run(scenario())
    assert [type(r) for r in results] == [asyncio.CancelledError, asyncio.CancelledError]


# --- claims --------------------------------------------------------------------------------


def test_a_collection_waits_while_another_holds_the_keys_and_has_bought_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cache_module, "CLAIM_POLL_S", 0.01)
    first, second = ReplyCache(tmp_path), ReplyCache(tmp_path)

    async def scenario() -> list[str]:
        assert await first.claim(KEYS) == KEYS
        waiting = asyncio.create_task(second.wait_to_claim(KEYS))
        await asyncio.sleep(0.3)  # many polls
        assert not waiting.done()  # none of the keys is bought, all are still claimed
        await asyncio.gather(*(first.put(key, _reply(n), {}) for n, key in enumerate(KEYS)))
        await first.aclose()
        try:
            return await asyncio.wait_for(waiting, 5)
        finally:
            await second.aclose()

    with caplog.at_level(logging.INFO, logger=cache_module.__name__):
        assert asyncio.run(scenario()) == []  # all bought by the first: nothing left to buy
    assert all(second.get(key) == _reply(n) for n, key in enumerate(KEYS))
    assert "waiting for 4 replies that another collection is buying" in [
        r.getMessage() for r in caplog.records
    ]


def test_the_claims_a_dead_collection_left_are_voided_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # What a collection that died leaves: its claims and its lock file, which nobody holds.
    claims = tmp_path / "teacher" / "claims"
    claims.mkdir(parents=True)
    (claims / "4242-deadbeef0000.keys").write_text("key1\nkey2\n", encoding="utf-8")
    (claims / "4242-deadbeef0000.lock").touch()
    cache = ReplyCache(tmp_path)

    async def claim() -> list[str]:
        try:
            return await cache.claim(KEYS)
        finally:
            await cache.aclose()

    with caplog.at_level(logging.INFO, logger=cache_module.__name__):
        assert asyncio.run(claim()) == KEYS
    assert [r.getMessage() for r in caplog.records] == [
        "reply cache: collection 4242-deadbeef0000 ended or died; its claims are void"
    ]
    assert not list(claims.iterdir())


def test_claims_are_made_and_given_up_under_the_cache_wide_lock(tmp_path: Path) -> None:
    # teacher/.lock is shared with every other process (and taloop version) on the cache:
    # while someone holds it, a collection neither claims nor gives its claims up.
    cache = ReplyCache(tmp_path)
    (tmp_path / "teacher").mkdir()
    claimed: list[list[str]] = []
    claimer = threading.Thread(target=lambda: claimed.append(asyncio.run(cache.claim(KEYS))))
    closer = threading.Thread(target=lambda: asyncio.run(cache.aclose()))
    with FileLock(tmp_path / "teacher" / ".lock"):
        claimer.start()
        claimer.join(0.3)
        assert claimer.is_alive() and not claimed
    claimer.join(5)
    assert claimed == [KEYS]
    with FileLock(tmp_path / "teacher" / ".lock"):
        closer.start()
        closer.join(0.3)
        assert closer.is_alive()
        assert len(list((tmp_path / "teacher" / "claims").glob("*.keys"))) == 1
    closer.join(5)
    assert not closer.is_alive() and not list((tmp_path / "teacher" / "claims").iterdir())


def test_the_next_collection_s_event_loop_gives_up_the_claim_lock_at_the_os(tmp_path: Path) -> None:
    # A collection claims in one thread and may end in another (each asyncio.run has its own
    # worker threads): the OS lock that keeps its claims alive must be released all the same,
    # not kept (with its file descriptor) until the process exits.
    cache = ReplyCache(tmp_path)
    assert asyncio.run(cache.claim(KEYS)) == KEYS
    (lock,) = (tmp_path / "teacher" / "claims").glob("*.lock")
    fd = os.open(lock, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):  # held by the collection
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        asyncio.run(cache.aclose())
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # now free
    finally:
        os.close(fd)


def test_a_claim_that_could_not_be_written_is_given_up_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The claims file cannot be made (a full disk): the claim fails, and ending the
    # collection (aclose, in a finally) must not fail on the file that was never made.
    real_open = Path.open

    def open_(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if self.suffix == ".keys" and mode == "a":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    cache = ReplyCache(tmp_path)

    async def scenario() -> None:
        try:
            await cache.claim(KEYS)
        finally:
            await cache.aclose()

    with pytest.raises(OSError, match="No space"):
        asyncio.run(scenario())
    assert not list((tmp_path / "teacher" / "claims").iterdir())
