"""The write-ahead log under a durable queue: records appended to segment files, acknowledged
one by one, replayed after a restart.

A queue directory holds:

    LOCK                 locked (flock) by the process that owns the queue, holds its pid
    <id>.wal             a segment: records one after another; only the newest is appended to
                         (with fsync, segments end in room not yet written: zeros, or what an
                         earlier segment left in a reused file, below)
    <id>.ack             the offsets of the segment's records that are done (sent or set aside)
    <id>.free            a done segment's file kept to become a later segment (below); gone when
                         the log closes or opens: ids start again at 1 in an empty directory, so
                         a file is reused only within the run that wrote it

A record is `magic (4) | length (u32) | crc (u32) | body`, the body `kind (u8) | items (u32) |
token (16) | payload`; little endian, the CRC-32 covers the length and the body. The token is the
id the batch gets as it enters the log, 64 random bits and the id of its segment (u64): every
attempt to send the batch, before or after a restart, carries it, so the destination can drop a
repeat. (Not a hash of the content: two batches with the same bytes are two batches, as without
a queue; 64 random bits keep tokens apart within a deduplication window of any size in use.)
The segment in the token tells a record from one an earlier segment left in a reused file.
Records of format 1 (magic ending in 1, written before segments were reused) have a token of
128 random bits; replay still reads them. The format only moves forward: a version before
format 2 finds no record in a queue written by this one, so a queue is drained before going
back to it. An ack entry is `offset (u64) | crc of the offset (u32)`.

Batches exported together are tied by a group record (kind with GROUP set), written before the
first attempt: its payload lists the members as `segment (u64) | offset (u64)`, its token is the
one every attempt of the merged export carries. Replay rebuilds each group from the members
still pending, so an export that landed before a crash is repeated with the same members and
token, and dropped by the destination. A group that was exported is never acked on disk: it is
done once its members are (in memory it counts as done at once); a group taken apart after the
destination refused it is acked, with an fsync, before its members go anywhere else. Where two
groups claim a member, the newer one holds it: a newer claim is only made after the older
group's attempt failed. Batches written by a queue that merges carry BATCHABLE: when one is
pending without a group it was never attempted, so replay may merge it freely; one without the
flag may have been sent alone under its own token and is sent alone again.

Appends are group-committed: appends that arrive while the log writes (and fsyncs) one group wait
and go out together with the next one, so one fsync covers many batches (`Fsync.BATCH`). One
writer thread does every write; the event loop hands it each iteration's appends at once and
gets each group's outcome back in one call.

Segments are preallocated (unless fsync is `never`): an acknowledgement waits for its group's
fdatasync, and one after a write that grows the file, or fills a fallocate'd (unwritten) extent,
needs a filesystem journal commit, which is slow and queues behind every other file's metadata
(on ext4, the store's parts). So once the active segment is a quarter full a thread of its own
prepares the next one, a file of `segment_bytes` whose blocks are all written, and fsyncs its
directory entry; rotation then switches to it without touching the disk, and records are
written at the file position, from its start. The file is a done segment of this run, renamed
(`.free` once done, at most `_FREE_MAX` of them, then the new id: PostgreSQL's recycling of
WAL files): written zeros cost as many disk writes as the records themselves. Without one, the
spare is written full of zeros.
Rotation never waits for a spare: one that is not ready is abandoned (its thread deletes it) and
a growing segment is created as without preallocation, under a newer id, so ids stay in the order
records were written, and an id is never that of a record in a reused file.

The data of a segment ends where its zeros begin, or after its last record, where the bytes of
a reused file's earlier segment (records that name another segment, or pieces of them) begin:
replay stops there without a word (the scan for zeros runs back from the end of the file, so a
record whose payload ends in zero bytes keeps them). A spare left unused by a crash holds no
record of its own and goes at the next start like any empty segment. The byte count of the log
(`disk_bytes`, the queue's bytes gauge) is the data, not the room after it; closing cuts the
active segment back to its data.

Replay trusts nothing it reads: a record with a bad header or checksum, or one that names
another segment, is skipped and the scan resynchronises on the next record of the segment that
checks out (the bytes between are reported as corrupt, once). Where none follows, the data ends:
a record of the segment cut short there (a crash mid-write; its header names the segment) is
reported with its bytes, anything else is the room after the data. Acked records are checked
like the others (a corrupt length there would make the scan jump over pending records), and an
ack counts only if it names the start of a record that checks out; the ack file is read entry by
entry, resynchronising after a torn or corrupt entry. In doubt a record is sent again: its token
makes the destination drop the copy. Acks are not fsynced: an ack lost in a machine crash only
means the record is sent again. Where the disk must keep an ack (a dissolved group, the members
of a group whose segment is deleted) the ack file and, once, its directory entry are fsynced.
A segment is deleted once it is no longer appended to and every record is done (its files are
removed, or its file kept as `.free`, by a thread: freeing a full segment would stall the event
loop that acked its last record).

Appending never leaves the log without a segment: the next segment is created (and its directory
entry fsynced) before the full one is sealed; a restart always starts a new segment, so nothing
is ever written after the zeros of an older one. When a write or its fsync fails, the records of
that write are cut off again (or, if that fails, acked so replay skips them) and reported as
failed, and the log moves to a new segment before it takes another record; while it cannot,
every append fails with an OSError that says why. A record once committed is reported written.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import mmap
import os
import queue
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.files import fsync_path
from gateway.queue.config import Fsync

log = logging.getLogger(__name__)

MAGIC = b"\xa7OQ\x02"  # the last byte is the format version
_MAGIC_V1 = b"\xa7OQ\x01"  # a token of 128 random bits (replayed, never written)
_MAGIC_PREFIX = MAGIC[:3]
_HEAD = struct.Struct("<4sII")   # magic, body length, crc
_LEN = struct.Struct("<I")
_BODY = struct.Struct("<BI16s")  # kind, items, token
_TOKEN_SEGMENT = struct.Struct("<8xQ")  # the token: 64 random bits, the segment's id
_ACK = struct.Struct("<QI")      # offset, crc32 of the offset
_OFFSET = struct.Struct("<Q")
_REF = struct.Struct("<QQ")      # a group member: segment, offset
OVERHEAD = _HEAD.size + _BODY.size
_TOKEN_AT = OVERHEAD - _TOKEN_SEGMENT.size  # where a record's token starts
MAX_PAYLOAD = 2**32 - 1 - _BODY.size  # the body length is a u32
SEGMENT_BYTES = 32 * 2**20
_IOV = 512  # buffers per writev (the kernel takes at most IOV_MAX = 1024)
# the next segment is prepared once the active one is a quarter full: early enough to be ready
# when it fills at full speed, and a queue that is never busy keeps no 32 MiB spare
_SPARE_AT = 4
_ZERO_CHUNK = 1 << 20  # a preallocated segment is written (and scanned) in pieces of this size
_FREE_MAX = 2  # done segments kept for reuse; enough for a rotation while the next one is done
GROUP = 0x80       # kind flag: a group record
BATCHABLE = 0x40   # kind flag: written by a queue that records every export as a group
KIND_MASK = 0x3F


class QueueLockedError(OSError):
    """Another process owns the queue directory."""


class CorruptRecordError(Exception):
    """A record no longer reads back as written (the disk changed it)."""


@dataclass(frozen=True, slots=True)
class Record:
    segment: int
    offset: int
    kind: int
    items: int
    size: int      # payload bytes
    token: bytes

    @property
    def length(self) -> int:
        """Bytes on disk."""
        return OVERHEAD + self.size

    @property
    def position(self) -> tuple[int, int]:
        return self.segment, self.offset


@dataclass
class _Segment:
    id: int
    path: Path
    records: int = 0        # valid records in it
    done: int = 0           # of them, acknowledged (or skipped)
    bytes: int = 0
    sealed: bool = False    # no longer appended to
    preallocated: bool = False  # created at its full size: `bytes` is where the data ends
    # a spare of this run (of full size, records of this format only): its file may be reused
    reusable: bool = False
    read_fd: int | None = None
    ack_fd: int | None = None
    ack_bytes: int = 0         # size of the ack file, while ack_fd is open
    ack_dir_synced: bool = False  # the ack file's directory entry is known to be on disk
    # other segments whose records its groups hold: their acks reach the disk before it goes
    refers: set[int] = field(default_factory=set)

    @property
    def ack_path(self) -> Path:
        return self.path.with_suffix(".ack")


_Append = tuple[int, int, bytes, "asyncio.Future[Record]"]  # kind, items, payload, result
_Work = list[_Append] | Callable[[], None]


@dataclass
class _Spare:
    """The next segment, being prepared by its own thread."""
    id: int
    path: Path
    thread: threading.Thread | None = None
    fd: int = -1
    finished: bool = False   # the thread is done with it (fd >= 0: ready)
    abandoned: bool = False  # the log moved on without it: the thread deletes it


def _crc(length: int, body: bytes | memoryview, payload: bytes | memoryview = b"") -> int:
    return zlib.crc32(payload, zlib.crc32(body, zlib.crc32(_LEN.pack(length))))


def _ack_entry(offset: int) -> bytes:
    raw = _OFFSET.pack(offset)
    return raw + _LEN.pack(zlib.crc32(raw))


class WriteAheadLog:
    def __init__(self, directory: Path, fsync: Fsync = Fsync.BATCH,
                 segment_bytes: int = SEGMENT_BYTES,
                 on_durable: Callable[[Record], None] | None = None) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.on_durable = on_durable   # called on the event loop for each record once durable
        # called on the writer thread with the seconds of each group's write and fdatasync
        self.on_commit: Callable[[float], None] | None = None
        self.disk_bytes = 0
        self._segments: dict[int, _Segment] = {}
        self._active: _Segment | None = None
        self._fd = -1                  # the active segment, opened for appending
        self._next_id = 1              # ids only grow: a failed rotation never reuses one
        self._suspect = False          # a write to the active segment failed: rotate first
        self._rotate_failing = False   # a full segment could not be rotated (logged once)
        self._lock_fd = -1
        self._lock = threading.Lock()  # segment bookkeeping: the writer thread and the loop
        # with fsync, segments are created full (written zeros, or a reused file) so that
        # writing a record changes no file metadata and its fdatasync needs no journal commit;
        # never: they simply grow
        self.preallocate = fsync is not Fsync.NEVER
        self._spare: _Spare | None = None
        self._abandoned: list[_Spare] = []  # spares whose threads may still write: joined
        self._spare_failing = False    # the last spare could not be made (logged once)
        self._spare_for = 0            # the active segment a spare was last started for
        self._free: list[Path] = []    # files of done segments, to be reused as spares
        self._freeing = 0              # segments on their way to `_free` (the reaper renames)
        # appends and other work for the writer thread, in order; None stops it
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._submitted: list[_Append] = []  # this loop iteration's appends, handed over as one
        self._writer: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unfinished = 0             # appends submitted and not yet reported
        # files of deleted segments, removed by a thread: freeing 32 MiB takes 10-20 ms,
        # which would stall the event loop that acks the segment's last record
        # (ack file, segment file), whether the segment file is kept for reuse
        self._doomed: queue.SimpleQueue[tuple[tuple[Path, Path], bool] | None] = \
            queue.SimpleQueue()
        self._reaper: threading.Thread | None = None
        self._all_done: asyncio.Event | None = None
        # after open(): pending groups, oldest first, with their pending members
        self.groups: list[tuple[Record, list[Record]]] = []

    # -- opening and replay (blocking: run in a thread)

    def open(self) -> list[Record]:
        """Locks the directory, scans what an earlier run left and starts a new segment;
        returns the records not yet done, oldest first."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        pending: list[Record] = []
        refs: dict[Record, list[tuple[int, int]]] = {}
        for path in sorted(self.directory.glob("*.wal")):
            try:
                seg = _Segment(int(path.stem), path, sealed=True)
            except ValueError:
                continue
            pending += self._scan(seg, refs)
            self._segments[seg.id] = seg
            self.disk_bytes += seg.bytes + self._size(seg.ack_path)
        pending = self._regroup(pending, refs)
        self._next_id = max(self._segments, default=0) + 1
        for seg in list(self._segments.values()):
            if seg.done >= seg.records:
                self._delete(seg)
        for ack in self.directory.glob("*.ack"):
            if not ack.with_suffix(".wal").exists():  # its segment's deletion was cut short
                ack.unlink()
        for free in self.directory.glob("*.free"):  # reused only by the run that made them
            self._unlink((free,))
        try:
            self._rotate()
        except OSError:
            self._release_lock()
            raise
        self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                        name=f"wal-{self.directory.name}")
        self._writer.start()
        self._reaper = threading.Thread(target=self._reap, daemon=True,
                                        name=f"wal-reaper-{self.directory.name}")
        self._reaper.start()
        return pending

    def _take_lock(self) -> None:
        fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise QueueLockedError(f"the queue directory {self.directory} is in use by another "
                                   f"process (pid {owner})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    @staticmethod
    def _size(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    def _read_acks(self, seg: _Segment) -> set[int]:
        try:
            raw = seg.ack_path.read_bytes()
        except FileNotFoundError:
            return set()
        acked, skipped = _parse_acks(raw)
        if skipped:  # a torn entry (a crash mid-write) or corruption: those records go again
            log.warning("queue %s: ack file %s has %d bytes that are no valid entry: skipped "
                        "(the records they acknowledged are sent again, and deduplicated)",
                        self.directory, seg.ack_path.name, skipped)
        return acked

    def _regroup(self, pending: list[Record],
                 refs: dict[Record, list[tuple[int, int]]]) -> list[Record]:
        """Sets `groups` from the pending group records; returns the pending batches."""
        batches = {r.position: r for r in pending if not r.kind & GROUP}
        claims: dict[tuple[int, int], Record] = {}
        for group, members in refs.items():  # oldest first: the newest claim stays
            for pos in members:
                if pos in batches:
                    claims[pos] = group
        held: dict[Record, list[Record]] = {g: [] for g in refs}
        for pos, group in claims.items():
            held[group].append(batches[pos])
        for group, members in held.items():
            if members:
                members.sort(key=lambda r: r.position)
                self.groups.append((group, members))
            else:  # exported (its members are done) or emptied by a newer claim
                self._segments[group.segment].done += 1
            self._segments[group.segment].refers.update(
                s for s, _ in refs[group] if s != group.segment)
        return list(batches.values())

    def _scan(self, seg: _Segment, refs: dict[Record, list[tuple[int, int]]]) -> list[Record]:
        """The records of `seg`, pending ones returned; sets its counts and `bytes`, the end of
        its data: a preallocated segment ends in zeros, which are no record and no damage."""
        acked = self._read_acks(seg)
        size = self._size(seg.path)
        if size == 0:
            return []
        found: list[Record] = []
        matched = 0
        with open(seg.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            # past `end` only zeros; a record may still reach into them (its payload ends in
            # zero bytes), so records are parsed against the whole file
            end = _data_end(mm, size)
            pos = 0
            while pos < end:
                rec = _parse(mm, seg.id, pos, size, verify=True)
                if rec is None or rec.segment != seg.id:
                    nxt = _resync(mm, seg.id, pos + 1, size)
                    if nxt is None:  # the data ends here
                        torn = _claims(mm, pos, seg.id, end)
                        if torn:
                            log.warning("queue %s: segment %s ends with %d bytes at offset %d "
                                        "that are no whole record (a write cut short by a "
                                        "crash, or corruption): skipped", self.directory,
                                        seg.path.name, torn, pos)
                        break
                    log.warning("queue %s: segment %s has %d corrupt bytes at offset %d (bad "
                                "header or checksum): skipped, the records after them are kept",
                                self.directory, seg.path.name, nxt - pos, pos)
                    pos = nxt
                    continue
                seg.records += 1
                if pos in acked:
                    seg.done += 1
                    matched += 1
                elif rec.kind & GROUP:
                    start = pos + OVERHEAD
                    refs[rec] = [(s, o) for s, o in _REF.iter_unpack(
                        mm[start:start + rec.size - rec.size % _REF.size])]
                    found.append(rec)
                else:
                    found.append(rec)
                pos += rec.length
            seg.bytes = pos
        if matched < len(acked):
            log.warning("queue %s: ack file %s names %d offsets where segment %s has no valid "
                        "record: ignored", self.directory, seg.ack_path.name,
                        len(acked) - matched, seg.path.name)
        return found

    # -- appending

    def submit(self, kind: int, items: int, payload: bytes) -> asyncio.Future[Record]:
        """Queues an append; the future resolves once the record is durable (per the fsync
        policy) or fails with OSError. A cancelled caller does not stop the write."""
        if self._writer is None:
            raise RuntimeError("the write-ahead log is not open")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._all_done = asyncio.Event()
        fut: asyncio.Future[Record] = self._loop.create_future()
        self._unfinished += 1
        self._submitted.append((kind, items, payload, fut))
        if len(self._submitted) == 1:
            self._loop.call_soon(self._hand_over)
        return fut

    def _hand_over(self) -> None:
        """Event loop: what this iteration submitted goes to the writer together. Handed over
        one by one, the first append of a burst would wake the writer and be fsynced alone
        while the rest of the burst waits for the next group."""
        batch, self._submitted = self._submitted, []
        self._queue.put(batch)

    async def append(self, kind: int, items: int, payload: bytes) -> Record:
        return await asyncio.shield(self.submit(kind, items, payload))

    async def append_group(self, kind: int, members: list[Record]) -> Record:
        """Writes the group record of `members` (batches of signal `kind`, to be exported
        together); its token is the export's."""
        payload = b"".join(_REF.pack(m.segment, m.offset) for m in members)
        group = await self.append((kind & KIND_MASK) | GROUP, sum(m.items for m in members),
                                  payload)
        self._note_refers(group, members)
        return group

    def _write_loop(self) -> None:
        """Writer thread: takes what was submitted while it wrote the last group as the next
        group (one fsync for all of it, `Fsync.BATCH`), and reports the group back to the event
        loop in one call. A thread of its own rather than an executor: a hand-off per group
        costs the loop a queue put, not a future, a wake-up task and a GIL round trip."""
        held: list[_Work | None] = []  # taken while gathering a group, handled after it
        while True:
            first = held.pop() if held else self._queue.get()
            if first is None:
                return
            if callable(first):  # work that must not run beside a write (sealing)
                try:
                    first()
                except Exception:
                    log.exception("queue %s: closing the log failed", self.directory)
                continue
            group = list(first)
            while not held:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None or callable(more):
                    held.append(more)
                else:
                    group += more
            if self.fsync is Fsync.ALWAYS:  # an fsync of its own for each
                for one in group:
                    self._write_and_report([one])
            else:
                self._write_and_report(group)

    def _write_and_report(self, group: list[_Append]) -> None:
        try:
            results = self._write_group([(kind, items, payload)
                                         for kind, items, payload, _ in group])
        except Exception as exc:  # a bug, not the disk (that is an OSError per record): the
            # appends fail with it instead of the thread dying and every later append hanging
            log.exception("queue %s: writing a group failed", self.directory)
            results = [OSError(f"the sending queue's log in {self.directory} cannot be "
                               f"written: {exc!r}")] * len(group)
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._report, group, results)
        except RuntimeError:  # the loop is closed: nobody waits for these any more
            pass

    def _report(self, group: list[_Append], results: list[Record | BaseException]) -> None:
        """Event loop: the outcome of one group."""
        for (_, _, _, fut), result in zip(group, results, strict=True):
            if isinstance(result, Record):
                if self.on_durable is not None:
                    try:
                        self.on_durable(result)
                    except Exception:
                        log.exception("queue %s: on_durable failed", self.directory)
                if not fut.done():
                    fut.set_result(result)
            elif not fut.done():
                fut.set_exception(result)
                fut.exception()  # its caller may be gone; the error is reported there
        self._unfinished -= len(group)
        if not self._unfinished and self._all_done is not None:
            self._all_done.set()

    async def flushed(self) -> None:
        """Returns once every append submitted so far is written."""
        while self._unfinished and self._all_done is not None:
            self._all_done.clear()
            await self._all_done.wait()

    def _write_group(self, work: list[tuple[int, int, bytes]]) -> list[Record | BaseException]:
        """Writer thread: appends the group, rotating segments as they fill, then fsyncs. One
        result per append, in order: its Record once committed, else an OSError."""
        results: list[Record | BaseException] = []
        try:
            self._append_all(work, results)
        except Exception as exc:  # a bug: what was committed stays reported as written
            log.exception("queue %s: appending to the log failed", self.directory)
            failed = OSError(f"the sending queue's log in {self.directory} failed: {exc!r}")
            results += [failed] * (len(work) - len(results))
        return results

    def _append_all(self, work: list[tuple[int, int, bytes]],
                    results: list[Record | BaseException]) -> None:
        bufs: list[bytes] = []
        batch: list[Record] = []
        size = 0         # bytes of `batch`
        stay = False     # the full segment could not be rotated: it takes the rest
        for i, (kind, items, payload) in enumerate(work):
            length = _BODY.size + len(payload)
            start = self._active_bytes() + size
            full = not stay and start > 0 and start + _HEAD.size + length > self.segment_bytes
            if full or self._suspect:
                results += self._commit(bufs, batch)
                bufs, batch, size = [], [], 0
                try:
                    stay = not self._renew()
                except OSError as exc:
                    results += [exc] * (len(work) - i)
                    return
                start = self._active_bytes()
            assert self._active is not None
            token = os.urandom(8) + _OFFSET.pack(self._active.id)  # as _TOKEN_SEGMENT reads it
            body = _BODY.pack(kind, items, token)
            head = _HEAD.pack(MAGIC, length, _crc(length, body, payload))
            batch.append(Record(self._active.id, start, kind, items, len(payload), token))
            bufs += (head, body, payload)
            size += _HEAD.size + length
        results += self._commit(bufs, batch)

    def _active_bytes(self) -> int:
        return self._active.bytes if self._active is not None else 0

    def _renew(self) -> bool:
        """Writer thread: moves to a new segment; False when a full segment has to go on
        (rotation failed; retried with the next group). OSError when the active segment must
        not be appended to (a write to it failed) and no new one could be started."""
        try:
            self._rotate()
        except OSError as exc:
            if self._suspect or self._active is None:
                raise OSError(exc.errno, f"the sending queue in {self.directory} cannot start "
                              f"a new log segment after a failed write: {exc.strerror or exc}"
                              ) from exc
            if not self._rotate_failing:
                log.warning("queue %s: cannot start a new log segment (%s); the full one goes "
                            "on growing", self.directory, exc)
            self._rotate_failing = True
            return False
        self._rotate_failing = False
        return True

    def _commit(self, bufs: list[bytes], batch: list[Record]) -> list[Record | BaseException]:
        if not batch:
            return []
        seg = self._active
        assert seg is not None
        started = time.perf_counter()
        try:
            for i in range(0, len(bufs), _IOV):
                _writev_all(self._fd, bufs[i:i + _IOV])
            if self.fsync is not Fsync.NEVER:
                os.fdatasync(self._fd)
        except OSError as exc:
            log.error("queue %s: cannot write segment %s: %s", self.directory, seg.path.name, exc)
            # after a failed write or fsync neither the file's end nor its page cache can be
            # trusted: the next append starts a new segment first
            self._suspect = True
            self._void(seg, batch)
            error = OSError(exc.errno, f"the sending queue cannot write its log in "
                                       f"{self.directory}: {exc.strerror or exc}")
            return [error] * len(batch)
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - started)
        written = sum(r.length for r in batch)
        with self._lock:
            seg.bytes += written
            seg.records += len(batch)
            self.disk_bytes += written
        if self.preallocate and self._spare_for != seg.id and \
                seg.bytes >= self.segment_bytes // _SPARE_AT:
            self._start_spare(seg.id)
        return list(batch)

    def _void(self, seg: _Segment, batch: list[Record]) -> None:
        """Writer thread: the records of a failed write must never be replayed (their clients
        were told they failed, and send them again): cut off, or else acked."""
        seg.reusable = False  # no longer of full size, or not to be trusted
        try:
            os.ftruncate(self._fd, seg.bytes)
            return
        except OSError as exc:
            log.error("queue %s: cannot cut the failed write off segment %s (%s); acking it "
                      "instead", self.directory, seg.path.name, exc)
        with self._lock:
            for rec in batch:
                try:
                    self._write_ack(seg, rec.offset)
                except OSError as exc:
                    log.error("queue %s: cannot ack a failed write either (%s): after a restart "
                              "it may be sent besides its client's retry", self.directory, exc)
                    return

    def _note_refers(self, group: Record, members: list[Record]) -> None:
        with self._lock:
            seg = self._segments.get(group.segment)
            if seg is not None:
                seg.refers.update(m.segment for m in members if m.segment != group.segment)

    def _rotate(self) -> None:
        """Starts the next segment (the spare, when it is ready), then seals the active one (if
        any). On OSError nothing changed: the active segment stays."""
        spare = self._take_spare()
        if spare is not None:
            next_id, path, fd = spare.id, spare.path, spare.fd
        else:
            next_id, path, fd = self._create_segment()
        seg = _Segment(next_id, path, preallocated=spare is not None, reusable=spare is not None)
        with self._lock:
            old, old_fd = self._active, self._fd
            self._segments[next_id] = seg
            self._active, self._fd = seg, fd
            self._suspect = False
            if old is not None:
                old.sealed = True
                with contextlib.suppress(OSError):
                    os.close(old_fd)
                if old.done >= old.records:
                    self._delete(old)

    def _create_segment(self) -> tuple[int, Path, int]:
        """A new, empty segment file with its directory entry on disk: id, path, fd."""
        next_id, self._next_id = self._next_id, self._next_id + 1
        path = self.directory / f"{next_id:020d}.wal"
        try:  # acks left by a segment of this id that is gone
            path.with_suffix(".ack").unlink()
        except FileNotFoundError:
            pass
        # written at the file position, not O_APPEND: a preallocated segment is written
        # from its start, and both kinds are opened the same way
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if self.fsync is not Fsync.NEVER:  # records in a file that may vanish are not durable
                fsync_path(self.directory)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        return next_id, path, fd

    # -- the spare segment: the next one, preallocated off the append path

    def _start_spare(self, for_id: int) -> None:
        """Writer thread: starts preparing the segment after the active one `for_id` (once per
        segment: a spare that cannot be made is not retried until the next rotation, which then
        creates a plain growing segment as it would without preallocation)."""
        self._spare_for = for_id
        self._abandoned = [s for s in self._abandoned if not s.finished]
        if self._spare is not None:  # not taken yet: it is the next segment all the same
            return
        spare = _Spare(self._next_id, self.directory / f"{self._next_id:020d}.wal")
        self._next_id += 1
        spare.thread = threading.Thread(target=self._fill_spare, args=(spare,), daemon=True,
                                        name=f"wal-spare-{self.directory.name}")
        self._spare = spare
        spare.thread.start()

    def _fill_spare(self, spare: _Spare) -> None:
        """Spare thread: the file is a done segment's, renamed, or else gets its full size in
        written zeros (fallocate alone would leave unwritten extents, whose conversion on the
        first write is a journal commit); it reaches the disk with its directory entry (and so
        does the rename that made the reused file `.free`: until then a crash could leave it
        under its old name, holding records of the new segment). Any failure leaves no file
        behind."""
        fd = -1
        try:
            with contextlib.suppress(FileNotFoundError):
                spare.path.with_suffix(".ack").unlink()
            fd = self._reuse(spare.path)
            if fd < 0:
                fd = os.open(spare.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                zeros = memoryview(bytes(min(_ZERO_CHUNK, self.segment_bytes)))
                at = 0
                while at < self.segment_bytes:
                    at += os.pwrite(fd, zeros[:self.segment_bytes - at], at)
                os.fdatasync(fd)
            fsync_path(self.directory)
            self._spare_failing = False
        except OSError as exc:
            if not self._spare_failing:
                log.warning("queue %s: cannot prepare the next log segment (%s); it is "
                            "created when needed instead", self.directory, exc)
            self._spare_failing = True
            self._drop_spare_file(spare.path, fd)
            fd = -1
        with self._lock:
            spare.finished = True
            abandoned = spare.abandoned
            if not abandoned:
                spare.fd = fd
        if abandoned:  # outside the lock: freeing 32 MiB would hold up acks and reads
            self._drop_spare_file(spare.path, fd)

    def _reuse(self, path: Path) -> int:
        """Spare thread: a free file renamed to `path` and opened, or -1 (none, or it failed:
        then it is deleted, and the spare written in zeros)."""
        with self._lock:
            if not self._free:
                return -1
            free = self._free.pop(0)
        try:
            os.rename(free, path)
            return os.open(path, os.O_WRONLY)
        except OSError as exc:
            log.warning("queue %s: cannot reuse %s for the next log segment (%s); writing a "
                        "new one", self.directory, free.name, exc)
            for gone in (free, path):
                with contextlib.suppress(OSError):
                    gone.unlink()
            return -1

    @staticmethod
    def _drop_spare_file(path: Path, fd: int) -> None:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()

    def _take_spare(self) -> _Spare | None:
        """The spare if it is ready. One still being written is abandoned (its thread deletes
        it): waiting for it would hold up the appends, and a segment made now takes a newer id,
        which keeps segment ids in the order the records were written."""
        with self._lock:
            spare, self._spare = self._spare, None
            if spare is None:
                return None
            if spare.finished and spare.fd >= 0:
                return spare
            spare.abandoned = True
            self._abandoned.append(spare)
            return None

    def _discard_spare(self) -> None:
        """Closing: the unused spare goes, and no spare thread is left to touch the directory
        once another process may own it."""
        spare, self._spare = self._spare, None
        for other in [*self._abandoned, *([spare] if spare else [])]:
            if other.thread is not None:
                other.thread.join()
        self._abandoned = []
        if spare is not None:
            self._drop_spare_file(spare.path, spare.fd)

    # -- reading and acknowledging

    def read(self, rec: Record) -> bytes:
        """The payload of `rec` (blocking: run in a thread); CorruptRecordError if it changed."""
        with self._lock:
            seg = self._segments.get(rec.segment)
            if seg is None:
                raise CorruptRecordError(f"segment {rec.segment} is gone")
            if seg.read_fd is None:
                seg.read_fd = os.open(seg.path, os.O_RDONLY)
            fd = seg.read_fd
        raw = os.pread(fd, rec.length, rec.offset)
        got = _parse(raw, rec.segment, 0, len(raw), verify=True)
        if got is None or (got.kind, got.items, got.size, got.token) != \
                (rec.kind, rec.items, rec.size, rec.token):
            raise CorruptRecordError(f"the record at offset {rec.offset} of segment "
                                     f"{seg.path.name} no longer matches its checksum")
        return raw[OVERHEAD:]

    def ack(self, rec: Record, sync: bool = False) -> None:
        """`rec` is done; deletes its segment once nothing in it is pending. `sync`: the ack
        reaches the disk before this returns (per the fsync policy)."""
        with self._lock:
            seg = self._count_done(rec)
            if seg is None:
                return
            self._write_ack(seg, rec.offset)
            if sync and self.fsync is not Fsync.NEVER:
                self._sync_ack_file(seg)

    def _write_ack(self, seg: _Segment, offset: int) -> None:
        """Caller holds the lock. Appends one entry; on failure the file is cut back to whole
        entries, so the acks after it stay readable."""
        if seg.ack_fd is None:
            fd = os.open(seg.ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size % _ACK.size:  # a torn entry from a crash: keep later entries aligned
                    size -= size % _ACK.size
                    os.ftruncate(fd, size)
            except OSError:
                os.close(fd)
                raise
            seg.ack_fd, seg.ack_bytes = fd, size
        try:
            if os.write(seg.ack_fd, _ack_entry(offset)) != _ACK.size:
                raise OSError(errno.ENOSPC, f"short write to {seg.ack_path.name}")
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(seg.ack_fd, seg.ack_bytes)
            raise
        seg.ack_bytes += _ACK.size
        self.disk_bytes += _ACK.size

    def _sync_ack_file(self, seg: _Segment) -> None:
        """The acks written so far, and the ack file itself, reach the disk."""
        if seg.ack_fd is not None:
            os.fdatasync(seg.ack_fd)
        elif seg.ack_path.exists():
            fsync_path(seg.ack_path)
        else:
            return
        if not seg.ack_dir_synced:  # a new file's name is only durable with its directory
            fsync_path(self.directory)
            seg.ack_dir_synced = True

    def release(self, group: Record) -> None:
        """A group whose members are acked is done: nothing is written (replay finds it done
        by its members)."""
        with self._lock:
            self._count_done(group)

    def _count_done(self, rec: Record) -> _Segment | None:
        """Caller holds the lock. The segment of `rec`, unless it is gone or, with `rec` done,
        nothing in it is pending any more (then it is deleted)."""
        seg = self._segments.get(rec.segment)
        if seg is None:
            return None
        seg.done += 1
        if seg.sealed and seg.done >= seg.records:
            self._delete(seg)
            return None
        return seg

    def dissolve(self, group: Record) -> None:
        """The group will not be exported: acked on disk before its members go elsewhere."""
        self.ack(group, sync=True)

    def _delete(self, seg: _Segment) -> None:
        """Caller holds the lock (or runs before the log is shared)."""
        if self.fsync is not Fsync.NEVER:
            # its groups go with it: the acks of their members elsewhere must not be lost
            # in a crash, or those members would come back without their group
            for other in sorted(seg.refers):
                if other in self._segments:
                    self._sync_acks(self._segments[other])
        for fd in (seg.read_fd, seg.ack_fd):
            if fd is not None:
                os.close(fd)
        seg.read_fd = seg.ack_fd = None
        self.disk_bytes -= seg.bytes + self._size(seg.ack_path)
        # the acks first: a crash in between leaves a segment without acks, sent again in full
        # (and deduplicated), never acks that a new segment of the same id would inherit (ids
        # only grow while the log is open, and the files are there until they are removed)
        paths = (seg.ack_path, seg.path)
        if self._reaper is not None:
            reuse = seg.reusable and seg.bytes <= self.segment_bytes and \
                len(self._free) + self._freeing < _FREE_MAX
            self._freeing += reuse
            self._doomed.put((paths, reuse))
        else:  # replay
            self._unlink(paths)
        self._segments.pop(seg.id, None)

    def _unlink(self, paths: tuple[Path, ...]) -> bool:
        for path in paths:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:  # it stays; a later start deletes it when it finds it done
                log.warning("queue %s: cannot delete %s: %s", self.directory, path.name, exc)
                return False
        return True

    def _reap(self) -> None:
        """Reaper thread: removes the files of deleted segments, in order; a reusable segment
        file (after its acks) becomes `.free` instead."""
        while (doomed := self._doomed.get()) is not None:
            (ack, wal), reuse = doomed
            free: Path | None = None
            if self._unlink((ack,)):  # else the segment stays (a later start deletes it)
                if reuse:
                    free = wal.with_suffix(".free")
                    try:
                        os.rename(wal, free)
                    except OSError:
                        free = None
                        self._unlink((wal,))
                else:
                    self._unlink((wal,))
            with self._lock:
                self._freeing -= reuse
                if free is not None:
                    self._free.append(free)

    def _sync_acks(self, seg: _Segment) -> None:
        try:
            self._sync_ack_file(seg)
        except OSError as exc:
            log.warning("queue %s: cannot fsync %s: %s", self.directory, seg.ack_path.name, exc)

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def segment_ids(self) -> list[int]:
        with self._lock:
            return sorted(self._segments)

    # -- closing

    async def close(self) -> None:
        """Finishes the appends under way, seals the active segment (deleted if nothing in it is
        pending), closes every file and releases the directory."""
        await self.flushed()
        writer, self._writer = self._writer, None
        if writer is not None:
            # sealed by the writer thread, after any write it still has
            self._queue.put(self._seal)
            self._queue.put(None)
            await asyncio.to_thread(writer.join)
        reaper, self._reaper = self._reaper, None
        if reaper is not None:  # the directory is left as it is on disk
            self._doomed.put(None)
            await asyncio.to_thread(reaper.join)
        free, self._free = self._free, []
        await asyncio.to_thread(self._unlink, tuple(free))
        with self._lock:
            for seg in self._segments.values():
                for fd in (seg.read_fd, seg.ack_fd):
                    if fd is not None:
                        os.close(fd)
                seg.read_fd = seg.ack_fd = None
        self._release_lock()

    def _seal(self) -> None:
        self._discard_spare()
        with self._lock:
            seg = self._active
            if seg is None:
                return
            seg.sealed = True
            if seg.preallocated and seg.done < seg.records:
                # what stays on disk until the next start is the data, not the unused room
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, seg.bytes)
            os.close(self._fd)
            self._fd = -1
            self._active = None
            if seg.done >= seg.records:
                seg.reusable = False  # the log closes: no later segment
                self._delete(seg)


def _writev_all(fd: int, bufs: list[bytes]) -> None:
    views = [memoryview(b) for b in bufs if len(b)]
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views and n:
            views[0] = views[0][n:]


def _parse(buf: bytes | mmap.mmap, segment: int, pos: int, size: int,
           verify: bool) -> Record | None:
    """The record at `pos` if its header (and, with `verify`, its checksum) checks out, in
    segment `segment`; its `segment` is the one it was written in (another: what a reused file
    held before)."""
    if size - pos < OVERHEAD:
        return None
    magic, length, crc = _HEAD.unpack_from(buf, pos)
    if magic not in (MAGIC, _MAGIC_V1) or length < _BODY.size or \
            length > size - pos - _HEAD.size:
        return None
    kind, items, token = _BODY.unpack_from(buf, pos + _HEAD.size)
    if verify:
        with memoryview(buf) as view:
            body = view[pos + _HEAD.size:pos + _HEAD.size + length]
            ok = _crc(length, body) == crc
            body.release()
        if not ok:
            return None
    if magic == MAGIC:
        (segment,) = _TOKEN_SEGMENT.unpack(token)
    return Record(segment, pos, kind, items, length - _BODY.size, token)


def _names(buf: bytes | mmap.mmap, pos: int, segment: int) -> bool:
    """Whether the record header at `pos` (whole) names `segment` in its token."""
    return _TOKEN_SEGMENT.unpack_from(buf, pos + _TOKEN_AT)[0] == segment


def _claims(mm: mmap.mmap, pos: int, segment: int, end: int) -> int:
    """The bytes of a record of `segment` cut short at `pos` (before `end`, the zeros), or 0
    when what is there is no record of it: a header of format 1 (never reused), or one whose
    token names the segment (its magic may be damaged)."""
    if end - pos < OVERHEAD:
        return end - pos if mm[pos:pos + len(_MAGIC_V1)] in (MAGIC, _MAGIC_V1) else 0
    if mm[pos:pos + len(_MAGIC_V1)] != _MAGIC_V1 and not _names(mm, pos, segment):
        return 0
    (length,) = _LEN.unpack_from(mm, pos + len(MAGIC))
    return min(end, pos + _HEAD.size + length) - pos


def may_hold_records(directory: Path) -> bool:
    """Whether a queue directory (not open) has a segment that may hold a record: one that does
    not start with zeros or with a record of another segment. A spare segment a crash left
    unused is all zeros, or a reused file that holds an earlier segment's records."""
    for path in directory.glob("*.wal"):
        try:
            with open(path, "rb") as f:
                head = f.read(OVERHEAD)
        except OSError:  # unreadable: let the owner's replay say why
            return True
        if not head.strip(b"\0"):
            continue
        if head.startswith(MAGIC) and len(head) == OVERHEAD and path.stem.isdigit() and \
                not _names(head, 0, int(path.stem)):
            continue
        return True
    return False


def _data_end(mm: mmap.mmap, size: int) -> int:
    """Where the zeros at the end of a segment (its preallocated, unwritten room) begin."""
    hi = size
    while hi > 0:
        lo = max(0, hi - _ZERO_CHUNK)
        kept = len(mm[lo:hi].rstrip(b"\0"))
        if kept:
            return lo + kept
        hi = lo
    return 0


def _resync(mm: mmap.mmap, segment: int, pos: int, size: int) -> int | None:
    """The offset of the next record of `segment` at or after `pos` that checks out (the
    records of an earlier segment in a reused file are passed over before their checksum)."""
    while True:
        pos = mm.find(_MAGIC_PREFIX, pos)
        if pos < 0:
            return None
        if size - pos >= OVERHEAD and (mm[pos:pos + len(MAGIC)] != MAGIC or
                                       _names(mm, pos, segment)) and \
                _parse(mm, segment, pos, size, verify=True) is not None:
            return pos
        pos += 1


def _parse_acks(raw: bytes) -> tuple[set[int], int]:
    """The offsets of the valid entries in an ack file, and how many bytes were not one. Entries
    are aligned unless a write was torn: after a bad entry the reader slides byte by byte to the
    next entry whose checksum holds."""
    usable = len(raw) - len(raw) % _ACK.size
    entries = list(_ACK.iter_unpack(raw[:usable]))
    if usable == len(raw) and all(zlib.crc32(_OFFSET.pack(o)) == c for o, c in entries):
        return {o for o, _ in entries}, 0
    acked: set[int] = set()
    pos = skipped = 0
    while pos + _ACK.size <= len(raw):
        offset, crc = _ACK.unpack_from(raw, pos)
        if zlib.crc32(raw[pos:pos + _OFFSET.size]) == crc:
            acked.add(offset)
            pos += _ACK.size
        else:
            skipped += 1
            pos += 1
    return acked, skipped + len(raw) - pos
