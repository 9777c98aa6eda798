"""The dead-letter directory: batches the destination refused for good, kept for a person.

Each batch is two files named `<UTC time>-<token>`: `.pb`, the serialized OTLP
Export*ServiceRequest exactly as it would have been sent (replay it with any OTLP client, e.g.
`curl --data-binary @F.pb -H 'Content-Type: application/x-protobuf' http://gw:4318/v1/traces`),
and `.json`, why it is here: the destination's error, the signal, the item count, the exporter,
the time. The `.json` is written last, so a batch with one is complete. With fsync on, both files
and their names in the directory reach the disk before the batch leaves the queue's log.

The directory holds at most `limit` bytes (0: no limit): beyond it the oldest batches are
deleted, so a stream of refused data cannot fill the disk the queue's log needs (a full disk
would refuse every batch, good ones included). The batch just written is always kept.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from gateway.files import fsync_path, replace_file

log = logging.getLogger(__name__)


class Written(NamedTuple):
    path: Path     # the batch's `.json`
    deleted: int   # older batches deleted to stay within the limit


class DeadLetters:
    def __init__(self, directory: Path, fsync: bool, limit: int = 0) -> None:
        self.directory = directory
        self.fsync = fsync
        self.limit = limit
        self._sizes: dict[str, int] | None = None  # bytes per batch name, oldest first
        self._total = 0
        self._lock = threading.Lock()

    def write(self, data: bytes, token: str, info: dict[str, Any]) -> Written:
        """Stores one batch (blocking: run in a thread)."""
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            if self.fsync:  # the directory's own name must survive a crash too
                fsync_path(self.directory.parent)
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
        base = f"{stamp}-{token[:16] or 'unknown'}"
        meta = {**info, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "token": token, "bytes": len(data), "payload_file": base + ".pb"}
        replace_file(self.directory / (base + ".pb"), data, self.fsync)
        path = self.directory / (base + ".json")
        text = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
        replace_file(path, text, self.fsync)
        if self.fsync:  # the renames: without this a crash may leave the batch nowhere
            fsync_path(self.directory)
        if not self.limit:
            return Written(path, 0)
        try:
            with self._lock:  # consumers write dead letters from several threads
                deleted = self._trim(base, len(data) + len(text))
        except OSError as exc:  # the batch is stored; only the room for the next is not made
            log.warning("cannot keep the dead-letter directory %s within its limit: %s",
                        self.directory, exc)
            deleted = 0
        return Written(path, deleted)

    def _trim(self, added: str, size: int) -> int:
        """Caller holds the lock. Accounts for the batch `added`; deletes the oldest batches
        while over the limit."""
        sizes = self._sizes
        if sizes is None:  # the batches of earlier runs, read once, this one among them
            sizes = self._sizes = {}
            for p in sorted(self.directory.iterdir()):
                if p.suffix in (".pb", ".json") and p.stem != added:
                    sizes[p.stem] = sizes.get(p.stem, 0) + p.stat().st_size
            self._total = sum(sizes.values())
        self._total += size - sizes.get(added, 0)  # another thread's scan may have seen it
        sizes[added] = size
        deleted = 0
        while self._total > self.limit and sizes:
            oldest = next(iter(sizes))
            if oldest == added:
                break
            # the `.json` first: a crash in between leaves a `.pb` without one, which a person
            # reads as incomplete, never a description of a batch that is gone
            for suffix in (".json", ".pb"):
                (self.directory / (oldest + suffix)).unlink(missing_ok=True)
            self._total -= sizes.pop(oldest)
            deleted += 1
        return deleted
