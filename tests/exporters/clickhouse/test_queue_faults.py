"""The sending queue when the disk or the destination misbehaves: a segment that cannot be
created, a write or fsync that fails, torn or corrupt ack files, a crash right after a file was
created, and refusals of merged exports that may have been stored already. What a client and
the store see: refusals are RetryableError with the cause, acknowledged batches are neither
lost nor sent under a second token."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import PermanentError, RetryableError
from gateway.queue import deadletter, wal
from gateway.queue.config import Fsync, RetrySettings
from gateway.queue.durable import Batch
from gateway.queue.wal import Record, WriteAheadLog
from gateway.signals import Signal
from tests.exporters.clickhouse.test_queue_durable import MERGE, _queue, _wait

pytestmark = pytest.mark.timeout(30)


class Disk:
    """Makes chosen calls of the log fail the way a full or broken disk does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.segments_fail = False   # creating a segment: ENOSPC
        self.writes_fail = False     # writev: ENOSPC
        self.syncs_fail = 0          # this many fdatasync calls: EIO
        real_open, real_writev, real_sync = os.open, os.writev, os.fdatasync

        def open_(path: Any, flags: int, *args: Any) -> int:
            if self.segments_fail and str(path).endswith(".wal") and flags & os.O_CREAT:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_open(path, flags, *args)

        def writev(fd: int, bufs: Any) -> int:
            if self.writes_fail:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_writev(fd, bufs)

        def fdatasync(fd: int) -> None:
            if self.syncs_fail:
                self.syncs_fail -= 1
                raise OSError(errno.EIO, "Input/output error")
            real_sync(fd)

        monkeypatch.setattr(os, "open", open_)
        monkeypatch.setattr(os, "writev", writev)
        monkeypatch.setattr(os, "fdatasync", fdatasync)


def _replay(directory: Path) -> list[bytes]:
    async def run() -> list[bytes]:
        log_ = WriteAheadLog(directory)
        pending = log_.open()
        data = [log_.read(r) for r in pending]
        await log_.close()
        return data
    return sorted(asyncio.run(run()))


