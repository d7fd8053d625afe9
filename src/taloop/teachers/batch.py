"""Batch bookkeeping shared by the batch-API teachers: the submitted batch id is stored on
disk (beside the reply cache) before polling starts, so a rerun resumes polling it instead
of submitting, and paying for, the same requests again.

The file also names the batch's keys, so a collection that takes over some of them (from a
run that was killed, or a queued experiment that died while polling) finds the batch by any
key it holds, not only by the exact set of keys it was submitted with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from taloop.core.io import write_json
from taloop.teachers.base import TeacherReply


@dataclass
class BatchOutcome:
    batch_id: str
    status: str
    replies: dict[str, TeacherReply] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # key -> reason (errored, expired, ...)

    def mark_missing(self, keys: Iterable[str], reason: str) -> None:
        for key in keys:
            if key not in self.replies and key not in self.failed:
                self.failed[key] = reason


class BatchState:
    """One file per set of requests: <cache>/batches/<backend>-<digest of the keys>.json."""

    def __init__(
        self, cache_root: Path, backend: str, keys: Iterable[str], batch_id: str | None = None
    ) -> None:
        self.keys = sorted(keys)
        digest = hashlib.sha256("\n".join(self.keys).encode()).hexdigest()[:20]
        self.path = cache_root / "batches" / f"{backend}-{digest}.json"
        # Once known, kept: if another collection resuming the same batch is done with it
        # first and removes the file, this one resumes it too rather than submitting anew.
        self.batch_id = batch_id

    def load(self) -> str | None:
        if self.batch_id is None and self.path.is_file():
            self.batch_id = json.loads(self.path.read_text())["batch_id"]
        return self.batch_id

    def save(self, batch_id: str) -> None:
        write_json(self.path, {"batch_id": batch_id, "keys": self.keys}, durable=True)
        self.batch_id = batch_id

    def done(self) -> None:
        """Every result is in the reply cache: the batch is not needed again."""
        self.path.unlink(missing_ok=True)


def pending_batches(cache_root: Path, backend: str, keys: set[str]) -> list[BatchState]:
    """Batches submitted for any of ``keys`` whose results are not cached yet. Files saved
    before the keys were recorded are found only by :meth:`BatchState.load`."""
    found = []
    for path in sorted((cache_root / "batches").glob(f"{backend}-*.json")):
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:  # done with by another collection since the listing
            continue
        if keys.intersection(saved.get("keys", [])):
            found.append(BatchState(cache_root, backend, saved["keys"], saved["batch_id"]))
    return found
