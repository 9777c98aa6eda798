"""Reused log segments (gateway/queue/wal.py): a done segment's file becomes a later segment
instead of a new file written full of zeros, so what follows a segment's data may be an earlier
segment's records. What a restart must make of that: those records are never replayed, nothing
is reported corrupt, a torn record of the segment is still reported, and records of the format
before reuse (whose tokens name no segment) are still read.

A crash is a real one: a child process appends and dies with os._exit, leaving the files as
they are (nothing sealed, truncated or deleted)."""

from __future__ import annotations

import asyncio
import json
import logging
import mmap
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from gateway.queue.config import Fsync
from gateway.queue.wal import OVERHEAD, WriteAheadLog, _parse, may_hold_records

pytestmark = pytest.mark.timeout(30)

SEGMENT = 64 * 1024
SIZE = 6000  # ten records per segment

# Appends records one by one (of the sizes given, SIZE by default) and acks the first `acked`
# of them at once, waiting after each append for the spare segment and for the reaper, so that
# every rotation takes a spare and every done segment is free for reuse before the next spare
# is made; then acks the first `late` records, and dies.
_CHILD = """
import asyncio, json, os, sys, time
from pathlib import Path
from gateway.queue.config import Fsync
from gateway.queue.wal import WriteAheadLog

def idle(wal):
    while (wal._spare is not None and not wal._spare.finished) or wal._freeing:
        time.sleep(0.002)

async def main():
    directory, segment, sizes, acked, late = sys.argv[1:]
    wal = WriteAheadLog(Path(directory), Fsync.BATCH, int(segment))
    wal.open()
    out, recs = [], []
    for i, size in enumerate(json.loads(sizes)):
        rec = await wal.append(1, i, (f"record-{i:04d}-".encode() * (size // 12 + 1))[:size])
        out.append([rec.segment, rec.offset])
        recs.append(rec)
        if i < int(acked):
            wal.ack(rec)
        idle(wal)
    for rec in recs[:int(late)]:
        if rec.position not in [r.position for r in recs[:int(acked)]]:
            wal.ack(rec)
    idle(wal)
    print(json.dumps(out), flush=True)
    os._exit(0)  # the crash

asyncio.run(main())
"""


