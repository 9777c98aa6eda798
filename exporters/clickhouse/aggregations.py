"""Opt-in pre-aggregations, created with the schema; the raw tables stay the source of truth.

Each one is an AggregatingMergeTree table, a materialized view that fills it from the rows
inserted into a target table (otel_traces, otel_metrics_sum; never the Null ingest tables, so
rows inserted by any writer count), and a plain view that users query.

Span latency per minute (`<traces>_latency_1m`): per (cluster_id, ServiceName, SpanName,
SpanKind, minute) the span count, the error count (StatusCode 'Error'), the sum of Duration and
a DDSketch of Duration (`quantilesDD` with 1 % relative accuracy) for p50/p90/p95/p99.
DDSketch rather than `quantiles` (a reservoir of up to 8192 values: 64 KiB per state from 8192
spans on, and a random sample once merged) or `quantilesTDigest` (as small, but its error is in
rank, so a tail quantile can be far off in value): a DDSketch state stays small (measured on
chDB 26.9 with log-normal durations: 2.8 KB for 10^4 spans, 3.4 KB for 10^6; TDigest 3.4 / 5.8
KB), merging states is lossless (the sketch of the union), and every quantile is within 1 % of
an actual span duration whatever the distribution: the guarantee a latency SLO needs.
Service + span name + kind is the grain of APM operation views (the raw table is ordered by
service and span name too); a per-service figure merges the sketches over span names.

Linkerd request and error rate per 5 minutes (`<metrics_sum>_linkerd_response_5m`), from the
proxy's cumulative `response_total` counter (`response` when the receiver's
`trim_metric_suffixes` is on) as the prometheus receiver stores it: namespace from the
`namespace` label (the Linkerd scrape config's relabeling) or the resource's
k8s.namespace.name; workload from the `deployment`, `statefulset` or `daemonset` label;
`direction` (inbound = requests the workload served) and `classification` (success|failure).
A materialized view sees only the inserted block, so it cannot subtract consecutive samples;
instead it keeps, per 5-minute bucket, series and run (StartTimeUnix: the receiver starts a new
run when the value goes down), the first and last value (argMin/argMax by TimeUnix). The view
then takes per series, in time order, increase = last − previous row's last, or the row's own
last − first for the series' first row, or last when the row starts lower than the previous
row ended (a counter reset: the new run counted from 0, as Prometheus' increase() does). The
sum over buckets is the exact increase between the first and the last sample, with nothing
lost at bucket boundaries; a bucket's increase is what happened between the last sample before
it and its own last sample (no extrapolation). RequestsPerSecond = Requests / 300 (the bucket
still being filled shows a partial figure); ErrorRate = Failures / Requests (NULL with no
requests). The view computes over the whole table; for a time range on a large table filter the
state table first (README "Pre-aggregations").

A changed definition in a later otelgw release needs new object names: `IF NOT EXISTS` keeps
existing objects as they are.
"""

from __future__ import annotations

from pydantic import Field

from exporters.clickhouse.schema import SchemaOptions, quote, ttl_expr
from gateway.config.types import ComponentConfig
from gateway.errors import ConfigError

QUANTILES = (0.5, 0.9, 0.95, 0.99)
DD_ACCURACY = 0.01
BUCKET_SECONDS = 300
_DD = f"quantilesDD({DD_ACCURACY}, {', '.join(map(str, QUANTILES))})"
_AGGREGATING = {"MergeTree": "AggregatingMergeTree",
                "ReplicatedMergeTree": "ReplicatedAggregatingMergeTree",
                "SharedMergeTree": "SharedAggregatingMergeTree"}


class AggregationsConfig(ComponentConfig):
    span_latency: bool = Field(False, description=(
        "Per minute and (cluster_id, ServiceName, SpanName, SpanKind): span count, error count "
        "and p50/p90/p95/p99 of Duration (DDSketch, 1 % relative accuracy), filled from "
        "otel_traces. Query the view `<traces table>_latency_1m` (columns Count, Errors, "
        "ErrorRate, DurationAvg, DurationP50 … DurationP99, in ns); its state table is "
        "`<traces table>_latency_1m_state`."))
    linkerd_response_rate: bool = Field(False, description=(
        "Per 5 minutes and (cluster_id, namespace, workload, direction): requests, failures, "
        "requests per second and error rate from the Linkerd proxy's cumulative "
        "`response_total` counter (resets handled), filled from otel_metrics_sum. Query the "
        "view `<metrics sum table>_linkerd_response_5m`; its state table is "
        "`<metrics sum table>_linkerd_response_5m_state`."))

    @property
    def enabled(self) -> bool:
        return self.span_latency or self.linkerd_response_rate


