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

Collections running at once on one cache (`dvc queue start -j 2`) buy each reply once. Before
buying, a collection *claims* the keys it will buy: under ``teacher/.lock``, a cache-wide
file lock held for milliseconds, it reads the other collections' claims, then the journal
lines written since it last looked, and claims what is neither cached nor claimed. The
journals are read after the claims because a collection makes its replies durable before it
gives its claims up, so a key no longer claimed is either in a journal by then or was left
unbought. Keys another collection claims are waited for (polling the journals) rather than
bought. A claim is a line in ``claims/<owner>.keys``, valid while its owner holds
``claims/<owner>.lock``: the operating system drops that lock when the owner exits or dies,
so a dead collection blocks no one, and the next claimer removes its claims and buys what it
left unbought. Claims are not fsync'ed: after a crash of the machine no process holds one.
One lock per key was the alternative; at thousands of replies a collection would hold as
many open files, and a claim made under one short lock needs only one file per collection.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Collection
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

from filelock import FileLock, Timeout

from taloop.core.io import fsync_dir, make_dirs
from taloop.teachers.base import TeacherReply

log = logging.getLogger(__name__)

CACHE_ENV = "TALOOP_CACHE_DIR"
CLAIM_POLL_S = 0.5  # how often a collection waiting for another's replies reads the journals


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


def _alive(lock: Path) -> bool:
    """Whether a process holds ``lock`` (probed without waiting)."""
    probe = FileLock(lock)
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return True
    probe.release()
    return False


class _Claims:
    """This collection's claims and the live claims of the others; used under the cache lock."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "claims"
        self._owner: str | None = None
        self._lock: FileLock | None = None

    def others(self) -> set[str]:
        """Keys claimed by live collections; the claims of those that ended or died are removed."""
        taken: set[str] = set()
        for keys in self.dir.glob("*.keys"):
            if keys.stem == self._owner:
                continue
            if _alive(keys.with_suffix(".lock")):
                taken.update(keys.read_text(encoding="utf-8").split())
            else:
                log.info("reply cache: collection %s ended or died; its claims are void", keys.stem)
                self._remove(keys.stem)
        return taken

    def add(self, keys: list[str]) -> None:
        if not keys:
            return
        if self._lock is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
            # Released by aclose, which may run on another thread than the one claiming.
            self._lock = FileLock(self.dir / f"{self._owner}.lock", thread_local=False)
            self._lock.acquire(timeout=0)  # a new file: nobody else can hold it
        with (self.dir / f"{self._owner}.keys").open("a", encoding="utf-8") as fh:
            fh.write("".join(f"{key}\n" for key in keys))

    @property
    def held(self) -> bool:
        return self._lock is not None

    def release(self) -> None:
        if self._lock is not None and self._owner is not None:
            self._remove(self._owner)
            self._lock.release()
            self._lock = self._owner = None

    def _remove(self, owner: str) -> None:
        (self.dir / f"{owner}.keys").unlink(missing_ok=True)
        (self.dir / f"{owner}.lock").unlink(missing_ok=True)


class ReplyCache:
    def __init__(self, root: Path) -> None:
        self.root = root / "teacher"
        self._replies: dict[str, TeacherReply] | None = None  # read on first lookup
        self._read_to: dict[str, int] = {}  # journal name -> bytes read of it
        self._claims = _Claims(self.root)
        self._journal: BinaryIO | None = None
        self._waiting: list[tuple[str, TeacherReply, bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    @property
    def replies(self) -> dict[str, TeacherReply]:
        if self._replies is None:
            self._replies = self._read()
        return self._replies

    def _read(self) -> dict[str, TeacherReply]:
        replies, torn = self._read_journals()
        for path in self.root.glob("??/*.json"):  # the layout before the journal
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
                replies.setdefault(entry["key"], TeacherReply(**entry["reply"]))
            except (ValueError, KeyError, TypeError) as err:
                # One unreadable file costs its reply (bought again if needed), not the cache.
                log.warning("reply cache: skipped unreadable file %s (%s)", path, err)
        if torn:
            log.warning(
                "reply cache: skipped %d incomplete journal lines (a killed run's, or a run's now writing)",
                torn,
            )
        return replies

    def _read_journals(self) -> tuple[dict[str, TeacherReply], int]:
        """The replies in journal lines written (by any process) since the last call, and how
        many lines are incomplete; a line still being written is read whole the next time."""
        replies: dict[str, TeacherReply] = {}
        torn = 0
        for path in sorted(self.root.glob("journal-*.jsonl")):
            start = self._read_to.get(path.name, 0)
            with path.open("rb") as fh:
                fh.seek(start)
                data = fh.read()
            end = data.rfind(b"\n") + 1
            self._read_to[path.name] = start + end
            torn += end < len(data)  # cut short by a kill, or being written now
            for line in data[:end].splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    torn += 1
                    continue
                replies.setdefault(entry["key"], TeacherReply(**entry["reply"]))
        return replies, torn

    def _merge(self, replies: dict[str, TeacherReply]) -> None:
        for key, reply in replies.items():
            self.replies.setdefault(key, reply)

    def get(self, key: str) -> TeacherReply | None:
        return self.replies.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self.replies

    def __len__(self) -> int:
        return len(self.replies)

    async def refresh(self) -> None:
        """Read the replies other processes have written since this one last looked."""
        replies, _ = await asyncio.to_thread(self._read_journals)
        self._merge(replies)

    async def claim(self, keys: Collection[str]) -> list[str]:
        """Those of ``keys`` that this collection is now to buy: neither cached (after
        :meth:`refresh`) nor claimed by another live collection. They stay claimed until
        :meth:`aclose`."""
        replies, mine = await asyncio.to_thread(self._claim, keys)
        self._merge(replies)
        return mine

    def _claim(self, keys: Collection[str]) -> tuple[dict[str, TeacherReply], list[str]]:
        cached = self.replies  # first, so that the journal lines read below are new to it
        make_dirs(self.root, durable=True)  # a journal will be made in it
        with FileLock(self.root / ".lock"):
            taken = self._claims.others()
            replies, _ = self._read_journals()  # after the claims: see the module docstring
            mine = [k for k in keys if k not in taken and k not in replies and k not in cached]
            self._claims.add(mine)
        return replies, mine

    async def wait_to_claim(self, keys: Collection[str]) -> list[str]:
        """Wait until other collections have bought all of ``keys`` (claimed by them), or left
        some unbought as they ended or died: those are returned, claimed by this one."""
        log.info("waiting for %d replies that another collection is buying", len(keys))
        while True:
            await asyncio.sleep(CLAIM_POLL_S)
            mine = await self.claim(keys)
            if mine or all(key in self.replies for key in keys):
                return mine

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
            make_dirs(self.root, durable=True)
            path = self.root / f"journal-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
            self._journal = path.open("ab")
            fsync_dir(self.root)  # the new journal's name must survive a crash too
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
        """Wait for the group being written, end this journal (a later put starts a new one),
        then give up this collection's claims: what it bought is durable by then."""
        if self._writer is not None:
            await asyncio.wait([self._writer])
            self._writer = None  # it belongs to this event loop; the next collection runs its own
        self._end_journal()
        await asyncio.to_thread(self._release_claims)

    def _release_claims(self) -> None:
        if self._claims.held:
            with FileLock(self.root / ".lock"):
                self._claims.release()