def _payload(i: int, size: int = SIZE) -> bytes:
    return (f"record-{i:04d}-".encode() * (size // 12 + 1))[:size]


def _crash_after(directory: Path, count: int | list[int], acked: int, late: int = 0
                 ) -> list[tuple[int, int]]:
    sizes = [SIZE] * count if isinstance(count, int) else count
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", _CHILD, str(directory), str(SEGMENT),
                           json.dumps(sizes), str(acked), str(late)],
                          capture_output=True, text=True, timeout=20, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    return [tuple(p) for p in json.loads(done.stdout)]


def _reopen(directory: Path) -> tuple[list[bytes], list[int]]:
    """Replays `directory`: the pending payloads; then one append, whose segment is returned
    with the segments of the pending records."""
    async def run() -> tuple[list[bytes], list[int]]:
        wal = WriteAheadLog(directory, Fsync.BATCH, SEGMENT)
        pending = wal.open()
        data = [wal.read(r) for r in pending]
        rec = await wal.append(1, 0, b"after the restart")
        await wal.close()
        return data, [*(r.segment for r in pending), rec.segment]
    return asyncio.run(run())


def _segment(directory: Path, segment: int) -> Path:
    return directory / f"{segment:020d}.wal"


def _earlier_records(path: Path, segment: int, data_end: int) -> list[int]:
    """The segments of the valid records after `data_end` in the file of `segment`."""
    found = []
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos = data_end
        while (pos := mm.find(b"\xa7OQ", pos)) >= 0:
            rec = _parse(mm, segment, pos, len(mm), verify=True)
            if rec is not None:
                found.append(rec.segment)
            pos += 1
    return found


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_reused_segment_replays_its_own_records_only(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    positions = _crash_after(tmp_path, 35, acked=30)
    last = positions[-1][0]
    mine = [p for p in positions if p[0] == last]
    assert len(mine) == 5 and positions[30] == mine[0]
    path = _segment(tmp_path, last)
    assert path.stat().st_size == SEGMENT
    data_end = mine[-1][1] + OVERHEAD + SIZE
    # the file was an earlier segment's: its records are still there behind the data
    earlier = _earlier_records(path, last, data_end)
    assert earlier and all(s < last for s in earlier), earlier
    with caplog.at_level(logging.WARNING, logger="gateway.queue.wal"):
        data, segments = _reopen(tmp_path)
    assert sorted(data) == sorted(_payload(i) for i in range(30, 35))
    assert _warnings(caplog) == []
    assert segments[-1] > max(s for s, _ in positions)  # a new segment after the restart
    data, _ = _reopen(tmp_path)  # the second restart finds the same, and the new record
    assert sorted(data) == sorted([*(_payload(i) for i in range(30, 35)), b"after the restart"])


def test_a_torn_record_in_a_reused_segment_is_reported_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    positions = _crash_after(tmp_path, 35, acked=30)
    segment, offset = positions[-1]
    with open(_segment(tmp_path, segment), "r+b") as f:  # half of the last write reached disk
        f.seek(offset + OVERHEAD + SIZE // 2)
        f.write(os.urandom(64))
    with caplog.at_level(logging.WARNING, logger="gateway.queue.wal"):
        data, _ = _reopen(tmp_path)
    assert sorted(data) == sorted(_payload(i) for i in range(30, 34))
    (warning,) = _warnings(caplog)
    assert f"ends with {OVERHEAD + SIZE} bytes at offset {offset} that are no whole record" \
        in warning, warning


def test_a_damaged_header_of_the_last_record_is_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Its magic gone, the header still names the segment: not taken for the room after the
    data."""
    positions = _crash_after(tmp_path, 35, acked=30)
    segment, offset = positions[-1]
    with open(_segment(tmp_path, segment), "r+b") as f:
        f.seek(offset)
        f.write(b"\0\0\0\0")
    with caplog.at_level(logging.WARNING, logger="gateway.queue.wal"):
        data, _ = _reopen(tmp_path)
    assert sorted(data) == sorted(_payload(i) for i in range(30, 34))
    (warning,) = _warnings(caplog)
    assert f"ends with {OVERHEAD + SIZE} bytes at offset {offset}" in warning, warning


def test_records_of_any_size_end_where_the_earlier_data_begins(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Records of other sizes than the reused file's: the data ends inside an earlier record
    (no whole one follows), after a crash and after a clean close with records pending. No
    warning, and the byte count is the data."""
    sizes = [997 + (i * 7919) % 9000 for i in range(60)]
    positions = _crash_after(tmp_path, sizes, acked=50)
    assert len({s for s, _ in positions}) >= 6
    with caplog.at_level(logging.WARNING, logger="gateway.queue.wal"):
        data, _ = _reopen(tmp_path)
        assert sorted(data) == sorted(_payload(i, sizes[i]) for i in range(50, 60))

        async def counted() -> int:
            wal = WriteAheadLog(tmp_path, Fsync.BATCH, SEGMENT)
            wal.open()
            count = wal.disk_bytes
            await wal.close()
            return count
        # the records of the segments still there, the one appended after the restart, the acks
        present = {int(p.stem) for p in tmp_path.glob("*.wal")}
        expected = sum(OVERHEAD + sizes[i] for i, (s, _) in enumerate(positions) if s in present)
        expected += OVERHEAD + len(b"after the restart")
        expected += sum(p.stat().st_size for p in tmp_path.glob("*.ack"))
        assert asyncio.run(counted()) == expected
    assert _warnings(caplog) == []


def test_free_files_left_by_a_crash_go_at_the_next_start(tmp_path: Path) -> None:
    """Done segments are kept as `.free` files for the next spares; a restart starts ids again
    from what is left, so they are never reused across a restart."""
    _crash_after(tmp_path, 35, acked=0, late=30)
    assert len(list(tmp_path.glob("*.free"))) == 2
    data, _ = _reopen(tmp_path)
    assert sorted(data) == sorted(_payload(i) for i in range(30, 35))
    assert list(tmp_path.glob("*.free")) == []


def test_garbage_before_a_record_of_a_reused_segment_resyncs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    positions = _crash_after(tmp_path, 35, acked=30)
    segment, offset = positions[31]
    with open(_segment(tmp_path, segment), "r+b") as f:
        f.seek(offset)
        f.write(os.urandom(OVERHEAD + 100))
    with caplog.at_level(logging.WARNING, logger="gateway.queue.wal"):
        data, _ = _reopen(tmp_path)
    assert sorted(data) == sorted(_payload(i) for i in (30, 32, 33, 34))
    (warning,) = _warnings(caplog)
    assert "corrupt" in warning and "the records after them are kept" in warning, warning


def test_an_unused_reused_spare_holds_no_records(tmp_path: Path) -> None:
    """--workers: a queue whose only segment is a spare a crash left unused holds no batch, also
    when that spare is a reused file full of an earlier segment's records."""
    positions = _crash_after(tmp_path, 35, acked=35)
    spare = _segment(tmp_path, positions[-1][0] + 1)
    assert spare.exists() and spare.read_bytes().strip(b"\0")  # reused, not zeros
    for path in tmp_path.glob("*.wal"):
        if path != spare:
            path.unlink()
    assert not may_hold_records(tmp_path)
    data, _ = _reopen(tmp_path)
    assert data == [] and not spare.exists()


def test_records_of_the_format_before_reuse_are_replayed(tmp_path: Path) -> None:
    """A queue written by the version before segment reuse: 128 random bits of token, magic
    version 1. Its records come back with their tokens; later appends use the new format."""
    records = []
    raw = b""
    for i in range(3):
        token = os.urandom(16)
        body = struct.pack("<BI16s", 1, i + 1, token)
        payload = _payload(i)
        length = len(body) + len(payload)
        crc = zlib.crc32(payload, zlib.crc32(body, zlib.crc32(struct.pack("<I", length))))
        records.append((len(raw), token))
        raw += struct.pack("<4sII", b"\xa7OQ\x01", length, crc) + body + payload
    _segment(tmp_path, 7).write_bytes(raw)

    async def run() -> None:
        wal = WriteAheadLog(tmp_path, Fsync.BATCH, SEGMENT)
        pending = wal.open()
        assert [(r.segment, r.offset, r.token, r.items) for r in pending] == \
            [(7, offset, token, i + 1) for i, (offset, token) in enumerate(records)]
        assert [wal.read(r) for r in pending] == [_payload(i) for i in range(3)]
        new = await wal.append(1, 1, b"new")
        assert new.segment == 8 and new.token[8:] == (8).to_bytes(8, "little")
        await wal.close()
    asyncio.run(run())
    data, _ = _reopen(tmp_path)
    assert sorted(data) == sorted([*(_payload(i) for i in range(3)), b"new"])
