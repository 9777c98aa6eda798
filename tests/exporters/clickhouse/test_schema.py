"""The created tables are the contrib ClickHouse exporter's (v0.129.0), column for column.

The expected schema below is the release's DDL as ClickHouse reports it back (system.columns,
system.tables, system.data_skipping_indices), written out independently of exporters/clickhouse/
schema.py so that a change there that breaks compatibility fails here.
"""

from __future__ import annotations

import pytest

from loadtests.gatewayproc import Gateway

Z, D8, D4, D1 = "CODEC(ZSTD(1))", "CODEC(Delta(8), ZSTD(1))", "CODEC(Delta(4), ZSTD(1))", \
    "CODEC(Delta(1), ZSTD(1))"
MAP = "Map(LowCardinality(String), String)"
LC = "LowCardinality(String)"

TRACES = [
    ("Timestamp", "DateTime64(9)", D8), ("TraceId", "String", Z), ("SpanId", "String", Z),
    ("ParentSpanId", "String", Z), ("TraceState", "String", Z), ("SpanName", LC, Z),
    ("SpanKind", LC, Z), ("ServiceName", LC, Z), ("ResourceAttributes", MAP, Z),
    ("ScopeName", "String", Z), ("ScopeVersion", "String", Z), ("SpanAttributes", MAP, Z),
    ("Duration", "UInt64", Z), ("StatusCode", LC, Z), ("StatusMessage", "String", Z),
    ("Events.Timestamp", "Array(DateTime64(9))", Z), ("Events.Name", f"Array({LC})", Z),
    ("Events.Attributes", f"Array({MAP})", Z), ("Links.TraceId", "Array(String)", Z),
    ("Links.SpanId", "Array(String)", Z), ("Links.TraceState", "Array(String)", Z),
    ("Links.Attributes", f"Array({MAP})", Z),
]
TRACE_ID_TS = [("TraceId", "String", Z), ("Start", "DateTime", D4), ("End", "DateTime", D4)]
LOGS = [
    ("Timestamp", "DateTime64(9)", D8), ("TimestampTime", "DateTime", ""),
    ("TraceId", "String", Z), ("SpanId", "String", Z), ("TraceFlags", "UInt8", ""),
    ("SeverityText", LC, Z), ("SeverityNumber", "UInt8", ""), ("ServiceName", LC, Z),
    ("Body", "String", Z), ("ResourceSchemaUrl", LC, Z), ("ResourceAttributes", MAP, Z),
    ("ScopeSchemaUrl", LC, Z), ("ScopeName", "String", Z), ("ScopeVersion", LC, Z),
    ("ScopeAttributes", MAP, Z), ("LogAttributes", MAP, Z),
]
METRIC_HEAD = [
    ("ResourceAttributes", MAP, Z), ("ResourceSchemaUrl", "String", Z), ("ScopeName", "String", Z),
    ("ScopeVersion", "String", Z), ("ScopeAttributes", MAP, Z),
    ("ScopeDroppedAttrCount", "UInt32", Z), ("ScopeSchemaUrl", "String", Z),
    ("ServiceName", LC, Z), ("MetricName", "String", Z), ("MetricDescription", "String", Z),
    ("MetricUnit", "String", Z), ("Attributes", MAP, Z), ("StartTimeUnix", "DateTime64(9)", D8),
    ("TimeUnix", "DateTime64(9)", D8),
]
EXEMPLARS = [
    ("Exemplars.FilteredAttributes", f"Array({MAP})", Z),
    ("Exemplars.TimeUnix", "Array(DateTime64(9))", Z), ("Exemplars.Value", "Array(Float64)", Z),
    ("Exemplars.SpanId", "Array(String)", Z), ("Exemplars.TraceId", "Array(String)", Z),
]
MIN_MAX_TEMP = [("Min", "Float64", Z), ("Max", "Float64", Z),
                ("AggregationTemporality", "Int32", Z)]
COUNT_SUM = [("Count", "UInt64", D8), ("Sum", "Float64", Z)]
GAUGE = [*METRIC_HEAD, ("Value", "Float64", Z), ("Flags", "UInt32", Z), *EXEMPLARS]
SUM = [*GAUGE, ("AggregationTemporality", "Int32", Z), ("IsMonotonic", "Bool", D1)]
HISTOGRAM = [*METRIC_HEAD, *COUNT_SUM, ("BucketCounts", "Array(UInt64)", Z),
             ("ExplicitBounds", "Array(Float64)", Z), *EXEMPLARS, ("Flags", "UInt32", Z),
             *MIN_MAX_TEMP]
EXP_HISTOGRAM = [*METRIC_HEAD, *COUNT_SUM, ("Scale", "Int32", Z), ("ZeroCount", "UInt64", Z),
                 ("PositiveOffset", "Int32", Z), ("PositiveBucketCounts", "Array(UInt64)", Z),
                 ("NegativeOffset", "Int32", Z), ("NegativeBucketCounts", "Array(UInt64)", Z),
                 *EXEMPLARS, ("Flags", "UInt32", Z), *MIN_MAX_TEMP]
SUMMARY = [*METRIC_HEAD, *COUNT_SUM, ("ValueAtQuantiles.Quantile", "Array(Float64)", Z),
           ("ValueAtQuantiles.Value", "Array(Float64)", Z), ("Flags", "UInt32", Z)]

# otelgw adds a deduplication window (retried inserts are stored once); the rest is contrib's
SETTINGS = ("SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, "
            "non_replicated_deduplication_window = 1000")
