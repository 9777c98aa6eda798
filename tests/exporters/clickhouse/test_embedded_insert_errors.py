"""An INSERT the embedded engine could not store must fail, never count as stored.

chDB 26.9's streaming insert (`send_insert … finish()`) reports success when the INSERT fails
after its input was read — a CHECK constraint, an exception in a materialized view, a shard
that is down: the rows are not stored and no error is raised. The sending queue would then drop
a batch it never stored. These tests hold the engine to the server's behaviour."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from exporters.clickhouse.config import ClickHouseConfig
from exporters.clickhouse.engines import EngineError, embedded
from exporters.clickhouse.engines.embedded import EmbeddedEngine
from exporters.clickhouse.exporter import ClickHouseExporter
from gateway.component import ComponentID, Host
from gateway.errors import PermanentError
from gateway.payload import Payload
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry
from tests import payloads

pytestmark = pytest.mark.timeout(60)


def test_failure_after_the_input_was_read_raises(tmp_path: Path) -> None:
    engine = EmbeddedEngine(str(tmp_path / "store"), insert_connections=1)
    try:
        engine.command("CREATE TABLE t (k String, CONSTRAINT c CHECK k != 'bad') "
                       "ENGINE = MergeTree ORDER BY k")
        with pytest.raises(EngineError, match="VIOLATED_CONSTRAINT|violated"):
            engine.insert("INSERT INTO t", b"bad\n", "TSV", {})
        engine.insert("INSERT INTO t", b"good\n", "TSV", {"insert_deduplication_token": "a'b"})
        assert engine.query("SELECT groupArray(k) FROM t", "TSV") == b"['good']\n"
    finally:
        engine.close()


def test_a_failing_materialized_view_fails_the_export(tmp_path: Path) -> None:
    """A user's view on otel_traces that throws: the export fails (the batch stays to be
    retried) instead of being acknowledged as stored."""
    async def run() -> None:
        ex = ClickHouseExporter(ComponentID("clickhouse"), ClickHouseConfig.model_validate(
            {"path": str(tmp_path / "store"), "sending_queue": {"enabled": False}}))
        await ex.start(Host(telemetry=SelfTelemetry()))
        try:
            assert ex.engine is not None
            ex.engine.command("CREATE TABLE sink (n UInt64) ENGINE = Null")
            ex.engine.command("CREATE MATERIALIZED VIEW boom TO sink AS SELECT "
                              "throwIf(SpanName != '', 'view failed') AS n FROM otel_traces")
            request = payloads.traces(seed=1, run="boom")
            with pytest.raises(PermanentError, match="view failed"):
                await ex.consume(Payload.from_message(Signal.TRACES, request))
            # views are not atomic: what the failed INSERT wrote before the view threw stays
            before = int(ex.engine.query("SELECT count() FROM otel_traces", "TSV"))
            ex.engine.command("DROP VIEW boom")
            await ex.consume(Payload.from_message(Signal.TRACES, request))
            after = int(ex.engine.query("SELECT count() FROM otel_traces", "TSV"))
            assert after - before == sum(len(ss.spans) for rs in request.resource_spans
                                         for ss in rs.scope_spans)
        finally:
            await ex.shutdown()

    asyncio.run(run())


@pytest.mark.parametrize("memfd", [True, False], ids=["memfd", "files"])
def test_engines_on_one_path_stage_their_inserts_apart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memfd: bool) -> None:
    """Two exporters may share a `path`: a staging file shared between them could be rewritten by
    one between the other's write and its INSERT (one batch acknowledged but never stored,
    another stored twice). On Linux each connection stages in a memfd, which nothing else can
    reach and no sync writes to the disk; elsewhere in files of a directory per engine.
    Directories of processes that no longer run (a crash) are cleaned up either way."""
    if memfd and embedded._memfd("probe") is None:
        pytest.skip("this system has no memfd_create or no /proc/self/fd")
    if not memfd:
        monkeypatch.setattr(embedded, "_memfd", lambda name: None)
    stale = tmp_path / "store" / ".inserts" / "999999999-gone"
    stale.mkdir(parents=True)
    (stale / "0.in").write_bytes(b"x" * 1000)
    a = EmbeddedEngine(str(tmp_path / "store"), insert_connections=2)
    b = EmbeddedEngine(str(tmp_path / "store"), insert_connections=2)
    try:
        assert not stale.exists()
        a.command("CREATE TABLE t (k String) ENGINE = MergeTree ORDER BY k")
        # a long input then a short one: the short one must not carry the long one's tail
        for i in range(20):
            (a if i % 2 else b).insert("INSERT INTO t", f"{i}\n".encode() * (1000 if i < 2 else 1),
                                       "TSV", {})
        assert a.query("SELECT count(), uniqExact(k) FROM t", "TSV") == b"2018\t20\n"
        dirs = sorted(p.name for p in (tmp_path / "store" / ".inserts").iterdir())
        if memfd:
            assert dirs == []
            assert all(st.path.stat().st_size == 0 for st in a._stages + b._stages)  # emptied
        else:
            assert len(dirs) == 2 and all(d.startswith(f"{os.getpid()}-") for d in dirs)
    finally:
        a.close()
        b.close()
    assert list((tmp_path / "store" / ".inserts").iterdir()) == []
