"""The durable sending queue (gateway/queue/durable.py) with a scripted export function: the
capacity and its refusals, retries with one token, the dead-letter directory, the drain."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from gateway.errors import PermanentError, RefusedError, RetryableError
from gateway.files import mount_of
from gateway.queue.config import QueueSettings, RetrySettings
from gateway.queue.durable import Batch, DurableQueue
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry

pytestmark = pytest.mark.timeout(30)

FAST = RetrySettings(initial_interval=0.01, max_interval=0.02, max_elapsed_time=0)


def _queue(tmp_path: Path, export: Callable[[Batch], Awaitable[None]], t: Any = None,
           retry: RetrySettings = FAST, **cfg: Any) -> DurableQueue:
    settings = QueueSettings(**{"num_consumers": 2, "drain_timeout": 2, **cfg})
    return DurableQueue("clickhouse", tmp_path, settings, retry, export, t)


def _value(t: SelfTelemetry, name: str, **labels: str) -> float:
    return t.registry.get_sample_value(name, labels) or 0.0


async def _wait(cond: Callable[[], bool], timeout: float = 5) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def test_full_queue_refuses_with_retry_after_and_counts(tmp_path: Path) -> None:
    t = SelfTelemetry()
    gate = asyncio.Event()

    async def stuck(batch: Batch) -> None:
        await gate.wait()

    async def run() -> None:
        q = _queue(tmp_path, stuck, t, queue_size=3)
        await q.start()
        for i in range(3):
            await q.put(Signal.TRACES, 5, b"x%d" % i)
        with pytest.raises(RefusedError, match="sending queue is full") as err:
            await q.put(Signal.TRACES, 7, b"y")
        assert err.value.retry_after and err.value.retry_after >= 1
        assert _value(t, "otelcol_exporter_queue_size", exporter="clickhouse") == 3
        assert _value(t, "otelcol_exporter_queue_capacity", exporter="clickhouse") == 3
        assert _value(t, "otelcol_exporter_enqueue_failed_spans_total",
                      exporter="clickhouse") == 7
        assert _value(t, "otelgw_exporter_queue_bytes", exporter="clickhouse") > 0
        gate.set()
        await _wait(lambda: q.used == 0)
        await q.put(Signal.TRACES, 7, b"y")  # room again
        await q.shutdown()
        assert _value(t, "otelcol_exporter_sent_spans_total", exporter="clickhouse") == 22
    asyncio.run(run())


@pytest.mark.parametrize(("sizer", "size", "fits"), [("items", 10, 2), ("bytes", 2500, 2)])
def test_sizer_counts_items_or_bytes(tmp_path: Path, sizer: str, size: int, fits: int) -> None:
    async def stuck(batch: Batch) -> None:
        await asyncio.Event().wait()

    async def run() -> None:
        q = _queue(tmp_path, stuck, sizer=sizer, queue_size=size, drain_timeout=0)
        await q.start()
        for _ in range(fits):
            await q.put(Signal.LOGS, 4, b"z" * 1000)
        with pytest.raises(RefusedError):
            await q.put(Signal.LOGS, 4, b"z" * 1000)
        q._closing.set()  # the stuck exports never return: stop without waiting for them
        for task in q._consumers:
            task.cancel()
        await q.shutdown()
    asyncio.run(run())


def test_a_batch_larger_than_the_capacity_goes_through_an_empty_queue(tmp_path: Path) -> None:
    got: list[int] = []

    async def export(batch: Batch) -> None:
        got.append(len(batch.data))

    async def run() -> None:
        q = _queue(tmp_path, export, sizer="bytes", queue_size=100)
        await q.start()
        await q.put(Signal.METRICS, 1, b"m" * 5000)
        await _wait(lambda: got == [5000])
        await q.shutdown()
    asyncio.run(run())


def test_block_on_overflow_waits_for_room(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def export(batch: Batch) -> None:
        await gate.wait()

    async def run() -> None:
        q = _queue(tmp_path, export, queue_size=1, block_on_overflow=True)
        await q.start()
        await q.put(Signal.TRACES, 1, b"a")
        second = asyncio.ensure_future(q.put(Signal.TRACES, 1, b"b"))
        await asyncio.sleep(0.2)
        assert not second.done()
        gate.set()
        await asyncio.wait_for(second, 5)
        await q.shutdown()
    asyncio.run(run())


def test_retries_carry_one_token_until_the_export_succeeds(tmp_path: Path) -> None:
    attempts: list[str] = []

    async def flaky(batch: Batch) -> None:
        attempts.append(batch.token)
        if len(attempts) < 3:
            raise RetryableError("ClickHouse is away")

    async def run() -> None:
        q = _queue(tmp_path, flaky)
        await q.start()
        await q.put(Signal.LOGS, 2, b"log-batch")
        await _wait(lambda: q.batches == 0)
        await q.shutdown()
    asyncio.run(run())
    assert len(attempts) == 3 and len(set(attempts)) == 1 and len(attempts[0]) == 32
    assert not (tmp_path / "dead_letter").exists()


def test_a_permanent_error_sends_the_batch_to_the_dead_letter_directory(tmp_path: Path) -> None:
    t = SelfTelemetry()
    calls: list[bytes] = []

    async def refusing(batch: Batch) -> None:
        calls.append(batch.data)
        if batch.data == b"bad":
            raise PermanentError("ClickHouse rejected the traces: Code: 27. CANNOT_PARSE_INPUT")

    async def run() -> None:
        q = _queue(tmp_path, refusing, t)
        await q.start()
        await q.put(Signal.TRACES, 3, b"bad")
        await q.put(Signal.TRACES, 4, b"good")
        await _wait(lambda: q.batches == 0)
        await q.shutdown()
    asyncio.run(run())
    assert sorted(calls) == [b"bad", b"good"]  # tried once, never again
    (meta,) = (tmp_path / "dead_letter").glob("*.json")
    info = json.loads(meta.read_text())
    assert info["signal"] == "traces" and info["items"] == 3
    assert "CANNOT_PARSE_INPUT" in info["error"] and info["exporter"] == "clickhouse"
    assert (meta.parent / info["payload_file"]).read_bytes() == b"bad"
    assert _value(t, "otelgw_exporter_dead_lettered_batches_total", exporter="clickhouse",
                  data_type="traces") == 1
    assert _value(t, "otelgw_exporter_dead_lettered_items_total", exporter="clickhouse",
                  data_type="traces") == 3
    assert _value(t, "otelcol_exporter_send_failed_spans_total", exporter="clickhouse") == 3
    assert _value(t, "otelcol_exporter_sent_spans_total", exporter="clickhouse") == 4

    async def reopen() -> None:  # and it is out of the log
        q = _queue(tmp_path, refusing)
        await q.start()
        assert q.batches == 0
        await q.shutdown()
    asyncio.run(reopen())
    assert sorted(calls) == [b"bad", b"good"]


def test_an_outage_keeps_batches_and_a_poison_batch_is_set_aside(tmp_path: Path) -> None:
    """While every export fails nothing leaves the queue, however long; a batch that still
    fails after max_elapsed_time while others are exported goes to the dead-letter directory."""
    state = {"down": True}

    async def export(batch: Batch) -> None:
        if state["down"] or batch.data == b"poison":
            raise RetryableError("Code: 241. MEMORY_LIMIT_EXCEEDED")

    retry = RetrySettings(initial_interval=0.01, max_interval=0.02, max_elapsed_time=0.2)

    async def run() -> None:
        q = _queue(tmp_path, export, retry=retry)
        await q.start()
        await q.put(Signal.LOGS, 1, b"poison")
        await q.put(Signal.LOGS, 1, b"fine")
        await asyncio.sleep(0.6)  # three times max_elapsed_time, everything failing
        assert q.batches == 2
        state["down"] = False
        await _wait(lambda: q.batches == 0)
        await q.shutdown()
    asyncio.run(run())
    (meta,) = (tmp_path / "dead_letter").glob("*.json")
    assert "max_elapsed_time" in json.loads(meta.read_text())["error"]


def test_retry_disabled_sets_a_failed_batch_aside(tmp_path: Path) -> None:
    async def failing(batch: Batch) -> None:
        raise RetryableError("connection refused")

    async def run() -> None:
        q = _queue(tmp_path, failing, retry=RetrySettings(enabled=False))
        await q.start()
        await q.put(Signal.METRICS, 1, b"m")
        await _wait(lambda: q.batches == 0)
        await q.shutdown()
    asyncio.run(run())
    (meta,) = (tmp_path / "dead_letter").glob("*.json")
    assert "retry_on_failure is disabled" in json.loads(meta.read_text())["error"]


def test_shutdown_drains_then_leaves_the_rest_for_the_next_start(tmp_path: Path) -> None:
    sent: list[bytes] = []
    state = {"down": False}

    async def export(batch: Batch) -> None:
        if state["down"]:
            raise RetryableError("down")
        await asyncio.sleep(0.01)
        sent.append(batch.data)

    async def run() -> None:
        q = _queue(tmp_path, export, drain_timeout=5)
        await q.start()
        await asyncio.gather(*(q.put(Signal.TRACES, 1, b"t%d" % i) for i in range(20)))
        await q.shutdown()  # drains: all 20 exported
        assert len(sent) == 20
        state["down"] = True
        q = _queue(tmp_path, export, drain_timeout=0.3)
        await q.start()
        await asyncio.gather(*(q.put(Signal.TRACES, 1, b"u%d" % i) for i in range(5)))
        stopping = asyncio.ensure_future(q.shutdown())
        await asyncio.sleep(0)
        with pytest.raises(RetryableError, match="shutting down"):
            await q.put(Signal.TRACES, 1, b"late")
        await stopping
        state["down"] = False
        q = _queue(tmp_path, export)
        await q.start()  # the five come back
        await _wait(lambda: q.batches == 0)
        await q.shutdown()
    asyncio.run(run())
    assert sorted(sent[20:]) == sorted(b"u%d" % i for i in range(5))


def test_collector_queue_options_and_their_errors() -> None:
    from exporters.clickhouse.config import ClickHouseConfig

    q = ClickHouseConfig.model_validate({"sending_queue": {"blocking": True}}).sending_queue
    assert q.block_on_overflow and q.num_consumers == 2 and q.sizer == "requests"
    assert q.fsync.value == "batch" and q.queue_size == 1000
    for bad, message in [({"wait_for_result": True}, "wait_for_result is not supported"),
                         ({"storage": "file_storage", "directory": "/x"}, "either storage"),
                         ({"sizer": "spans"}, "requests"), ({"fsync": "sometimes"}, "batch"),
                         ({"blocking": False, "block_on_overflow": True}, "disagree")]:
        with pytest.raises(ValueError, match=message):
            ClickHouseConfig.model_validate({"sending_queue": bad})
    # without the queue, the Collector's wait_for_result means what otelgw does anyway
    ClickHouseConfig.model_validate({"sending_queue": {"enabled": False,
                                                       "wait_for_result": True}})


MERGE = {"batch": {"flush_timeout": "100ms", "min_size": 10}}


def test_batches_are_merged_up_to_max_size_and_after_flush_timeout(tmp_path: Path) -> None:
    t = SelfTelemetry()
    exports: list[tuple[bytes, int, str]] = []

    async def export(batch: Batch) -> None:
        exports.append((batch.data, batch.items, batch.token))

    async def run() -> None:
        q = _queue(tmp_path, export, t, batch={"flush_timeout": "100ms", "min_size": 10,
                                               "max_size": 10})
        await q.start()
        await asyncio.gather(*(q.put(Signal.LOGS, 4, b"%d" % i) for i in range(5)))
        await q.put(Signal.TRACES, 2, b"t")
        await _wait(lambda: q.batches == 0)
        await q.shutdown()
    asyncio.run(run())
    # 4 + 4 fit in max_size 10, a third would not; the last log batch and the trace batch go
    # out alone after flush_timeout, each signal apart
    assert sorted((data, items) for data, items, _ in exports) == \
        [(b"01", 8), (b"23", 8), (b"4", 4), (b"t", 2)]
    assert len({token for *_, token in exports}) == 4
    assert _value(t, "otelcol_exporter_sent_log_records_total", exporter="clickhouse") == 20


def test_merged_exports_are_repeated_as_they_were_after_a_crash(tmp_path: Path) -> None:
    """The exports landed, then the process died before the acks reached the disk. After the
    restart all five batches are pending at once and would be merged otherwise; the group records
    make the queue repeat exactly the exports that may have landed, with their tokens, so the
    destination drops them."""
    first: list[tuple[bytes, str]] = []
    again: list[tuple[bytes, str]] = []

    async def crashed() -> None:
        async def export(batch: Batch) -> None:
            first.append((batch.data, batch.token))

        q = _queue(tmp_path, export, **MERGE)
        await q.start()
        q.wal.ack = lambda rec, sync=False: None  # type: ignore[method-assign]  # acks lost
        await asyncio.gather(q.put(Signal.TRACES, 4, b"a"), q.put(Signal.TRACES, 4, b"b"))
        await _wait(lambda: len(first) == 1)  # after flush_timeout: a + b
        await asyncio.gather(*(q.put(Signal.TRACES, 4, x) for x in (b"c", b"d", b"e")))
        await _wait(lambda: len(first) == 2)  # at min_size: c + d + e
        await q.shutdown()

    async def restarted() -> None:
        async def export(batch: Batch) -> None:
            again.append((batch.data, batch.token))

        q = _queue(tmp_path, export, **MERGE)
        await q.start()
        assert q.batches == 5
        await _wait(lambda: q.batches == 0)
        await q.shutdown()

    asyncio.run(crashed())
    assert [data for data, _ in first] == [b"ab", b"cde"]
    asyncio.run(restarted())
    assert sorted(again) == sorted(first)
    assert not list(tmp_path.glob("*.wal"))


def test_a_refused_merged_export_is_taken_apart_and_only_the_bad_batch_set_aside(
        tmp_path: Path) -> None:
    t = SelfTelemetry()
    calls: list[tuple[bytes, str]] = []

    async def export(batch: Batch) -> None:
        calls.append((batch.data, batch.token))
        if b"bad" in batch.data:
            raise PermanentError("ClickHouse rejected the logs: Code: 27. CANNOT_PARSE_INPUT")

    async def run() -> None:
        q = _queue(tmp_path, export, t, **MERGE)
        await q.start()
        await asyncio.gather(*(q.put(Signal.LOGS, n, x) for n, x in ((4, b"a-"), (3, b"bad"),
                                                                       (4, b"-c"))))
        await _wait(lambda: q.batches == 0)
        await q.shutdown()
        q = _queue(tmp_path, export, **MERGE)
        await q.start()  # nothing comes back
        assert q.batches == 0
        await q.shutdown()
    asyncio.run(run())
    assert [data for data, _ in calls] == [b"a-bad-c", b"a-", b"bad", b"-c"]
    assert len({token for _, token in calls}) == 4
    (meta,) = (tmp_path / "dead_letter").glob("*.json")
    info = json.loads(meta.read_text())
    assert info["items"] == 3 and (meta.parent / info["payload_file"]).read_bytes() == b"bad"
    assert _value(t, "otelcol_exporter_sent_log_records_total", exporter="clickhouse") == 8
    assert _value(t, "otelcol_exporter_send_failed_log_records_total",
                  exporter="clickhouse") == 3


def test_a_merged_export_given_up_after_transient_failures_is_set_aside_whole(
        tmp_path: Path) -> None:
    """A timeout may hide an INSERT that landed: taken apart, the members would go out again
    under new tokens and be stored twice. Without retries it goes to the dead letters as it is."""
    calls: list[tuple[bytes, str]] = []

    async def export(batch: Batch) -> None:
        calls.append((batch.data, batch.token))
        raise RetryableError("Read timed out")

    async def run() -> None:
        q = _queue(tmp_path, export, retry=RetrySettings(enabled=False), **MERGE)
        await q.start()
        await asyncio.gather(*(q.put(Signal.LOGS, n, x) for n, x in ((4, b"a-"), (3, b"b-"),
                                                                       (4, b"c"))))
        await _wait(lambda: q.batches == 0)
        await q.shutdown()
    asyncio.run(run())
    assert calls == [(b"a-b-c", calls[0][1])]  # one attempt, nothing re-exported
    letters = sorted(json.loads(m.read_text())["items"]
                     for m in (tmp_path / "dead_letter").glob("*.json"))
    assert letters == [3, 4, 4]


def test_batches_queued_without_merging_are_sent_alone_after_merging_is_turned_on(
        tmp_path: Path) -> None:
    """They may have been sent under their own tokens before the restart: merging them would
    give them a new one."""
    tokens: list[str] = []
    sent: list[tuple[bytes, str]] = []

    async def down(batch: Batch) -> None:
        tokens.append(batch.token)
        raise RetryableError("down")

    async def export(batch: Batch) -> None:
        sent.append((batch.data, batch.token))

    async def run() -> None:
        q = _queue(tmp_path, down, drain_timeout=0.2, num_consumers=3)
        await q.start()
        await asyncio.gather(*(q.put(Signal.METRICS, 5, x) for x in (b"x", b"y", b"z")))
        await _wait(lambda: len(set(tokens)) == 3)
        await q.shutdown()
        q = _queue(tmp_path, export, **MERGE)
        await q.start()
        await _wait(lambda: q.batches == 0)
        await q.shutdown()
    asyncio.run(run())
    assert sorted(data for data, _ in sent) == [b"x", b"y", b"z"]
    assert {token for _, token in sent} == set(tokens)


def test_batch_options_and_their_errors() -> None:
    from exporters.clickhouse.config import ClickHouseConfig

    def queue(**cfg: Any) -> Any:
        return ClickHouseConfig.model_validate({"sending_queue": cfg}).sending_queue

    assert queue().batch is None
    empty = queue(batch=None).batch  # `batch:` alone turns it on
    assert empty is not None and (empty.flush_timeout, empty.min_size, empty.max_size,
                                  empty.sizer) == (0.2, 8192, 0, "items")
    for bad, message in [({"flush_timeout": "0s"}, "greater than 0"),
                         ({"sizer": "requests"}, "'items' or 'bytes'"),
                         ({"min_size": 100, "max_size": 50}, "at least min_size"),
                         ({"min_size": -1}, "greater than or equal to 0")]:
        with pytest.raises(ValueError, match=message):
            queue(batch=bad)
    with pytest.raises(ValueError, match="min_size .* must be at most queue_size"):
        queue(sizer="items", queue_size=5000, batch={})


def test_exports_waiting_for_a_busy_consumer_are_merged_up_to_max_size(tmp_path: Path) -> None:
    gate = asyncio.Event()
    exports: list[bytes] = []

    async def export(batch: Batch) -> None:
        exports.append(batch.data)
        await gate.wait()

    async def run() -> None:
        q = _queue(tmp_path, export, num_consumers=1,
                   batch={"flush_timeout": "1s", "min_size": 4, "max_size": 12})
        await q.start()
        await q.put(Signal.TRACES, 4, b"a")  # ready at once (min_size), taken, stuck
        await _wait(lambda: exports == [b"a"])
        for x in (b"b", b"c", b"d", b"e", b"f"):  # each ready at once too; all wait
            await q.put(Signal.TRACES, 4, x)
        gate.set()
        await _wait(lambda: q.batches == 0)
        await q.shutdown()
    asyncio.run(run())
    assert exports == [b"a", b"bcd", b"ef"]


def test_the_dead_letter_directory_keeps_the_newest_batches_within_its_limit(
        tmp_path: Path) -> None:
    """A stream of refused batches must not fill the disk the queue's log needs: beyond
    dead_letter_limit_mib the oldest batches are deleted, also those of an earlier run."""
    t = SelfTelemetry()

    async def refusing(batch: Batch) -> None:
        raise PermanentError("ClickHouse rejected the logs: Code: 27. CANNOT_PARSE_INPUT")

    async def refuse(count: int, first: int) -> None:
        q = _queue(tmp_path, refusing, t, num_consumers=1, dead_letter_limit_mib=1)
        await q.start()
        for i in range(first, first + count):  # one at a time: the order is the age
            await q.put(Signal.LOGS, 1, bytes([i]) * 300_000)
            await _wait(lambda: q.batches == 0)
        await q.shutdown()

    def kept() -> list[int]:
        letters = sorted((tmp_path / "dead_letter").glob("*.json"))
        assert len(list((tmp_path / "dead_letter").glob("*.pb"))) == len(letters)
        return [(m.with_suffix(".pb")).read_bytes()[0] for m in letters]

    asyncio.run(refuse(3, 0))
    assert kept() == [0, 1, 2]  # 900 kB: within 1 MiB
    asyncio.run(refuse(3, 3))   # a new run counts what the last one left
    assert kept() == [3, 4, 5]
    assert _value(t, "otelgw_exporter_dead_letters_deleted_batches_total",
                  exporter="clickhouse") == 3
    assert _value(t, "otelgw_exporter_dead_lettered_batches_total", exporter="clickhouse",
                  data_type="logs") == 6


def test_batches_waiting_for_the_store_sync_keep_their_place_in_the_queue(
        tmp_path: Path) -> None:
    """Exported batches stay in the log until the store is synced; while it cannot be, they
    count against queue_size, so the queue refuses clients instead of the log filling the
    disk. Once the sync goes through they leave."""
    import threading

    release = threading.Event()
    exported: list[bytes] = []

    def store_sync() -> None:
        if not release.wait(10):
            raise OSError("the store cannot be synced")

    async def export(batch: Batch) -> None:
        exported.append(batch.data)

    async def run() -> None:
        settings = QueueSettings(num_consumers=1, drain_timeout=2, queue_size=3)
        q = DurableQueue("clickhouse", tmp_path, settings, FAST, export, store_sync=store_sync)
        await q.start()
        for i in range(3):
            await q.put(Signal.LOGS, 1, b"batch-%d" % i)
        await _wait(lambda: len(exported) == 3)
        with pytest.raises(RefusedError):
            await q.put(Signal.LOGS, 1, b"one too many")
        release.set()
        await _wait(lambda: q.batches == 0)
        await q.put(Signal.LOGS, 1, b"room again")
        await q.shutdown()
    asyncio.run(run())
    assert exported == [b"batch-0", b"batch-1", b"batch-2", b"room again"]


@pytest.mark.parametrize("fsync", ["batch", "never"])
def test_each_group_commit_of_the_log_is_timed(tmp_path: Path, fsync: str) -> None:
    # what an acknowledgement waits for (the log's write and fdatasync) is a histogram per
    # exporter: a slow disk shows there before it shows as client latency
    t = SelfTelemetry()
    name = "otelgw_exporter_queue_commit_duration_seconds"

    gate = asyncio.Event()

    async def held(batch: Batch) -> None:
        await gate.wait()  # the batches stay in the log: its acks add no commits meanwhile

    async def run() -> None:
        q = _queue(tmp_path, held, t, fsync=fsync)
        await q.start()
        try:
            for i in range(5):  # one after the other: five acknowledgements, five commits
                await q.put(Signal.LOGS, 3, b"r%d" % i)
            commits = _value(t, f"{name}_count", exporter="clickhouse")
            assert commits == 5
            assert _value(t, f"{name}_sum", exporter="clickhouse") > 0
            assert _value(t, f"{name}_bucket", exporter="clickhouse", le="+Inf") == commits
        finally:
            gate.set()
            await q.shutdown()

    asyncio.run(run())


def test_the_mount_of_a_path_is_the_filesystem_it_is_on(tmp_path: Path) -> None:
    # against the kernel's own answer: the mount point found is on the path's device
    mount = mount_of(tmp_path)
    assert mount is not None
    assert os.stat(mount.point).st_dev == os.stat(tmp_path).st_dev
    assert "rw" in mount.options
    if os.path.ismount("/dev/shm"):
        shm = mount_of(Path("/dev/shm") / "a" / "b")  # need not exist
        assert shm is not None and (shm.point, shm.fstype) == ("/dev/shm", "tmpfs")


@pytest.mark.parametrize(("options", "fsync", "warned"), [
    ("rw,relatime,discard", "batch", True),
    ("rw,relatime,nodiscard", "batch", False),
    ("rw,relatime", "always", False),
    ("rw,relatime,discard", "never", False),  # no fsync: acknowledgements do not wait on it
])
def test_a_queue_on_a_filesystem_with_online_discard_is_warned_about(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        options: str, fsync: str, warned: bool) -> None:
    # the mount table is the kernel's; only this filesystem's options are made up here
    real = psutil.disk_partitions(all=True)
    point = mount_of(tmp_path)
    assert point is not None
    monkeypatch.setattr(psutil, "disk_partitions", lambda all=False: [
        *real, real[0]._replace(device="/dev/test", mountpoint=point.point, fstype="ext4",
                                opts=options)])

    async def done(batch: Batch) -> None:
        pass

    async def run() -> None:
        q = _queue(tmp_path, done, fsync=fsync)
        await q.start()
        await q.shutdown()

    with caplog.at_level("WARNING", logger="gateway.queue.durable"):
        asyncio.run(run())
    said = [r.getMessage() for r in caplog.records if "discard" in r.getMessage()]
    assert bool(said) == warned
    if warned:
        assert str(tmp_path) in said[0] and "nodiscard" in said[0] and "fstrim" in said[0]
