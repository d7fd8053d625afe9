"""Content-addressed, durable cache of teacher replies.

A reply is keyed by the SHA-256 of everything that shapes it (backend, model, prompt,
generation settings, sample index). Replies are appended to a journal (JSON lines), a new
one for each collection, so a kill can at worst cut that journal's last line short and
never corrupts what another process wrote. Replies that arrive together are written and
fsync'ed as one group (group commit) before any of them counts as bought: one fsync per
group instead of a file, an fsync and a rename per reply, which at 32 requests in flight was
the largest cost of collection after the client itself. A journal is never appended to
after its collection ends or a write to it fails, so a torn line is never followed by a good
one.

The cache lives outside DVC's outputs (see :func:`default_cache_dir`) so `dvc repro`/`dvc exp
run` removing stage outputs never throws paid replies away. Caches written by taloop before
the journal (one JSON file per reply under ``teacher/<2 hex>/``) are still read.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

from taloop.teachers.base import TeacherReply

log = logging.getLogger(__name__)

CACHE_ENV = "TALOOP_CACHE_DIR"


def repo_root(start: Path | None = None) -> Path:
    """The user's repository root, also from inside a DVC temp workspace (`dvc exp run
    --queue/--temp` runs in .dvc/tmp/exps/...), so queued experiments share one cache."""
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    for candidate in (here, *here.parents):
        if (candidate / ".dvc").is_dir() or (candidate / ".git").exists():
            return candidate
    return here


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else repo_root() / ".taloop-cache"


def cache_key(backend: str, model: str, prompt: str, settings: dict[str, Any], sample: int) -> str:
    identity = {"backend": backend, "model": model, "prompt": prompt, "settings": settings, "sample": sample}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ReplyCache:
    def __init__(self, root: Path) -> None:
        self.root = root / "teacher"
        self._replies: dict[str, TeacherReply] | None = None  # read on first lookup
        self._journal: BinaryIO | None = None
        self._waiting: list[tuple[str, TeacherReply, bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    @property
    def replies(self) -> dict[str, TeacherReply]:
        if self._replies is None:
            self._replies = self._read()
        return self._replies

    def _read(self) -> dict[str, TeacherReply]:
        replies: dict[str, TeacherReply] = {}
        torn = 0
        for path in sorted(self.root.glob("journal-*.jsonl")):
            for line in path.read_bytes().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    torn += 1  # cut short by a kill, or being written by another run now
                    continue
                replies.setdefault(entry["key"], TeacherReply(**entry["reply"]))
        for path in self.root.glob("??/*.json"):  # the layout before the journal
            entry = json.loads(path.read_text(encoding="utf-8"))
            replies.setdefault(entry["key"], TeacherReply(**entry["reply"]))
        if torn:
            log.warning(
                "reply cache: skipped %d incomplete journal lines (a killed run's, or a run's now writing)",
                torn,
            )
        return replies

    def get(self, key: str) -> TeacherReply | None:
        return self.replies.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self.replies

    def __len__(self) -> int:
        return len(self.replies)

    async def put(self, key: str, reply: TeacherReply, record: dict[str, Any]) -> None:
        """Return once the reply is durable; ``record`` (model, prompt template, price
        paid...) is kept beside it. Replies put while a group is being written form the next
        group."""
        line = json.dumps({"key": key, "reply": asdict(reply), "record": record}, sort_keys=True)
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((key, reply, line.encode() + b"\n", done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_groups())
        await done

    async def _write_groups(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                await asyncio.to_thread(self._append, b"".join(line for _, _, line, _ in group))
            except asyncio.CancelledError:
                for *_, done in group + self._waiting:
                    done.cancel()
                raise
            except Exception as err:  # e.g. a full disk: every reply of the group is unsaved
                for *_, done in group:
                    if not done.done():  # its buyer may have been cancelled meanwhile
                        done.set_exception(err)
                continue
            for key, reply, _, done in group:
                self.replies.setdefault(key, reply)
                if not done.done():
                    done.set_result(None)

    def _append(self, data: bytes) -> None:
        if self._journal is None:
            self.root.mkdir(parents=True, exist_ok=True)
            path = self.root / f"journal-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
            self._journal = path.open("ab")
            _fsync_dir(self.root)  # the new journal's name must survive a crash too
        try:
            self._journal.write(data)
            self._journal.flush()
            os.fdatasync(self._journal.fileno())
        except BaseException:
            # Part of the group may be on disk: the next group must not continue its line.
            self._end_journal()
            raise

    def _end_journal(self) -> None:
        if self._journal is not None:
            journal, self._journal = self._journal, None
            try:
                journal.close()
            except OSError:
                log.warning("reply cache: closing %s failed", journal.name, exc_info=True)

    async def aclose(self) -> None:
        """Wait for the group being written, then end this journal; a later put starts a new one."""
        if self._writer is not None:
            await asyncio.wait([self._writer])
            self._writer = None  # it belongs to this event loop; the next collection runs its own
        self._end_journal()
