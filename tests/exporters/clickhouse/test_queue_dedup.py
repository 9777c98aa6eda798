"""Retries are idempotent: an INSERT repeated with the same `insert_deduplication_token` lands
once in every table the signal's views write (otel_traces and, one view further,
otel_traces_trace_id_ts; otel_logs; the five metrics tables behind the staging view), and a
batch the queue sends again after a restart (its ack was lost) is stored once.

The real exporter on the real engine (chDB), in process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from exporters.clickhouse.config import ClickHouseConfig
from exporters.clickhouse.exporter import ClickHouseExporter, new_token
from gateway.component import ComponentID, Host
from gateway.payload import Payload
from gateway.queue.durable import Batch
from gateway.signals import Signal, count_items
from gateway.telemetry import SelfTelemetry
from tests import payloads

pytestmark = pytest.mark.timeout(60)

TABLES = {
    Signal.TRACES: ["otel_traces", "otel_traces_trace_id_ts"],
    Signal.LOGS: ["otel_logs"],
    Signal.METRICS: [f"otel_metrics_{k}" for k in ("gauge", "sum", "histogram",
                                                   "exponential_histogram", "summary")],
}
REQUEST = {Signal.TRACES: payloads.traces, Signal.LOGS: payloads.logs,
           Signal.METRICS: payloads.metrics}


def _counts(ex: ClickHouseExporter, run: str) -> dict[str, int]:
    assert ex.engine is not None
    out = {}
    for tables in TABLES.values():
        for table in tables:
            where = (f"TraceId IN (SELECT TraceId FROM otel_traces WHERE "
                     f"ResourceAttributes['{payloads.RUN_KEY}'] = '{run}')"
                     if table == "otel_traces_trace_id_ts"
                     else f"ResourceAttributes['{payloads.RUN_KEY}'] = '{run}'")
            out[table] = int(ex.engine.query(f"SELECT count() FROM {table} WHERE {where}", "TSV"))
    return out


async def _exporter(path: Path, **cfg: Any) -> tuple[ClickHouseExporter, SelfTelemetry]:
    t = SelfTelemetry()
    ex = ClickHouseExporter(ComponentID("clickhouse"),
                            ClickHouseConfig.model_validate({"path": str(path), **cfg}))
    await ex.start(Host(telemetry=t))
    return ex, t


def test_the_same_batch_inserted_twice_lands_once(tmp_path: Path) -> None:
    async def run() -> None:
        ex, _ = await _exporter(tmp_path / "store", sending_queue={"enabled": False})
        try:
            for signal, make in REQUEST.items():
                run_id = f"dedup-{signal.value}"
                req = make(7, run_id)
                data = req.SerializeToString()
                batch = Batch(signal, count_items(signal, req), data, new_token())
                await ex._export(batch)
                once = _counts(ex, run_id)
                assert all(once[t] > 0 for t in TABLES[signal]), once
                await ex._export(batch)  # the retry of an insert that did land
                assert _counts(ex, run_id) == once
                # the same bytes as another batch (another token) are stored again
                await ex._export(Batch(signal, batch.items, data, new_token()))
                twice = _counts(ex, run_id)
                assert {t: twice[t] for t in TABLES[signal]} == \
                    {t: 2 * once[t] for t in TABLES[signal]}
        finally:
            await ex.shutdown()
    asyncio.run(run())


def test_a_batch_sent_again_after_a_restart_is_stored_once(tmp_path: Path) -> None:
    """The queue exported the batches, then the process died before their acks reached the
    disk: the next start sends them again, with the tokens stored in the log."""
    run_id = "replayed"
    reqs = {s: make(11, run_id) for s, make in REQUEST.items()}

    async def first() -> dict[str, int]:
        ex, t = await _exporter(tmp_path / "store")
        assert ex.queue is not None
        ex.queue.wal.ack = lambda rec: None  # type: ignore[method-assign]  # acks lost
        for signal, req in reqs.items():
            await ex.consume(Payload.from_message(signal, req))
        while ex.queue.batches:
            await asyncio.sleep(0.05)
        counts = _counts(ex, run_id)
        await ex.shutdown()
        assert t.registry.get_sample_value("otelcol_exporter_sent_spans_total",
                                           {"exporter": "clickhouse"}) > 0
        return counts

    async def second() -> dict[str, int]:
        ex, t = await _exporter(tmp_path / "store")
        assert ex.queue is not None and ex.queue.batches == 3  # all three come back
        while ex.queue.batches:
            await asyncio.sleep(0.05)
        counts = _counts(ex, run_id)
        sent = t.registry.get_sample_value("otelcol_exporter_sent_log_records_total",
                                           {"exporter": "clickhouse"})
        await ex.shutdown()
        assert sent == count_items(Signal.LOGS, reqs[Signal.LOGS])  # inserted again ...
        return counts

    before = asyncio.run(first())
    assert all(n > 0 for n in before.values()), before
    assert asyncio.run(second()) == before  # ... and stored once
    assert not list((tmp_path / "store" / "queue" / "clickhouse").glob("*.wal"))


def test_tables_created_without_a_window_are_reported(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """An older otelgw (or the contrib exporter) created otel_logs: CREATE TABLE IF NOT EXISTS
    keeps it as it is, and the start says how to turn deduplication on."""
    from exporters.clickhouse import schema
    from exporters.clickhouse.engines.embedded import EmbeddedEngine

    store = tmp_path / "store"
    engine = EmbeddedEngine(str(store))
    old = schema.create_table(schema.LOGS, schema.SchemaOptions())
    engine.command(old.replace(f", non_replicated_deduplication_window = {schema.DEDUP_WINDOW}",
                               ""))
    engine.close()

    async def run() -> None:
        ex, _ = await _exporter(store, sending_queue={"enabled": False})
        await ex.shutdown()
    with caplog.at_level("WARNING", logger="exporters.clickhouse.exporter"):
        asyncio.run(run())
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "tables otel_logs keep no deduplication window" in warning
    assert "MODIFY SETTING non_replicated_deduplication_window = 1000" in warning


def test_merged_inserts_that_landed_are_stored_once_after_a_crash(tmp_path: Path) -> None:
    """With `sending_queue::batch` the queue merges batches into one INSERT. The INSERTs landed,
    then the process died before the log recorded it: after the restart all the batches are
    pending at once and would be merged differently (so under another token); the group records
    make the queue repeat the same INSERTs, which ClickHouse drops."""
    run_id = "merged"
    queue = {"batch": {"flush_timeout": "100ms", "min_size": 100_000}}
    waves = [[payloads.traces(seed, run_id) for seed in (1, 2)],
             [payloads.traces(seed, run_id) for seed in (3, 4, 5)]]

    async def first() -> int:
        ex, _ = await _exporter(tmp_path / "store", sending_queue=queue)
        assert ex.queue is not None
        ex.queue.wal.ack = lambda rec, sync=False: None  # type: ignore[method-assign]
        for wave in waves:  # one INSERT per wave: flush_timeout passes between them
            await asyncio.gather(*(ex.consume(Payload.from_message(Signal.TRACES, r))
                                   for r in wave))
            while ex.queue.batches:
                await asyncio.sleep(0.05)
        counts = _counts(ex, run_id)["otel_traces"]
        await ex.shutdown()
        return counts

    async def second() -> int:
        ex, _ = await _exporter(tmp_path / "store", sending_queue=queue)
        assert ex.queue is not None and ex.queue.batches == 5
        assert [len(members) for _, members in ex.queue.wal.groups] == [2, 3]
        while ex.queue.batches:
            await asyncio.sleep(0.05)
        counts = _counts(ex, run_id)["otel_traces"]
        await ex.shutdown()
        return counts

    before = asyncio.run(first())
    assert before == sum(count_items(Signal.TRACES, r) for wave in waves for r in wave)
    assert asyncio.run(second()) == before


def test_a_merged_export_a_view_refused_after_rows_were_stored_is_set_aside_whole(
        tmp_path: Path) -> None:
    """A user's view on otel_traces throws for one span of a merged INSERT. otel_traces has the
    rows of every merged batch by then (views are not atomic), so sending the batches again one
    by one, under new tokens, would store the good ones twice: the export is set aside whole."""
    run_id = "view-refused"
    queue = {"batch": {"flush_timeout": "200ms", "min_size": 100_000}}
    requests = [payloads.traces(seed, run_id) for seed in (1, 2, 3)]
    spans = [s for r in requests for rs in r.resource_spans for ss in rs.scope_spans
             for s in ss.spans]
    for i, span in enumerate(spans):  # a unique name each: a row stored twice shows
        span.name = f"span-{i}"
    spans[len(spans) // 2].name = "poison"

    async def run() -> tuple[int, int, int]:
        ex, _ = await _exporter(tmp_path / "store", sending_queue=queue)
        assert ex.engine is not None and ex.queue is not None
        try:
            ex.engine.command("CREATE TABLE sink (n UInt8) ENGINE = Null")
            ex.engine.command("CREATE MATERIALIZED VIEW boom TO sink AS SELECT "
                              "throwIf(SpanName = 'poison', 'poisoned span') AS n "
                              "FROM otel_traces")
            await asyncio.gather(*(ex.consume(Payload.from_message(Signal.TRACES, r))
                                   for r in requests))
            while ex.queue.batches:
                await asyncio.sleep(0.05)
            rows, names = map(int, ex.engine.query(
                "SELECT count(), uniqExact(SpanName) FROM otel_traces WHERE "
                f"ResourceAttributes['{payloads.RUN_KEY}'] = '{run_id}'", "TSV").split())
        finally:
            await ex.shutdown()
        letters = len(list((tmp_path / "store" / "queue").rglob("dead_letter/*.json")))
        return rows, names, letters

    rows, names, letters = asyncio.run(run())
    assert 0 < rows == names <= len(spans)  # what the merged INSERT stored before the view threw
    assert letters == 3


def test_the_embedded_store_syncs_before_its_batches_leave_the_queue(tmp_path: Path) -> None:
    """Its parts are written without fsync: the queue keeps a batch until a sync of the store
    (test_queue_faults.py shows what that does after a crash); the sync itself runs."""
    async def run() -> None:
        ex, _ = await _exporter(tmp_path / "store", sending_queue={})
        assert ex.queue is not None and ex.engine is not None
        try:
            assert ex.queue._store_sync is not None
            ex.queue._store_sync()
            await ex.consume(Payload.from_message(Signal.LOGS, payloads.logs(1, "sync")))
            while ex.queue.batches:
                await asyncio.sleep(0.05)
        finally:
            await ex.shutdown()
    asyncio.run(run())
    assert _counts_after(tmp_path / "store", "sync") > 0


def _counts_after(path: Path, run_id: str) -> int:
    async def run() -> int:
        ex, _ = await _exporter(path, sending_queue={})
        try:
            assert ex.queue is not None and ex.queue.batches == 0  # nothing left to send
            return _counts(ex, run_id)["otel_logs"]
        finally:
            await ex.shutdown()
    return asyncio.run(run())