def _name(o: SchemaOptions, name: str) -> str:
    return f"{quote(o.database)}.{quote(name)}"


def _create(kind: str, o: SchemaOptions, name: str) -> str:
    return " ".join(p for p in (f"CREATE {kind} IF NOT EXISTS {_name(o, name)}", o.on_cluster)
                    if p)


def aggregating_engine(engine: str) -> str | None:
    """`MergeTree()` → `AggregatingMergeTree()`, the parameters kept (Replicated…, Shared…);
    None for an engine that has no aggregating variant."""
    family, paren, params = engine.partition("(")
    aggregating = _AGGREGATING.get(family.strip())
    return None if aggregating is None else f"{aggregating}{paren or '('}{params or ')'}"


def _engine(o: SchemaOptions) -> str:
    engine = aggregating_engine(o.engine)
    if engine is None:
        raise ConfigError([f"exporters::clickhouse::aggregations: pre-aggregations need a "
                           f"MergeTree, ReplicatedMergeTree or SharedMergeTree table_engine, "
                           f"not {o.engine.partition('(')[0].strip()!r}"])
    return engine


def _state_table(o: SchemaOptions, name: str, columns: list[str], order_by: str) -> list[str]:
    """The state table where the rows are stored (`<name>_local` on every shard when
    distributed) and, on a distributed layout, the Distributed table `<name>` over it: each
    shard aggregates the rows it stores, and reading through `<name>` merges every shard's."""
    clauses = [f"ENGINE = {o.local_engine(_engine(o))}", "PARTITION BY toDate(Timestamp)",
               f"ORDER BY ({order_by})"]
    if ttl := ttl_expr(o.ttl_seconds, "Timestamp"):
        clauses.append(ttl)
    body = ",\n    ".join(columns)
    table = f"{_create('TABLE', o, o.local(name))} (\n    {body}\n)\n" + "\n".join(clauses)
    return [table, *o.distributed_table_ddl(name)]


def span_latency_ddl(o: SchemaOptions) -> list[str]:
    base = f"{o.name('traces')}_latency_1m"
    keys = "cluster_id, ServiceName, SpanName, SpanKind, Timestamp"
    table = _state_table(o, f"{base}_state", [
        "Timestamp DateTime CODEC(Delta, ZSTD(1))",
        "cluster_id LowCardinality(String)", "ServiceName LowCardinality(String)",
        "SpanName LowCardinality(String)", "SpanKind LowCardinality(String)",
        "Count SimpleAggregateFunction(sum, UInt64)",
        "Errors SimpleAggregateFunction(sum, UInt64)",
        "DurationSum SimpleAggregateFunction(sum, UInt64)",
        f"DurationQuantiles AggregateFunction({_DD}, UInt64)"], keys)
    mv = (f"{_create('MATERIALIZED VIEW', o, base + '_mv')}\n"
          f"TO {_name(o, o.local(base + '_state'))}\n"
          f"AS SELECT toStartOfMinute(Timestamp) AS Timestamp, cluster_id, ServiceName, "
          f"SpanName, SpanKind, count() AS Count, countIf(StatusCode = 'Error') AS Errors, "
          f"sum(Duration) AS DurationSum, {_DD.replace('(', 'State(', 1)}(Duration) AS "
          f"DurationQuantiles\nFROM {o.storage('traces')}\nGROUP BY {keys}")
    picks = ", ".join(f"q[{i + 1}] AS DurationP{round(p * 100)}" for i, p in enumerate(QUANTILES))
    merged = (f"SELECT {keys}, sum(Count) AS n, sum(Errors) AS e, sum(DurationSum) AS d, "
              f"{_DD.replace('(', 'Merge(', 1)}(DurationQuantiles) AS q\n"
              f"FROM {_name(o, base + '_state')}\nGROUP BY {keys}")
    view = (f"{_create('VIEW', o, base)}\nAS SELECT {keys}, n AS Count, e AS Errors, "
            f"e / n AS ErrorRate, d / n AS DurationAvg, {picks}\nFROM ({merged})")
    return [*table, mv, view]


