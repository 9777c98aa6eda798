"""The embedded store builds the attribute-map and Body indexes in its merges, not at INSERT
(ingest.EMBEDDED_INSERT_SETTINGS): what a user sees is how many rows a query reads.

The real exporter on the real engine (chDB), in process; rows_read from the JSON output's
statistics."""

from __future__ import annotations

import asyncio
import json

import pytest

from exporters.clickhouse.config import ClickHouseConfig
from exporters.clickhouse.engines import Engine
from exporters.clickhouse.exporter import ClickHouseExporter, new_token
from gateway.component import ComponentID, Host
from gateway.queue.durable import Batch
from gateway.signals import Signal, count_items
from gateway.telemetry import SelfTelemetry
from loadtests import payloads

pytestmark = pytest.mark.timeout(120)

ROWS = 3 * 8192  # three granules (index_granularity 8192) per INSERT


def _read(engine: Engine, sql: str) -> tuple[int, int]:
    """(the query's count(), rows it read)."""
    out = json.loads(engine.query(sql, "JSON"))
    return int(out["data"][0]["c"]), int(out["statistics"]["rows_read"])


def test_attribute_and_body_indexes_are_built_by_the_merge_and_trace_ids_at_insert(tmp_path):
    absent_attr = ("SELECT count() AS c FROM {table} "
                   "WHERE {attrs}['otelgw.absent'] = 'nowhere'")
    by_trace = "SELECT count() AS c FROM {table} WHERE TraceId = '{trace_id}'"
    absent_word = "SELECT count() AS c FROM otel_logs WHERE hasToken(Body, 'otelgwabsentword')"
    tables = {"otel_traces": "SpanAttributes", "otel_logs": "LogAttributes"}

    def check(engine: Engine) -> None:
        for table, attrs in tables.items():
            assert int(engine.query(f"SELECT count() FROM {table}", "TSV")) == 2 * ROWS
            # the TraceId bloom filter is built at INSERT: a lookup by id reads only the
            # granules that may hold the trace, on the fresh parts already
            trace_id = engine.query(f"SELECT TraceId FROM {table} WHERE TraceId != '' "
                                    "LIMIT 1", "TSV").decode().strip()
            count, read = _read(engine, by_trace.format(table=table, trace_id=trace_id))
            assert count >= 1 and read <= 2 * 8192, (table, count, read)
            # the attribute indexes are not: the fresh parts are read whole, the answer is right
            assert _read(engine, absent_attr.format(table=table, attrs=attrs)) == (0, 2 * ROWS)
        assert _read(engine, absent_word) == (0, 2 * ROWS)

        for table in tables:
            engine.command(f"OPTIMIZE TABLE {table} FINAL")
        # the merged parts have them: the same queries skip every granule
        for table, attrs in tables.items():
            assert _read(engine, absent_attr.format(table=table, attrs=attrs)) == (0, 0)
        assert _read(engine, absent_word) == (0, 0)
        # and the rows are all there, once
        for table in tables:
            assert int(engine.query(f"SELECT count() FROM {table}", "TSV")) == 2 * ROWS

    async def run() -> None:
        ex = ClickHouseExporter(ComponentID("clickhouse"), ClickHouseConfig.model_validate(
            {"path": str(tmp_path / "store"), "sending_queue": {"enabled": False}}))
        await ex.start(Host(telemetry=SelfTelemetry()))
        try:
            for seed in (1, 2):  # two parts: the merge has something to merge
                for signal, make in ((Signal.TRACES, payloads.traces),
                                     (Signal.LOGS, payloads.logs)):
                    req = make(ROWS, seed=seed)
                    await ex._export(Batch(signal, count_items(signal, req),
                                           req.SerializeToString(), new_token()))
            assert ex.engine is not None
            check(ex.engine)
        finally:
            await ex.shutdown()

    asyncio.run(run())