def test_a_segment_that_cannot_be_created_never_fails_an_append(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The full segment goes on growing; what was committed before the failed rotation is
    reported written (its client was acknowledged), and nothing is lost."""
    disk = Disk(monkeypatch)
    payloads = [b"%04d" % i * 250 for i in range(8)]  # 1000 bytes each, 3 per segment

    async def run() -> None:
        log_ = WriteAheadLog(tmp_path, Fsync.BATCH, segment_bytes=3200)
        log_.open()
        disk.segments_fail = True
        got = await asyncio.gather(*(log_.append(1, 1, p) for p in payloads[:5]),
                                   return_exceptions=True)
        assert all(isinstance(r, Record) for r in got), got
        assert len({r.segment for r in got}) == 1
        disk.segments_fail = False  # the next group rotates again
        more = await asyncio.gather(*(log_.append(1, 1, p) for p in payloads[5:]))
        assert {r.segment for r in more} != {got[0].segment}
        await log_.close()
    asyncio.run(run())
    assert _replay(tmp_path) == sorted(payloads)


def test_a_failed_write_is_a_clear_retryable_refusal_and_is_never_replayed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk is full: the write fails, then no new segment can be started. Every put is
    refused with RetryableError naming the cause (HTTP 503 / UNAVAILABLE), never an internal
    error; once there is room the queue takes batches again, and after a restart only the
    acknowledged batches come back."""
    disk = Disk(monkeypatch)

    async def down(batch: Batch) -> None:  # keeps what was acknowledged in the log
        raise RetryableError("Connection refused")

    async def run() -> None:
        q = _queue(tmp_path, down, drain_timeout=0)
        await q.start()
        await q.put(Signal.LOGS, 1, b"before")
        disk.writes_fail = disk.segments_fail = True
        for name in (b"one", b"two", b"three"):
            with pytest.raises(RetryableError, match="No space left on device") as err:
                await q.put(Signal.LOGS, 1, name)
            assert "sending queue" in str(err.value)
        assert "cannot start a new log segment" in str(err.value)
        assert q.batches == 1 and q.used == 1
        disk.writes_fail = disk.segments_fail = False
        await q.put(Signal.LOGS, 1, b"after")
        await q.shutdown()  # nothing exported: both stay, the refused ones are gone
    asyncio.run(run())
    assert _replay(tmp_path) == [b"after", b"before"]


def test_a_failed_fsync_voids_its_records_and_moves_to_a_new_segment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = Disk(monkeypatch)

    async def run() -> None:
        log_ = WriteAheadLog(tmp_path, Fsync.BATCH)
        log_.open()
        first = await log_.append(1, 1, b"kept")
        disk.syncs_fail = 1
        with pytest.raises(OSError, match="Input/output error"):
            await log_.append(1, 1, b"failed")
        second = await log_.append(1, 1, b"kept too")
        assert second.segment > first.segment  # the page cache of the old one is suspect
        await log_.close()
    asyncio.run(run())
    assert _replay(tmp_path) == [b"kept", b"kept too"]


def _records(directory: Path, ack: tuple[int, ...] = (), n: int = 3) -> list[Record]:
    async def run() -> list[Record]:
        log_ = WriteAheadLog(directory)
        log_.open()
        recs = [await log_.append(1, 1, b"%d" % i * 500) for i in range(n)]
        for i in ack:
            log_.ack(recs[i])
        await log_.close()
        return recs
    return asyncio.run(run())


def test_an_acked_record_with_a_corrupt_length_hides_no_pending_record(tmp_path: Path) -> None:
    """The length of an acked record is checked like any other: trusted, a corrupt one would
    make replay jump over the pending records behind it."""
    recs = _records(tmp_path, ack=(0,))
    (segment,) = tmp_path.glob("*.wal")
    raw = bytearray(segment.read_bytes())
    reach = recs[2].offset + recs[2].length - 12  # its body now ends where the last does
    raw[4:8] = reach.to_bytes(4, "little")
    segment.write_bytes(bytes(raw))
    assert _replay(tmp_path) == [b"1" * 500, b"2" * 500]


def test_acks_after_a_torn_ack_entry_still_count(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A crash tore the last entry of an ack file; the acks written after the restart must not
    be misaligned behind it (they would be lost, and their records sent again)."""
    recs = _records(tmp_path, ack=(0,))
    (ack,) = tmp_path.glob("*.ack")
    with open(ack, "ab") as f:
        f.write(b"\x01\x02\x03\x04\x05")

    async def restart() -> None:
        log_ = WriteAheadLog(tmp_path)
        pending = log_.open()
        assert [r.position for r in pending] == [recs[1].position, recs[2].position]
        log_.ack(pending[0])
        await log_.close()
    with caplog.at_level(logging.WARNING, logger="gateway.queue.wal"):
        asyncio.run(restart())
        assert any("5 bytes that are no valid entry" in r.getMessage() for r in caplog.records)
        caplog.clear()
        assert _replay(tmp_path) == [b"2" * 500]
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_a_corrupt_ack_entry_in_the_middle_loses_only_itself(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _records(tmp_path, ack=(0, 1, 2), n=4)
    (ack,) = tmp_path.glob("*.ack")
    raw = bytearray(ack.read_bytes())
    del raw[14]  # the second entry loses a byte: the third is misaligned behind it
    ack.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="gateway.queue.wal"):
        # the second is sent again (and deduplicated), the third still counts
        assert _replay(tmp_path) == [b"1" * 500, b"3" * 500]
    assert any("no valid entry" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fsync", [Fsync.BATCH, Fsync.NEVER])
def test_an_ack_that_must_survive_a_crash_syncs_its_new_file_s_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: Fsync) -> None:
    """A dissolved group's ack is fsynced: the ack file is new, so its name must reach the disk
    too (once per file). Plain acks sync nothing; with fsync `never` nothing is synced."""
    synced: list[Path] = []
    real = wal.fsync_path
    monkeypatch.setattr(wal, "fsync_path", lambda p: (synced.append(Path(p)), real(p)))

    async def run() -> None:
        log_ = WriteAheadLog(tmp_path, fsync)
        log_.open()
        recs = [await log_.append(1, 1, b"x") for _ in range(4)]
        synced.clear()
        log_.ack(recs[0])
        assert synced == []  # the hot path: an ack lost in a crash is only sent again
        for members in (recs[0:2], recs[2:4]):
            log_.dissolve(await log_.append_group(1, members))
        await log_.close()
    asyncio.run(run())
    assert synced == ([tmp_path] if fsync is Fsync.BATCH else [])


def test_a_dead_letter_s_name_reaches_the_disk(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(deadletter, "fsync_path", lambda p: synced.append(Path(p)))
    letters = deadletter.DeadLetters(tmp_path / "q" / "dead_letter", fsync=True)
    (tmp_path / "q").mkdir()
    letters.write(b"data", "ab" * 16, {})
    letters.write(b"data", "cd" * 16, {})
    assert synced == [tmp_path / "q", tmp_path / "q" / "dead_letter",
                      tmp_path / "q" / "dead_letter"]


def test_a_merged_export_refused_after_a_transient_failure_is_never_taken_apart(
        tmp_path: Path) -> None:
    """The first attempt timed out (it may have been stored), the second is refused: sent
    again one by one under new tokens, the batches would be stored twice. Set aside whole."""
    calls: list[tuple[bytes, str]] = []

    async def export(batch: Batch) -> None:
        calls.append((batch.data, batch.token))
        if len(calls) == 1:
            raise RetryableError("Read timed out")
        raise PermanentError("ClickHouse rejected the logs: Code: 395. FUNCTION_THROW_IF")

    async def run() -> None:
        q = _queue(tmp_path, export, **MERGE)
        await q.start()
        await asyncio.gather(*(q.put(Signal.LOGS, 4, x) for x in (b"a-", b"b-", b"c")))
        await _wait(lambda: q.batches == 0)
        await q.shutdown()
    asyncio.run(run())
    assert [data for data, _ in calls] == [b"a-b-c", b"a-b-c"]
    assert len({token for _, token in calls}) == 1
    assert len(list((tmp_path / "dead_letter").glob("*.json"))) == 3


def test_a_merged_export_from_before_a_restart_is_never_taken_apart(tmp_path: Path) -> None:
    """It may have been stored before the stop; after the restart a refusal sets it aside
    whole instead of sending its batches again under new tokens."""
    tokens: list[str] = []
    again: list[tuple[bytes, str]] = []

    async def down(batch: Batch) -> None:
        tokens.append(batch.token)
        raise RetryableError("Read timed out")

    async def refuse(batch: Batch) -> None:
        again.append((batch.data, batch.token))
        raise PermanentError("ClickHouse rejected the logs: Code: 27. CANNOT_PARSE_INPUT")

    async def run() -> None:
        q = _queue(tmp_path, down, drain_timeout=0.2, **MERGE)
        await q.start()
        await asyncio.gather(*(q.put(Signal.LOGS, 4, x) for x in (b"a-", b"b-", b"c")))
        await _wait(lambda: len(tokens) >= 1)
        await q.shutdown()
        q = _queue(tmp_path, refuse, **MERGE)
        await q.start()
        await _wait(lambda: q.batches == 0)
        await q.shutdown()
    asyncio.run(run())
    assert again == [(b"a-b-c", tokens[0])]
    letters = [json.loads(m.read_text()) for m in (tmp_path / "dead_letter").glob("*.json")]
    assert len(letters) == 3 and all("CANNOT_PARSE_INPUT" in m["error"] for m in letters)


def test_a_member_of_a_split_export_keeps_its_own_token_across_a_restart(
        tmp_path: Path) -> None:
    """Once taken apart, each batch is exported under a group of its own: retried after a
    restart it carries the same token and is never merged with others."""
    first: list[tuple[bytes, str]] = []
    second: list[tuple[bytes, str]] = []

    async def flaky(batch: Batch) -> None:
        first.append((batch.data, batch.token))
        if batch.data == b"a-bad-c":
            raise PermanentError("ClickHouse rejected the logs: Code: 27. CANNOT_PARSE_INPUT")
        raise RetryableError("Read timed out")

    async def export(batch: Batch) -> None:
        second.append((batch.data, batch.token))

    retry = RetrySettings(initial_interval=5, max_elapsed_time=0)

    async def run() -> None:
        q = _queue(tmp_path, flaky, retry=retry, drain_timeout=0.2, num_consumers=1, **MERGE)
        await q.start()
        await asyncio.gather(*(q.put(Signal.LOGS, 4, x) for x in (b"a-", b"bad", b"-c")))
        await _wait(lambda: len(first) == 2)  # the merged export, then a- alone, waiting
        await q.shutdown()
        q = _queue(tmp_path, export, **MERGE)
        await q.start()
        await _wait(lambda: q.batches == 0)
        await q.shutdown()
    asyncio.run(run())
    assert first[1][0] == b"a-"
    assert first[1] in second  # the same rows under the same token
    assert all(len(data) <= 3 for data, _ in second), second  # none merged again



_EXPORT_THEN_CRASH = """
import asyncio, os, sys, time
from pathlib import Path
from gateway.queue.config import QueueSettings
from gateway.queue.durable import DurableQueue
from gateway.signals import Signal
from tests.exporters.clickhouse.test_queue_durable import FAST

async def main():
    directory, store_syncs = Path(sys.argv[1]), sys.argv[2] == "1"
    synced = []

    def store_sync():  # the store's writes reach the disk; or hang, as a crash cuts it short
        if not store_syncs:
            time.sleep(60)
        synced.append(True)

    exported = []

    async def export(batch):
        exported.append(batch)

    q = DurableQueue("clickhouse", directory, QueueSettings(num_consumers=2), FAST, export,
                     store_sync=store_sync)
    await q.start()
    for i in range(5):
        await q.put(Signal.LOGS, 1, b"batch-%d" % i)
    while len(exported) < 5 or (store_syncs and q.batches):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    os._exit(0)  # the machine's crash, as far as the queue's files are concerned

asyncio.run(main())
"""


@pytest.mark.parametrize("store_syncs", [False, True])
def test_exported_batches_leave_the_log_only_once_the_store_synced(
        tmp_path: Path, store_syncs: bool) -> None:
    """The embedded store writes parts without fsync: a batch it took may be gone after a
    crash of the machine. The queue lets a batch go only after a sync of the store that started
    after its export; a crash before that finds it pending, sent again under its token."""
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", _EXPORT_THEN_CRASH, str(tmp_path),
                           "1" if store_syncs else "0"], capture_output=True, text=True,
                          timeout=30, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    again: list[bytes] = []

    async def export(batch: Batch) -> None:
        again.append(batch.data)

    async def reopen() -> None:
        q = _queue(tmp_path, export)
        await q.start()
        await _wait(lambda: q.batches == 0)
        await q.shutdown()
    asyncio.run(reopen())
    assert sorted(again) == ([] if store_syncs else [b"batch-%d" % i for i in range(5)])


def test_dead_letters_written_from_several_threads_stay_within_the_limit(tmp_path: Path) -> None:
    """Consumers write dead letters from threads of their own: two deleting the same oldest
    batch at once raised KeyError, which left the batch counted in the queue until a restart."""
    import threading

    letters = deadletter.DeadLetters(tmp_path / "dead_letter", fsync=False, limit=20_000)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def write() -> None:
        start.wait()
        for i in range(40):
            try:
                letters.write(os.urandom(3000), os.urandom(8).hex(), {"i": i})
            except BaseException as exc:  # noqa: BLE001 - any is the failure
                errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    files = list((tmp_path / "dead_letter").iterdir())
    assert 0 < sum(f.stat().st_size for f in files) <= 20_000
    assert len([f for f in files if f.suffix == ".pb"]) == len(
        [f for f in files if f.suffix == ".json"])
