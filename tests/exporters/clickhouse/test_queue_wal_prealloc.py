"""Preallocated log segments (gateway/queue/wal.py): with fsync, segments after the first are
created at their full size in zeros, so appends change no file metadata. What a restart must
make of that: the zeros are the end of the data (no record lost, nothing reported corrupt),
damage inside them is still found, and the queue's byte count is data, not zeros.

A crash is a real one: a child process appends and dies with os._exit, leaving the files as
they are (nothing sealed, truncated or deleted)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.queue.config import Fsync
from gateway.queue.wal import OVERHEAD, Record, WriteAheadLog

pytestmark = pytest.mark.timeout(30)

SEGMENT = 64 * 1024  # the spare is started at a quarter of it
SIZE = 6000          # ten records per segment

_CHILD = """
import asyncio, json, os, sys, time
from pathlib import Path
from gateway.queue.config import Fsync
from gateway.queue.wal import WriteAheadLog
from tests.exporters.clickhouse.test_queue_wal_prealloc import _payload

async def main():
    directory, segment, sizes, spare_ready = sys.argv[1:]
    wal = WriteAheadLog(Path(directory), Fsync.BATCH, int(segment))
    wal.open()
    out = []
    for i, size in enumerate(json.loads(sizes)):
        rec = await wal.append(1, i, _payload(i, size))
        out.append([rec.segment, rec.offset])
        if spare_ready == "1":  # the next rotation takes the spare, not a new file
            while wal._spare is not None and not wal._spare.finished:
                time.sleep(0.002)
    print(json.dumps(out), flush=True)
    os._exit(0)  # the crash

asyncio.run(main())
"""


def _payload(i: int, size: int = SIZE) -> bytes:
    if size < 0:  # ends in -size zero bytes
        return b"tail" + bytes(-size)
    return (f"record-{i:04d}-".encode() * (size // 12 + 1))[:size]


def _crash_after(directory: Path, sizes: list[int], spare_ready: bool = True
                 ) -> list[tuple[int, int]]:
    """Appends records of `sizes` in a child process that then dies; their positions."""
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", _CHILD, str(directory), str(SEGMENT),
                           json.dumps(sizes), "1" if spare_ready else "0"],
                          capture_output=True, text=True, timeout=20, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    return [tuple(p) for p in json.loads(done.stdout)]


def _reopen(directory: Path, then: list[bytes] = ()
            ) -> tuple[list[Record], list[bytes], list[Record], int]:
    """Replays `directory`: pending records, their payloads, the records of `then` appended
    after the restart, and the log's byte count right after the replay."""
    async def run() -> tuple[list[Record], list[bytes], list[Record], int]:
        wal = WriteAheadLog(directory, Fsync.BATCH, SEGMENT)
        pending = wal.open()
        counted = wal.disk_bytes
        data = [wal.read(r) for r in pending]
        more = [await wal.append(1, 0, p) for p in then]
        await wal.close()
        return pending, data, more, counted
    return asyncio.run(run())


