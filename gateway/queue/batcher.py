"""`sending_queue::batch`: gathers queued batches of one signal into larger exports.

An export is ready once it holds `min_size` (items or bytes), or `flush_timeout` after its first
batch was queued; a batch that would take it past `max_size` starts the next one. Batches are
never split. While every consumer is busy, ready exports wait; the consumer that takes one
merges the others of its signal waiting behind it, up to `max_size`: under load exports grow
instead of queueing up, and their fixed cost (an INSERT's planning) is paid less often. The
records stay in the write-ahead log throughout: what is gathered here is only their place in it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway.queue.config import BatchSettings
from gateway.queue.wal import KIND_MASK, Record


@dataclass(frozen=True, slots=True)
class Job:
    """Batches to export together: under `group`'s token (a group record from before a
    restart, or written before the first attempt), or, `alone`, under the batch's own."""

    records: list[Record]
    group: Record | None = None
    alone: bool = False

    @property
    def kind(self) -> int:
        return self.records[0].kind & KIND_MASK

    @property
    def mergeable(self) -> bool:
        return self.group is None and not self.alone


def size_of(cfg: BatchSettings, records: list[Record]) -> int:
    return sum(r.items if cfg.sizer == "items" else r.size for r in records)


class Ready:
    """Exports waiting for a consumer, oldest first."""

    def __init__(self, cfg: BatchSettings | None) -> None:
        self.cfg = cfg
        self._jobs: deque[Job] = deque()
        self._event = asyncio.Event()

    def put(self, job: Job) -> None:
        self._jobs.append(job)
        self._event.set()

    async def get(self) -> Job:
        while not self._jobs:
            self._event.clear()
            await self._event.wait()
        return self._take()

    def _take(self) -> Job:
        job = self._jobs.popleft()
        cfg = self.cfg
        if cfg is None or not cfg.max_size or not job.mergeable or not self._jobs:
            return job
        records, size = list(job.records), size_of(cfg, job.records)
        rest: deque[Job] = deque()
        for other in self._jobs:
            if other.mergeable and other.kind == job.kind:
                more = size_of(cfg, other.records)
                if size + more <= cfg.max_size:
                    records += other.records
                    size += more
                    continue
            rest.append(other)
        self._jobs = rest
        return Job(records)


class Batcher:
    def __init__(self, cfg: BatchSettings, emit: Callable[[list[Record]], None]) -> None:
        self.cfg = cfg
        self.emit = emit
        self.immediate = False  # draining: nothing waits for company any more
        self._records: list[Record] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, rec: Record) -> None:
        size = size_of(self.cfg, [rec])
        if self._records and self.cfg.max_size and self._size + size > self.cfg.max_size:
            self.flush()
        self._records.append(rec)
        self._size += size
        if self.immediate or self._size >= self.cfg.min_size:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.cfg.flush_timeout,
                                                                self.flush)

    def flush(self) -> None:
        self.close()
        if self._records:
            records, self._records, self._size = self._records, [], 0
            self.emit(records)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
