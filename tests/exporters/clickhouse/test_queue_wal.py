"""The write-ahead log under the sending queue (gateway/queue/wal.py): what it keeps across a
restart, what it skips after a crash or corruption, segment rotation and deletion, group commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path

import pytest

from gateway.queue.config import Fsync
from gateway.queue.wal import OVERHEAD, QueueLockedError, Record, WriteAheadLog

pytestmark = pytest.mark.timeout(30)


def _payload(i: int, size: int = 300) -> bytes:
    return (f"batch-{i:04d}-".encode() * size)[:size]


async def _append_all(wal: WriteAheadLog, payloads: list[bytes]) -> list[Record]:
    return list(await asyncio.gather(*(wal.append(1 + i % 3, 10 + i, p)
                                       for i, p in enumerate(payloads))))


def _write(directory: Path, payloads: list[bytes], fsync: Fsync = Fsync.BATCH,
           segment_bytes: int = 1 << 20, ack: tuple[int, ...] = ()) -> list[Record]:
    async def run() -> list[Record]:
        wal = WriteAheadLog(directory, fsync, segment_bytes)
        assert wal.open() == []
        recs = await _append_all(wal, payloads)
        for i in ack:
            wal.ack(recs[i])
        await wal.close()
        return recs
    return asyncio.run(run())


def _reopen(directory: Path) -> tuple[list[Record], list[bytes]]:
    async def run() -> tuple[list[Record], list[bytes]]:
        wal = WriteAheadLog(directory)
        pending = wal.open()
        data = [wal.read(r) for r in pending]
        await wal.close()
        return pending, data
    return asyncio.run(run())


def test_records_survive_a_restart_with_kind_items_and_token(tmp_path: Path) -> None:
    payloads = [_payload(i, 100 + 37 * i) for i in range(20)]
    written = _write(tmp_path, payloads)
    pending, data = _reopen(tmp_path)
    assert sorted(data) == sorted(payloads)
    assert {(r.segment, r.offset) for r in pending} == {(r.segment, r.offset) for r in written}
    tokens = {(r.segment, r.offset): r.token for r in written}
    for rec, payload in zip(pending, data, strict=True):
        assert rec.token == tokens[rec.segment, rec.offset]  # the batch's id, kept
        i = payloads.index(payload)
        assert (rec.kind, rec.items, rec.size) == (1 + i % 3, 10 + i, len(payload))
    assert len(set(tokens.values())) == len(payloads)


def test_acknowledged_records_are_not_replayed(tmp_path: Path) -> None:
    payloads = [_payload(i) for i in range(6)]
    _write(tmp_path, payloads, ack=(0, 2, 5))
    pending, data = _reopen(tmp_path)
    assert sorted(data) == sorted(payloads[i] for i in (1, 3, 4))


def test_a_torn_tail_is_skipped_with_one_log_line(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    payloads = [_payload(i, 1000) for i in range(3)]
    recs = _write(tmp_path, payloads)
    (segment,) = tmp_path.glob("*.wal")
    last = max(recs, key=lambda r: r.offset)
    os.truncate(segment, last.offset + OVERHEAD + 10)  # the crash cut the last write short
    with caplog.at_level(logging.WARNING, logger="gateway.queue.wal"):
        pending, data = _reopen(tmp_path)
    assert len(data) == 2 and payloads[recs.index(last)] not in data
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "no whole record" in warnings[0], warnings


def test_a_corrupt_record_is_skipped_and_the_ones_after_it_kept(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    payloads = [_payload(i, 1000) for i in range(3)]
    recs = sorted(_write(tmp_path, payloads), key=lambda r: r.offset)
    (segment,) = tmp_path.glob("*.wal")
    with open(segment, "r+b") as f:  # one flipped bit in the middle record's payload
        f.seek(recs[1].offset + OVERHEAD + 500)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x10]))
    with caplog.at_level(logging.WARNING, logger="gateway.queue.wal"):
        pending, data = _reopen(tmp_path)
    assert {r.offset for r in pending} == {recs[0].offset, recs[2].offset}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "corrupt" in warnings[0], warnings


def test_garbage_in_a_segment_never_breaks_replay(tmp_path: Path) -> None:
    payloads = [_payload(i, 200) for i in range(5)]
    _write(tmp_path, payloads)
    (segment,) = tmp_path.glob("*.wal")
    raw = bytearray(segment.read_bytes())
    raw[0:4] = b"\x00\x00\x00\x00"     # the first record's magic
    raw += os.urandom(3000)            # and noise after the last one
    segment.write_bytes(bytes(raw))
    pending, data = _reopen(tmp_path)
    assert sorted(data) == sorted(payloads[1:])


async def _removed(*paths: Path) -> None:
    for _ in range(500):
        if not any(p.exists() for p in paths):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not removed: {[p.name for p in paths if p.exists()]}")


def test_segments_rotate_and_are_deleted_once_done(tmp_path: Path) -> None:
    async def run() -> None:
        wal = WriteAheadLog(tmp_path, Fsync.NEVER, segment_bytes=4096)
        wal.open()
        recs = await _append_all(wal, [_payload(i, 1000) for i in range(12)])
        segments = {r.segment for r in recs}
        assert len(segments) >= 3  # ~3 records of 1 KiB per 4 KiB segment
        assert len(list(tmp_path.glob("*.wal"))) == len(segments)
        oldest = min(segments)
        for r in recs:
            if r.segment == oldest:
                wal.ack(r)
        # removed by the log's reaper thread, off the event loop
        await _removed(tmp_path / f"{oldest:020d}.wal", tmp_path / f"{oldest:020d}.ack")
        for r in recs:
            if r.segment != oldest:
                wal.ack(r)
        # the active segment stays until it is sealed
        await _removed(*(p for p in tmp_path.glob("*.wal") if int(p.stem) != recs[-1].segment))
        assert len(list(tmp_path.glob("*.wal"))) == 1
        assert wal.disk_bytes == sum(p.stat().st_size for p in tmp_path.iterdir()
                                     if p.suffix in (".wal", ".ack"))
        await wal.close()
        assert list(tmp_path.glob("*.wal")) == []
    asyncio.run(run())


def test_a_second_process_cannot_open_the_queue(tmp_path: Path) -> None:
    async def run() -> None:
        first = WriteAheadLog(tmp_path)
        first.open()
        second = WriteAheadLog(tmp_path)
        with pytest.raises(QueueLockedError, match=f"pid {os.getpid()}"):
            second.open()
        await first.close()
    asyncio.run(run())


@pytest.mark.parametrize(("fsync", "at_most"), [(Fsync.BATCH, 10), (Fsync.ALWAYS, 50),
                                                 (Fsync.NEVER, 0)])
def test_group_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: Fsync,
                      at_most: int) -> None:
    """50 appends at once: `batch` shares fsyncs between them, `always` gives each its own."""
    calls: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        if not threading.current_thread().name.startswith("wal-spare"):  # the next segment's
            calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)

    async def run() -> None:
        wal = WriteAheadLog(tmp_path, fsync)
        wal.open()
        recs = await _append_all(wal, [_payload(i) for i in range(50)])
        assert len({(r.segment, r.offset) for r in recs}) == 50
        await wal.close()
    asyncio.run(run())
    if fsync is Fsync.ALWAYS:
        assert len(calls) == 50
    else:
        assert len(calls) <= at_most, len(calls)
        if fsync is Fsync.BATCH:
            assert calls


def test_groups_are_rebuilt_from_their_pending_members(tmp_path: Path) -> None:
    """A merged export's group record names its members: after a restart the group comes back
    with the same token and the members not yet acked, whatever else is pending."""
    async def first() -> tuple[Record, Record, list[Record]]:
        wal = WriteAheadLog(tmp_path)
        wal.open()
        recs = await _append_all(wal, [_payload(i) for i in range(5)])
        one = await wal.append_group(recs[0].kind, recs[0:2])
        two = await wal.append_group(recs[2].kind, recs[2:4])
        assert (one.items, two.items) == (recs[0].items + recs[1].items,
                                          recs[2].items + recs[3].items)
        wal.ack(recs[0])  # the crash came between the acks of group one's members
        for rec in recs[2:4]:
            wal.ack(rec)
        wal.release(two)
        await wal.close()
        return one, two, recs

    one, two, recs = asyncio.run(first())

    async def second() -> None:
        wal = WriteAheadLog(tmp_path)
        pending = wal.open()
        assert [(g.token, g.position, ms) for g, ms in wal.groups] == \
            [(one.token, one.position, [recs[1]])]
        assert sorted(r.position for r in pending) == [recs[1].position, recs[4].position]
        wal.ack(recs[1])
        wal.release(wal.groups[0][0])
        wal.ack(recs[4])
        await wal.close()
    asyncio.run(second())
    assert not list(tmp_path.glob("*.wal")), "everything was done: the segment must go"


def test_the_newest_group_holds_a_member_and_a_dissolved_group_none(tmp_path: Path) -> None:
    async def first() -> tuple[list[Record], Record, Record]:
        wal = WriteAheadLog(tmp_path)
        wal.open()
        recs = await _append_all(wal, [_payload(i) for i in range(4)])
        gone = await wal.append_group(1, recs[0:2])
        wal.dissolve(gone)  # refused: its members go on alone
        older = await wal.append_group(1, recs[2:4])
        newer = await wal.append_group(1, recs[3:4])  # its dissolve ack was lost
        await wal.close()
        return recs, older, newer

    recs, older, newer = asyncio.run(first())

    async def second() -> None:
        wal = WriteAheadLog(tmp_path)
        pending = wal.open()
        assert [(g.position, ms) for g, ms in wal.groups] == \
            [(older.position, [recs[2]]), (newer.position, [recs[3]])]
        assert len(pending) == 4  # recs 0 and 1 are free again
        await wal.close()
    asyncio.run(second())


def test_deleting_a_segment_syncs_the_acks_its_groups_depend_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group in a later segment than its members: once its segment is gone, only the
    members' acks say they were exported, so they reach the disk first."""
    synced: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    async def run() -> None:
        wal = WriteAheadLog(tmp_path, Fsync.BATCH, segment_bytes=4096)
        wal.open()
        recs = await _append_all(wal, [_payload(i, 1000) for i in range(3)])
        extra = await _append_all(wal, [_payload(9, 1500), _payload(8, 1500)])
        group = await wal.append_group(1, recs[:2])  # recs[2] stays pending: its segment too
        assert group.segment > recs[0].segment
        for rec in [*recs[:2], *extra]:
            wal.ack(rec)
        member_seg = wal._segments[recs[0].segment]
        assert member_seg.ack_fd is not None
        monkeypatch.setattr(os, "fdatasync", counting)
        wal._rotate()  # seals the group's segment
        wal.release(group)
        assert group.segment not in wal.segment_ids()
        assert member_seg.ack_fd in synced
        await wal.close()
    asyncio.run(run())