def _segment(directory: Path, segment: int) -> Path:
    return directory / f"{segment:020d}.wal"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_crash_keeps_every_record_and_the_zeros_are_no_damage(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    positions = _crash_after(tmp_path, [SIZE] * 14)
    second = positions[-1][0]
    assert len({s for s, _ in positions}) == 2
    assert _segment(tmp_path, second).stat().st_size == SEGMENT  # preallocated, partly used
    with caplog.at_level(logging.WARNING, logger="gateway.queue.wal"):
        pending, data, more, _ = _reopen(tmp_path, then=[b"after the restart"])
    assert sorted(r.position for r in pending) == sorted(positions)
    assert sorted(data) == sorted(_payload(i) for i in range(14))
    assert _warnings(caplog) == []
    # the next append goes to a new segment, never over the records of the old one
    assert more[0].segment > second
    pending, data, _, _ = _reopen(tmp_path)
    assert sorted(data) == sorted([*(_payload(i) for i in range(14)), b"after the restart"])


def test_an_unused_spare_segment_left_by_a_crash_is_removed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    positions = _crash_after(tmp_path, [SIZE] * 4)  # a quarter full: the spare is made
    (active,) = {s for s, _ in positions}
    spare = _segment(tmp_path, active + 1)
    assert spare.stat().st_size == SEGMENT and not spare.read_bytes().strip(b"\0")
    with caplog.at_level(logging.WARNING, logger="gateway.queue.wal"):
        pending, data, _, _ = _reopen(tmp_path)
    assert sorted(data) == sorted(_payload(i) for i in range(4))
    assert not spare.exists() and _warnings(caplog) == []


def test_a_torn_record_followed_by_zeros_is_skipped_with_one_log_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    positions = _crash_after(tmp_path, [SIZE] * 13)
    segment, last = positions[-1]
    path = _segment(tmp_path, segment)
    with open(path, "r+b") as f:  # the crash kept the first half of the last write
        f.seek(last + SIZE // 2)
        f.write(bytes(SIZE))
    with caplog.at_level(logging.WARNING, logger="gateway.queue.wal"):
        pending, data, _, _ = _reopen(tmp_path)
    assert sorted(data) == sorted(_payload(i) for i in range(12))
    (warning,) = _warnings(caplog)
    # the damaged bytes are counted, not the zeros of the preallocated room behind them
    assert "no whole record" in warning and f"ends with {SIZE // 2} bytes" in warning, warning


def test_garbage_before_a_valid_record_in_a_preallocated_segment_resyncs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    positions = _crash_after(tmp_path, [SIZE] * 14)
    segment = positions[-1][0]
    mine = [p for p in positions if p[0] == segment]
    assert len(mine) >= 3
    path = _segment(tmp_path, segment)
    with open(path, "r+b") as f:  # the first record of the segment turns into noise
        f.seek(mine[0][1])
        f.write(os.urandom(OVERHEAD + 100))
    with caplog.at_level(logging.WARNING, logger="gateway.queue.wal"):
        pending, data, _, _ = _reopen(tmp_path)
    lost = positions.index(mine[0])
    assert sorted(data) == sorted(_payload(i) for i in range(14) if i != lost)
    (warning,) = _warnings(caplog)
    assert "corrupt" in warning and "the records after them are kept" in warning, warning


def test_a_record_whose_payload_ends_in_zeros_is_not_cut_by_the_zero_tail(
        tmp_path: Path) -> None:
    """The zeros at the end of a segment are found by scanning back from its end: the last
    record's own trailing zero bytes belong to it."""
    positions = _crash_after(tmp_path, [SIZE] * 12 + [0, -3000])
    assert _segment(tmp_path, positions[-1][0]).stat().st_size == SEGMENT
    pending, data, _, _ = _reopen(tmp_path)
    assert sorted(data) == sorted([*(_payload(i) for i in range(12)), b"", _payload(0, -3000)])


def test_byte_accounting_counts_data_not_preallocated_zeros(tmp_path: Path) -> None:
    async def run() -> int:
        wal = WriteAheadLog(tmp_path, Fsync.BATCH, SEGMENT)
        wal.open()
        recs: list[Record] = []
        for i in range(25):
            recs.append(await wal.append(1, 1, _payload(i)))
            spare = wal._spare
            if spare is not None and spare.thread is not None:
                spare.thread.join()  # so the rotations take preallocated segments
        assert len({r.segment for r in recs}) == 3
        assert wal.disk_bytes == sum(r.length for r in recs)
        on_disk = sum(p.stat().st_size for p in tmp_path.glob("*.wal"))
        assert on_disk >= wal.disk_bytes + SEGMENT  # the zeros are there, not counted
        for r in recs[:3]:
            wal.ack(r)
        ack_bytes = sum(p.stat().st_size for p in tmp_path.glob("*.ack"))
        assert wal.disk_bytes == sum(r.length for r in recs) + ack_bytes
        await wal.close()
        # what stays until the next start is the data: the active segment is cut to it
        last = max(r.segment for r in recs)
        assert _segment(tmp_path, last).stat().st_size == \
            sum(r.length for r in recs if r.segment == last)
        return sum(r.length for r in recs) + ack_bytes
    counted_before = asyncio.run(run())
    pending, data, _, counted = _reopen(tmp_path)
    assert sorted(data) == sorted(_payload(i) for i in range(3, 25))
    assert counted == counted_before


def test_fsync_never_does_not_preallocate(tmp_path: Path) -> None:
    async def run() -> None:
        wal = WriteAheadLog(tmp_path, Fsync.NEVER, SEGMENT)
        wal.open()
        recs = [await wal.append(1, 1, _payload(i)) for i in range(25)]
        assert sum(p.stat().st_size for p in tmp_path.glob("*.wal")) == \
            sum(r.length for r in recs) == wal.disk_bytes
        await wal.close()
    asyncio.run(run())


def test_a_bug_in_the_writer_fails_its_appends_and_the_log_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception in the writer thread fails that group's appends with an OSError
    that says so; the thread lives on, and later appends are written (not left waiting)."""
    async def run() -> None:
        wal = WriteAheadLog(tmp_path, Fsync.BATCH, SEGMENT)
        wal.open()
        real = wal._write_group
        calls = []

        def buggy(work: list) -> list:
            calls.append(len(work))
            if len(calls) == 1:
                raise AssertionError("a bug")
            return real(work)

        monkeypatch.setattr(wal, "_write_group", buggy)
        with pytest.raises(OSError, match="cannot be written: AssertionError"):
            await asyncio.wait_for(wal.append(1, 1, _payload(0)), 5)
        rec = await asyncio.wait_for(wal.append(1, 1, _payload(1)), 5)
        assert wal.read(rec) == _payload(1)
        await wal.close()
    asyncio.run(run())


def test_a_queue_left_with_only_an_unused_spare_holds_no_records(tmp_path: Path) -> None:
    """--workers: the owner drains queues of former workers that hold batches; one whose only
    segment is a spare a crash left (all zeros) holds none."""
    from gateway.queue.wal import may_hold_records

    assert not may_hold_records(tmp_path)
    (tmp_path / f"{7:020d}.wal").write_bytes(bytes(SEGMENT))
    assert not may_hold_records(tmp_path)
    _crash_after(tmp_path, [SIZE])
    assert may_hold_records(tmp_path)