# the series' namespace and workload as Linkerd's Prometheus scrape config labels them
_NAMESPACE = ("if(Attributes['namespace'] != '', Attributes['namespace'], "
              "ResourceAttributes['k8s.namespace.name'])")
_WORKLOAD = ("multiIf(Attributes['deployment'] != '', Attributes['deployment'], "
             "Attributes['statefulset'] != '', Attributes['statefulset'], "
             "Attributes['daemonset'])")


def linkerd_response_ddl(o: SchemaOptions) -> list[str]:
    base = f"{o.name('metrics_sum')}_linkerd_response_5m"
    dims = "cluster_id, namespace, workload, direction"
    keys = f"{dims}, Timestamp, classification, SeriesId, StartTimeUnix"
    table = _state_table(o, f"{base}_state", [
        "Timestamp DateTime CODEC(Delta, ZSTD(1))",
        "cluster_id LowCardinality(String)", "namespace LowCardinality(String)",
        "workload LowCardinality(String)", "direction LowCardinality(String)",
        "classification LowCardinality(String)", "SeriesId UInt64",
        "StartTimeUnix DateTime64(9)",
        "First AggregateFunction(argMin, Float64, DateTime64(9))",
        "Last AggregateFunction(argMax, Float64, DateTime64(9))"], keys)
    mv = (f"{_create('MATERIALIZED VIEW', o, base + '_mv')}\n"
          f"TO {_name(o, o.local(base + '_state'))}\n"
          f"AS SELECT toStartOfFiveMinutes(TimeUnix) AS Timestamp, cluster_id, "
          f"{_NAMESPACE} AS namespace, {_WORKLOAD} AS workload, "
          f"Attributes['direction'] AS direction, "
          f"Attributes['classification'] AS classification, "
          f"cityHash64(ServiceName, ResourceAttributes, Attributes) AS SeriesId, StartTimeUnix, "
          f"argMinState(Value, TimeUnix) AS First, argMaxState(Value, TimeUnix) AS Last\n"
          f"FROM {o.storage('metrics_sum')}\n"
          # stale markers (flag NoRecordedValue) carry NaN, not a count
          f"WHERE MetricName IN ('response_total', 'response') AND AggregationTemporality = 2 "
          f"AND bitAnd(Flags, 1) = 0 AND isFinite(Value) AND mapContains(Attributes, "
          f"'classification')\nGROUP BY {keys}")
    runs = (f"SELECT {keys}, argMinMerge(First) AS first, argMaxMerge(Last) AS last\n"
            f"FROM {_name(o, base + '_state')}\nGROUP BY {keys}")
    # the first row of a series has no previous row: NaN (no value of `last` is NaN)
    increases = (
        f"SELECT {dims}, Timestamp, classification, multiIf(isNaN(previous), last - first, "
        f"first >= previous, last - previous, last) AS increase\nFROM (SELECT *, "
        f"lagInFrame(last, 1, nan) OVER (PARTITION BY SeriesId ORDER BY Timestamp, "
        f"StartTimeUnix ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS previous\n"
        f"FROM ({runs}))")
    view = (f"{_create('VIEW', o, base)}\nAS SELECT Timestamp, {dims}, "
            f"sum(increase) AS Requests, sumIf(increase, classification = 'failure') AS "
            f"Failures, Requests / {BUCKET_SECONDS} AS RequestsPerSecond, "
            f"Failures / nullIf(Requests, 0) AS ErrorRate\nFROM ({increases})\n"
            f"GROUP BY Timestamp, {dims}")
    return [*table, mv, view]


def aggregation_ddl(o: SchemaOptions, cfg: AggregationsConfig) -> list[str]:
    """The statements of the enabled pre-aggregations, to run after schema_ddl (tables before
    the views that read them); none by default."""
    stmts = []
    if cfg.span_latency:
        stmts += span_latency_ddl(o)
    if cfg.linkerd_response_rate:
        stmts += linkerd_response_ddl(o)
    return stmts
