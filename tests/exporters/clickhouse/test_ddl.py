"""DDL options: TTL per table as the contrib exporter writes it, ON CLUSTER, table names."""

from __future__ import annotations

import pytest

from exporters.clickhouse import schema
from exporters.clickhouse.config import ClickHouseConfig
from exporters.clickhouse.ingest import schema_ddl


@pytest.mark.parametrize(("seconds", "expected"), [
    (72 * 3600, "TTL toDateTime(Timestamp) + toIntervalDay(3)"),
    (25 * 3600, "TTL toDateTime(Timestamp) + toIntervalHour(25)"),
    (90 * 60, "TTL toDateTime(Timestamp) + toIntervalMinute(90)"),
    (1.5, "TTL toDateTime(Timestamp) + toIntervalSecond(1)"),
    (0, ""), (-5, ""),
])
def test_ttl_expression(seconds: float, expected: str) -> None:
    assert schema.ttl_expr(seconds, "toDateTime(Timestamp)") == expected


def test_ttl_column_per_table() -> None:
    o = schema.SchemaOptions(ttl_seconds=3 * 86400)
    ttl = {t.key: schema.create_table(t, o) for t in
           (schema.TRACES, schema.TRACE_ID_TS, schema.LOGS, *schema.METRIC_TABLES)}
    assert "TTL toDateTime(Timestamp) + toIntervalDay(3)" in ttl["traces"]
    assert "TTL toDateTime(Start) + toIntervalDay(3)" in ttl["traces_trace_id_ts"]
    assert "TTL TimestampTime + toIntervalDay(3)" in ttl["logs"]
    for t in schema.METRIC_TABLES:
        assert "TTL toDateTime(TimeUnix) + toIntervalDay(3)" in ttl[t.key]
    events = schema.create_table(schema.K8S_EVENTS, o, 30 * 86400)
    assert "TTL toDateTime(timestamp) + toIntervalDay(30)" in events


def test_config_table_names_and_cluster() -> None:
    cfg = ClickHouseConfig.model_validate({
        "database": "otel", "traces_table_name": "spans", "metrics_table_name": "m",
        "metrics_tables": {"gauge": {"name": "gauges"}}, "cluster_name": "prod",
        "ttl": "72h", "table_engine": {"name": "ReplicatedMergeTree"}})
    stmts = schema_ddl(cfg.schema_options())
    text = "\n".join(stmts)
    assert stmts[0] == 'CREATE DATABASE IF NOT EXISTS "otel" ON CLUSTER "prod"'
    assert 'CREATE TABLE IF NOT EXISTS "otel"."spans" ON CLUSTER "prod"' in text
    assert '"otel"."spans_trace_id_ts"' in text and '"otel"."spans_trace_id_ts_mv"' in text
    assert '"otel"."gauges"' in text and '"otel"."m_sum"' in text
    assert "ENGINE = ReplicatedMergeTree()" in text
    assert all("ON CLUSTER" in s for s in stmts if s.startswith("CREATE"))


def test_default_database_is_not_created() -> None:
    stmts = schema_ddl(ClickHouseConfig().schema_options())
    assert not any(s.startswith("CREATE DATABASE") for s in stmts)