METRICS_ENGINE = ("MergeTree PARTITION BY toDate(TimeUnix) ORDER BY (ServiceName, MetricName, "
                  f"Attributes, toUnixTimestamp64Nano(TimeUnix)) {SETTINGS}")
BF = "bloom_filter(0.01)"
RES_IDX = [("idx_res_attr_key", BF, "mapKeys(ResourceAttributes)", 1),
           ("idx_res_attr_value", BF, "mapValues(ResourceAttributes)", 1)]
SCOPE_IDX = [("idx_scope_attr_key", BF, "mapKeys(ScopeAttributes)", 1),
             ("idx_scope_attr_value", BF, "mapValues(ScopeAttributes)", 1)]
METRIC_IDX = [*RES_IDX, *SCOPE_IDX, ("idx_attr_key", BF, "mapKeys(Attributes)", 1),
              ("idx_attr_value", BF, "mapValues(Attributes)", 1)]

EXPECTED = {
    "otel_traces": (TRACES, "MergeTree PARTITION BY toDate(Timestamp) ORDER BY (ServiceName, "
                    f"SpanName, toDateTime(Timestamp)) {SETTINGS}",
                    [("idx_trace_id", "bloom_filter(0.001)", "TraceId", 1), *RES_IDX,
                     ("idx_span_attr_key", BF, "mapKeys(SpanAttributes)", 1),
                     ("idx_span_attr_value", BF, "mapValues(SpanAttributes)", 1),
                     ("idx_duration", "minmax", "Duration", 1)]),
    "otel_traces_trace_id_ts": (TRACE_ID_TS, "MergeTree PARTITION BY toDate(Start) ORDER BY "
                                f"(TraceId, Start) {SETTINGS}",
                                [("idx_trace_id", BF, "TraceId", 1)]),
    "otel_logs": (LOGS, "MergeTree PARTITION BY toDate(TimestampTime) PRIMARY KEY (ServiceName, "
                  f"TimestampTime) ORDER BY (ServiceName, TimestampTime, Timestamp) {SETTINGS}",
                  [("idx_trace_id", "bloom_filter(0.001)", "TraceId", 1), *RES_IDX, *SCOPE_IDX,
                   ("idx_log_attr_key", BF, "mapKeys(LogAttributes)", 1),
                   ("idx_log_attr_value", BF, "mapValues(LogAttributes)", 1),
                   ("idx_body", "tokenbf_v1(32768, 3, 0)", "Body", 8)]),
    "otel_metrics_gauge": (GAUGE, METRICS_ENGINE, METRIC_IDX),
    "otel_metrics_sum": (SUM, METRICS_ENGINE, METRIC_IDX),
    "otel_metrics_histogram": (HISTOGRAM, METRICS_ENGINE, METRIC_IDX),
    "otel_metrics_exponential_histogram": (EXP_HISTOGRAM, METRICS_ENGINE, METRIC_IDX),
    "otel_metrics_summary": (SUMMARY, METRICS_ENGINE, METRIC_IDX),
}
CORRELATION = {"otel_traces": ["cluster_id", "pod_name", "node_name"],
               "otel_logs": ["cluster_id", "pod_name", "node_name"]}
for _t in EXPECTED:
    if _t.startswith("otel_metrics"):
        CORRELATION[_t] = ["cluster_id", "node_name", "instance"]


@pytest.mark.parametrize("table", sorted(EXPECTED))
def test_table_matches_contrib(gateway: Gateway, table: str) -> None:
    columns, engine, indexes = EXPECTED[table]
    got = gateway.rows(
        "SELECT name, type, compression_codec AS codec, default_kind AS kind FROM system.columns "
        f"WHERE database = 'default' AND table = '{table}' ORDER BY position")
    contrib = [(r["name"], r["type"], r["codec"]) for r in got if r["kind"] != "MATERIALIZED"]
    assert contrib == columns
    # the correlation columns come after the contrib columns and are filled by ClickHouse
    extra = [r["name"] for r in got[len(columns):]]
    assert extra == CORRELATION.get(table, [])
    assert all(r["kind"] == "MATERIALIZED" for r in got[len(columns):])
    (row,) = gateway.rows(f"SELECT engine_full FROM system.tables WHERE database = 'default' "
                          f"AND name = '{table}'")
    assert row["engine_full"] == engine
    idx = gateway.rows("SELECT name, type_full, expr, granularity FROM "
                       f"system.data_skipping_indices WHERE database = 'default' AND "
                       f"table = '{table}'")
    assert [(r["name"], r["type_full"], r["expr"], r["granularity"]) for r in idx] == indexes


def test_trace_id_lookup_view(gateway: Gateway) -> None:
    (row,) = gateway.rows("SELECT as_select FROM system.tables WHERE database = 'default' "
                          "AND name = 'otel_traces_trace_id_ts_mv'")
    sql = row["as_select"]
    for part in ("min(Timestamp) AS Start", "max(Timestamp) AS End", "FROM default.otel_traces",
                 "WHERE TraceId != ''", "GROUP BY TraceId"):
        assert part in sql


def test_timestamp_time_default(gateway: Gateway) -> None:
    (row,) = gateway.rows("SELECT default_expression FROM system.columns WHERE database = "
                          "'default' AND table = 'otel_logs' AND name = 'TimestampTime'")
    assert row["default_expression"] == "toDateTime(Timestamp)"
