"""A durable sending queue: batches go into a write-ahead log on disk, `num_consumers` tasks
export them with retries, and a batch leaves the log only once it was exported (or set aside in
the dead-letter directory).

`put()` returns once the batch is in the log (per the fsync policy): that is the acknowledgement
a receiver gives its client. At the capacity it raises RefusedError (HTTP 429 / gRPC
RESOURCE_EXHAUSTED with a retry delay) or, with `block_on_overflow`, waits for room.

The export function is the exporter's: it raises PermanentError when the destination refuses the
data itself (the batch goes to the dead-letter directory at once) and anything else for a failure
worth retrying. Transient failures are retried with backoff for as long as the destination fails
for every batch: an outage only fills the queue (and then refuses clients), it never drops data.
A batch that keeps failing while other batches go through is the problem itself: after
`max_elapsed_time` it goes to the dead-letter directory too.

With `batch` set, consumers merge consecutive queued batches of a signal into one export (the
concatenation of serialized requests parses as one request). Each export first gets a group
record in the log naming its members; its token is the one every attempt carries, before and
after a restart, so an export that landed before a crash and is sent again is dropped by the
destination however the queue would merge after the restart. A merged export the destination
refuses on its first attempt is taken apart and its batches exported one by one (each under a
group record of its own, so never merged again), so one bad batch goes to the dead-letter
directory alone. An export that may have been stored already, whole or in part (an earlier
attempt failed transiently, it was attempted before a restart, or the refusal came from a view
after others had stored their rows: PermanentError.stored_in_part), is never taken apart: its
batches would go out again under new tokens; it is retried as it is or set aside whole.

With `store_sync` (the embedded store, whose parts are written without fsync, as ClickHouse
does by default) a batch stays in the log until the store's data is on disk too: what an export
marks done reaches the log's files only after the next `store_sync()` (every
STORE_SYNC_INTERVAL seconds) that started after it, so a crash of the machine that loses the
store's last writes finds those batches still pending, and sends them again under their tokens.
Until then a batch keeps its place in the queue: a store that cannot be synced fills the queue,
which refuses clients, rather than the log filling the disk.

Shutdown stops taking batches, lets the consumers export what is queued for `drain_timeout`, and
leaves the rest in the log for the next start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from gateway.errors import PermanentError, RefusedError, RetryableError
from gateway.files import mount_of
from gateway.queue.backoff import Backoff
from gateway.queue.batcher import Batcher, Job, Ready
from gateway.queue.config import Fsync, QueueSettings, RetrySettings
from gateway.queue.deadletter import DeadLetters
from gateway.queue.wal import (
    BATCHABLE,
    GROUP,
    KIND_MASK,
    MAX_PAYLOAD,
    CorruptRecordError,
    QueueLockedError,
    Record,
    WriteAheadLog,
)
from gateway.signals import Signal

log = logging.getLogger(__name__)

# how often the store's writes are made durable, so that the batches they hold leave the log
STORE_SYNC_INTERVAL = 1.0

# the signal of a record, as stored on disk: never renumber
KIND = {Signal.TRACES: 1, Signal.METRICS: 2, Signal.LOGS: 3}
SIGNAL = {v: k for k, v in KIND.items()}


@dataclass(frozen=True, slots=True)
class Batch:
    signal: Signal
    items: int
    data: bytes   # the serialized Export*ServiceRequest
    token: str    # the same for every attempt, across restarts: the deduplication token


Export = Callable[[Batch], Awaitable[None]]


class DurableQueue:
    def __init__(self, owner: str, directory: Path, cfg: QueueSettings, retry: RetrySettings,
                 export: Export, telemetry: Any = None, segment_bytes: int | None = None,
                 store_sync: Callable[[], None] | None = None) -> None:
        self.owner = owner
        self.directory = directory
        self.cfg = cfg
        self.retry = retry
        self._export = export
        self._t = telemetry
        kwargs = {"segment_bytes": segment_bytes} if segment_bytes else {}
        self.wal = WriteAheadLog(directory, cfg.fsync, on_durable=self._ready_put, **kwargs)
        self.dead_letters = DeadLetters(directory / "dead_letter", cfg.fsync is not Fsync.NEVER,
                                        cfg.dead_letter_limit_mib * 2**20)
        self.used = 0                  # in sizer units: what counts against queue_size
        self.batches = 0
        self._ready = Ready(cfg.batch)
        self._batchers: dict[int, Batcher] = {}
        if cfg.batch is not None:
            self._batchers = {kind: Batcher(cfg.batch, self._ready_group) for kind in SIGNAL}
        self._room = asyncio.Event()   # replaced after each wake-up
        self._progress = asyncio.Event()
        self._closing = asyncio.Event()
        self._accepting = False
        self._consumers: list[asyncio.Task[None]] = []
        self._idle: set[asyncio.Task[None]] = set()
        self._last_success = 0.0
        self._labels = {"exporter": owner}
        self._bytes_gauge: Gauge | None = None
        self._dead: Counter | None = None
        self._dead_items: Counter | None = None
        self._dead_deleted: Counter | None = None
        # with fsync never the log itself survives a gateway crash only: so need the store's
        self._store_sync = store_sync if cfg.fsync is not Fsync.NEVER else None
        self._unsynced: list[Callable[[], None]] = []  # _settle's actions waiting for the sync
        self._syncer: asyncio.Task[None] | None = None

    # -- lifecycle

    def _warn_online_discard(self) -> None:
        """With online discard (mount option `discard`) the kernel trims the blocks of deleted
        files when it commits the deletion, and on many disks, virtual ones especially, the
        writes and flushes queued behind a trim wait for it. The log reuses its files, but the
        embedded store deletes merged parts all the time: on the benchmark machine an fdatasync
        of 256 KiB took up to 1.1 s while another process deleted files (66 ms at most with
        `nodiscard`), and the acknowledgements' p99 followed those stalls."""
        mount = mount_of(self.directory)
        if mount is not None and "discard" in mount.options:
            log.warning("exporter %s: the sending queue at %s is on a filesystem mounted with "
                        "`discard` (%s, %s): while files on that disk are deleted (the store's "
                        "merged parts) an acknowledgement, which waits for the queue's fsync, "
                        "can stall for up to a second behind the disk's trims. Mount it with "
                        "`nodiscard` and trim on a timer (fstrim), or put the queue on another "
                        "disk (sending_queue.directory).", self.owner, self.directory,
                        mount.point, mount.fstype)

    async def start(self) -> None:
        try:
            pending = await asyncio.to_thread(self.wal.open)
        except QueueLockedError:
            raise
        except OSError as exc:
            raise OSError(f"exporter {self.owner}: cannot open its sending queue in "
                          f"{self.directory}: {exc} (see sending_queue.directory / storage)") \
                from exc
        if self.cfg.fsync is not Fsync.NEVER:
            self._warn_online_discard()
        grouped = {r for _, members in self.wal.groups for r in members}
        for group, members in self.wal.groups:  # exported as they were before the stop
            self._ready.put(Job(members, group))
        for rec in pending:
            self._count(rec, +1)
            if rec not in grouped:
                self._enqueue(rec)
        if self._t is not None:
            self._bytes_gauge = self._t.metric(
                Gauge, "otelgw_exporter_queue_bytes",
                "Bytes of data in the exporter's sending queue (its write-ahead log's records and "
                "acks; room preallocated for records is not counted)", ["exporter"])
            self._dead = self._t.metric(
                Counter, "otelgw_exporter_dead_lettered_batches",
                "Batches the exporter set aside in its dead-letter directory",
                ["exporter", "data_type"])
            self._dead_items = self._t.metric(
                Counter, "otelgw_exporter_dead_lettered_items",
                "Spans, data points and log records the exporter set aside in its dead-letter "
                "directory", ["exporter", "data_type"])
            self._dead_deleted = self._t.metric(
                Counter, "otelgw_exporter_dead_letters_deleted_batches",
                "Batches deleted from the dead-letter directory, oldest first, to keep it within "
                "dead_letter_limit_mib", ["exporter"])
            self._t.exporter_queue_capacity.labels(**self._labels).set(self.cfg.queue_size)
            # what an acknowledgement waits for: a slow disk shows here first
            self.wal.on_commit = self._t.metric(
                Histogram, "otelgw_exporter_queue_commit_duration_seconds",
                "Duration of one group commit of the sending queue's write-ahead log: the write "
                "of the requests that arrived meanwhile and its fdatasync", ["exporter"],
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                         2.5)).labels(**self._labels).observe
        self._gauges()
        if pending:
            items = sum(r.items for r in pending)
            log.info("exporter %s: %d batches (%d items) in the queue at %s from before the "
                     "last stop are being sent%s", self.owner, len(pending), items,
                     self.directory, f"; {len(grouped)} of them as the {len(self.wal.groups)} "
                     "merged exports they were in, which may have been stored already"
                     if grouped else "")
        self._accepting = True
        loop = asyncio.get_running_loop()
        self._consumers = [loop.create_task(self._consume(), name=f"{self.owner}-consumer-{i}")
                           for i in range(self.cfg.num_consumers)]
        if self._store_sync is not None:
            self._syncer = loop.create_task(self._sync_store(), name=f"{self.owner}-store-sync")

    async def shutdown(self) -> None:
        """Stops taking batches, exports what is queued for up to `drain_timeout`, then stops;
        what is left stays on disk."""
        if not self.wal.is_open:  # never started, or already stopped
            return
        self._accepting = False
        self._wake_room()  # writers blocked on a full queue give up
        await self.wal.flushed()
        for batcher in self._batchers.values():  # what is queued goes out now
            batcher.immediate = True
            batcher.flush()
        deadline = time.monotonic() + self.cfg.drain_timeout
        while self.batches and time.monotonic() < deadline:
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        self._closing.set()
        for batcher in self._batchers.values():
            batcher.close()
        for task in list(self._idle):
            task.cancel()
        await asyncio.gather(*self._consumers, return_exceptions=True)
        self._consumers = []
        if self._syncer is not None:
            self._syncer.cancel()
            await asyncio.gather(self._syncer, return_exceptions=True)
            self._syncer = None
            await self._store_synced()  # what was exported leaves the log now
        await self.wal.close()
        self._gauges()
        if self.batches:
            log.warning("exporter %s: %d batches stay in the queue at %s (not sent within "
                        "drain_timeout %gs); they are sent after the next start", self.owner,
                        self.batches, self.directory, self.cfg.drain_timeout)

    # -- producing

    async def put(self, signal: Signal, items: int, data: bytes) -> None:
        """Returns once the batch is in the log; RefusedError at the capacity."""
        if len(data) > MAX_PAYLOAD:
            raise PermanentError(f"a batch of {len(data)} bytes is larger than the sending queue "
                                 f"takes ({MAX_PAYLOAD} bytes); lower the batch size")
        cost = self._cost(items, len(data))
        await self._reserve(cost, signal, items)
        self.batches += 1
        kind = KIND[signal] | (BATCHABLE if self._batchers else 0)
        fut = self.wal.submit(kind, items, data)
        fut.add_done_callback(lambda f: self._unreserve(f, cost))
        try:
            await asyncio.shield(fut)
        except OSError as exc:  # the disk refuses (full, read-only, out of files): not the data
            raise RetryableError(f"exporter {self.owner}: the batch could not be stored in its "
                                 f"sending queue: {exc}", retry_after=5.0) from None
        self._gauges()

    def _cost(self, items: int, size: int) -> int:
        return {"requests": 1, "items": items, "bytes": size}[self.cfg.sizer]

    async def _reserve(self, cost: int, signal: Signal, items: int) -> None:
        while True:
            if not self._accepting:
                raise RetryableError("the exporter is shutting down", retry_after=1.0)
            if self.used == 0 or self.used + cost <= self.cfg.queue_size:
                self.used += cost
                return
            if not self.cfg.block_on_overflow:
                if self._t is not None:
                    self._t.exporter_enqueue_failed[signal.item_name].labels(
                        **self._labels).inc(items)
                # room comes soon while exports succeed; in an outage, not before a retry
                healthy = self._last_success > time.monotonic() - 10
                raise RefusedError("sending queue is full", retry_after=1.0 if healthy else
                                   max(1.0, self.retry.initial_interval))
            await self._room.wait()

    def _unreserve(self, fut: asyncio.Future[Record], cost: int) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self.used -= cost
            self.batches -= 1
            self._wake_room()
            self._gauges()

    def _wake_room(self) -> None:
        room, self._room = self._room, asyncio.Event()
        room.set()

    def _ready_put(self, rec: Record) -> None:
        if not rec.kind & GROUP:  # a group record is written by the consumer that exports it
            self._enqueue(rec)

    def _enqueue(self, rec: Record) -> None:
        batcher = self._batchers.get(rec.kind & KIND_MASK)
        if batcher is not None and rec.kind & BATCHABLE:
            batcher.add(rec)
        else:  # without the flag it may have been sent alone before a restart: alone again
            self._ready.put(Job([rec], alone=True))

    def _ready_group(self, records: list[Record]) -> None:
        self._ready.put(Job(records))

    def _count(self, rec: Record, sign: int) -> None:
        self.used += sign * self._cost(rec.items, rec.size)
        self.batches += sign

    # -- consuming

    async def _consume(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        while not self._closing.is_set():
            self._idle.add(task)
            try:
                job = await self._ready.get()
            finally:
                self._idle.discard(task)
            if self._closing.is_set():
                return  # stays in the log
            try:
                await self._deliver(job)
            except Exception:  # a bug must not stop the consumer; the record stays on disk
                log.exception("exporter %s: consumer failed on a queued batch", self.owner)

    async def _deliver(self, job: Job) -> None:
        signal = SIGNAL.get(job.records[0].kind & KIND_MASK)
        read, data = await asyncio.to_thread(self._read, job.records, signal is not None)
        records: list[Record] = []
        parts: list[bytes] = []  # each record's own request, for a dead letter
        for rec, got in zip(job.records, read, strict=True):
            if isinstance(got, bytes) and signal is not None:
                records.append(rec)
                parts.append(got)
            elif isinstance(got, bytes):
                await self._dead_letter(rec, None, got, f"unknown signal kind {rec.kind}")
            else:
                await self._dead_letter(rec, signal, b"", f"the queued batch cannot be read: "
                                                          f"{got}")
        group = job.group
        replayed = group is not None  # attempted before a restart: it may have been stored
        if records and group is None and not job.alone:
            group = await self._write_group(records)
            if group is None:
                return  # closing: stays in the log
        if not records:
            self._release(group)  # its members are done
            return
        items = sum(r.items for r in records)
        token = (group or records[0]).token.hex()
        attempt = await self._attempts(Batch(signal, items, data, token))
        if attempt is None:
            return  # closing: stays in the log
        outcome, refused = attempt
        refused = refused and not replayed
        if not outcome:
            if self._t is not None:
                self._t.exporter_sent[signal.item_name].labels(**self._labels).inc(items)
            for rec in records:
                self._done(rec)
        elif len(records) == 1 or not refused:
            # Taken apart, the members would go out under new tokens: right when the destination
            # refused the data at its only attempt (nothing was stored), but after a transient
            # failure, or before a restart, the merged INSERT may have landed, and new tokens
            # would store it twice. Set aside whole.
            for rec, part in zip(records, parts, strict=True):
                await self._dead_letter(rec, signal, part, outcome)
        else:
            assert group is not None
            log.warning("exporter %s: an export of %d merged batches (%d %s) failed; they are "
                        "exported one by one, so only a bad one is set aside: %s", self.owner,
                        len(records), items, signal.item_name, outcome)
            try:
                self.wal.dissolve(group)
            except OSError as exc:  # after a restart the members' own groups are the newer
                log.warning("exporter %s: cannot record the split of a merged export in the "
                            "queue: %s", self.owner, exc)
            for rec in records:  # each under a group of its own: sent alone, never merged
                await self._deliver(Job([rec]))
            return
        self._release(group)

    def _release(self, group: Record | None) -> None:
        if group is not None:
            self._settle(lambda: self._update(lambda: self.wal.release(group),
                                              "clean up the queue"))

    def _settle(self, action: Callable[[], None]) -> None:
        """Runs `action` (it does not raise), which lets batches go: now, or with `store_sync`
        after the next sync of the store (in order: a group is released after its members)."""
        if self._store_sync is not None:
            self._unsynced.append(action)
        else:
            action()

    def _update(self, update: Callable[[], None], what: str) -> None:
        try:
            update()
        except OSError as exc:  # sent again after a restart, and deduplicated
            log.warning("exporter %s: cannot %s: %s", self.owner, what, exc)
        except Exception:  # a bug: the batches are sent again after a restart
            log.exception("exporter %s: cannot %s", self.owner, what)

    async def _sync_store(self) -> None:
        while True:
            await asyncio.sleep(STORE_SYNC_INTERVAL)
            await self._store_synced()

    async def _store_synced(self) -> None:
        """Makes the store's writes durable, then applies the log updates made before."""
        if not self._unsynced or self._store_sync is None:
            return
        updates, self._unsynced = self._unsynced, []
        try:
            await asyncio.to_thread(self._store_sync)
        except asyncio.CancelledError:  # shutdown: its last sync takes them
            self._unsynced[:0] = updates
            raise
        except Exception as exc:  # OSError, or the engine's: kept, and sent again if it stays
            self._unsynced[:0] = updates
            log.warning("exporter %s: cannot make the store's writes durable (%s); the "
                        "batches stay in the queue until it can", self.owner, exc)
            return
        for action in updates:
            action()

    def _read(self, records: list[Record],
               join: bool) -> tuple[list[bytes | Exception], bytes]:
        """Each record's payload (or why it cannot be read) and, with `join`, the payloads
        that could be read as one request (in this thread: megabytes are copied)."""
        out: list[bytes | Exception] = []
        for rec in records:
            try:
                out.append(self.wal.read(rec))
            except (CorruptRecordError, OSError) as exc:
                out.append(exc)
        data = b"".join(p for p in out if isinstance(p, bytes)) if join else b""
        return out, data

    async def _write_group(self, records: list[Record]) -> Record | None:
        """The group record of an export, written before its first attempt; None when the
        queue closes before it could be written."""
        backoff = Backoff(self.retry)
        while True:
            try:
                return await self.wal.append_group(records[0].kind, records)
            except OSError as exc:
                wait = backoff.next()
                log.warning("exporter %s: cannot write the sending queue, retrying in %.1fs: "
                            "%s", self.owner, wait, exc)
                if await self._sleep(wait):
                    return None

    async def _attempts(self, batch: Batch) -> tuple[str, bool] | None:
        """Exports `batch` until it is sent (("", False)), is to be set aside ((the reason,
        whether the destination refused the data as invalid at the first attempt and nothing
        of it can have been stored)), or the queue closes (None)."""
        backoff = Backoff(self.retry)
        first = time.monotonic()
        warned = False
        tried = False
        item_name = batch.signal.item_name
        while True:
            try:
                await self._export(batch)
            except PermanentError as exc:
                return str(exc), not tried and not exc.stored_in_part
            except Exception as exc:
                tried = True
                if self._closing.is_set():
                    return None
                elapsed = time.monotonic() - first
                reason = self._give_up(first, elapsed, exc)
                if reason:
                    return reason, False
                if self.retry.max_elapsed_time and elapsed >= self.retry.max_elapsed_time \
                        and not warned:
                    warned = True
                    log.error("exporter %s: a batch of %d %s still fails after %.0fs while "
                              "every export fails; it stays queued: %s", self.owner,
                              batch.items, item_name, elapsed, exc)
                wait = backoff.next()
                log.warning("exporter %s: export of %d %s failed, retrying in %.1fs: %s",
                            self.owner, batch.items, item_name, wait, exc)
                if await self._sleep(wait):
                    return None
                continue
            self._last_success = time.monotonic()
            return "", False

    def _give_up(self, first: float, elapsed: float, exc: Exception) -> str:
        if not self.retry.enabled:
            return f"the export failed and retry_on_failure is disabled: {exc}"
        budget = self.retry.max_elapsed_time
        if budget and elapsed >= budget and self._last_success > first:
            return (f"the export kept failing for {elapsed:.0f}s (max_elapsed_time) while other "
                    f"batches were exported: {exc}")
        return ""

    async def _sleep(self, seconds: float) -> bool:
        """Waits; True when the queue is closing meanwhile."""
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _dead_letter(self, rec: Record, signal: Signal | None, data: bytes,
                           error: str) -> None:
        kind = signal.value if signal else "unknown"
        info = {"exporter": self.owner, "signal": kind, "items": rec.items, "error": error}
        try:
            path, deleted = await asyncio.to_thread(self.dead_letters.write, data,
                                                    rec.token.hex(), info)
        except OSError as exc:
            # keeping it queued would retry it forever: it is dropped, loudly
            log.error("exporter %s: DROPPED a batch of %d items: it cannot be stored in the "
                      "dead-letter directory (%s) after: %s", self.owner, rec.items, exc, error)
        else:
            log.error("exporter %s: a batch of %d %s went to the dead-letter directory (%s): "
                      "%s", self.owner, rec.items, signal.item_name if signal else "items",
                      path, error)
            if deleted:
                log.warning("exporter %s: deleted the %d oldest batches of the dead-letter "
                            "directory to keep it within dead_letter_limit_mib (%d MiB)",
                            self.owner, deleted, self.cfg.dead_letter_limit_mib)
                if self._dead_deleted is not None:
                    self._dead_deleted.labels(self.owner).inc(deleted)
        if self._t is not None:
            if signal is not None:
                self._t.exporter_send_failed[signal.item_name].labels(**self._labels).inc(
                    rec.items)
            if self._dead is not None and self._dead_items is not None:
                self._dead.labels(self.owner, kind).inc()
                self._dead_items.labels(self.owner, kind).inc(rec.items)
        self._done(rec)

    def _done(self, rec: Record) -> None:
        # it holds its place in the queue until it leaves the log: while the store cannot be
        # synced, the queue fills and refuses clients instead of the log filling the disk
        self._settle(lambda: self._leave(rec))

    def _leave(self, rec: Record) -> None:
        self._update(lambda: self.wal.ack(rec), "record a sent batch in the queue")
        self._count(rec, -1)
        self._wake_room()
        self._progress.set()
        self._gauges()

    def _gauges(self) -> None:
        if self._t is None:
            return
        self._t.exporter_queue_size.labels(**self._labels).set(self.used)
        if self._bytes_gauge is not None:
            self._bytes_gauge.labels(**self._labels).set(self.wal.disk_bytes)
