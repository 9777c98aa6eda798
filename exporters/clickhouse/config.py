"""`exporters.clickhouse` configuration: the contrib exporter's options plus the embedded store."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator, model_validator

from exporters.clickhouse import schema
from exporters.clickhouse.aggregations import AggregationsConfig, aggregating_engine
from gateway.config.types import ComponentConfig, Duration
from gateway.queue import config as queue_config
from gateway.queue.config import RetrySettings


class TableEngine(ComponentConfig):
    name: str = Field("", description="Table engine; empty means MergeTree.")
    params: str = Field("", description="Engine parameters, written inside the parentheses.")

    def sql(self) -> str:
        return f"{self.name}({self.params})" if self.name else "MergeTree()"


class MetricsTable(ComponentConfig):
    name: str = Field("", description="Table name; empty means the default otel_metrics_<type>.")


class MetricsTables(ComponentConfig):
    gauge: MetricsTable = Field(default_factory=MetricsTable)
    sum: MetricsTable = Field(default_factory=MetricsTable)
    summary: MetricsTable = Field(default_factory=MetricsTable)
    histogram: MetricsTable = Field(default_factory=MetricsTable)
    exponential_histogram: MetricsTable = Field(default_factory=MetricsTable)


# functions whose value differs between two evaluations of the same row
_VOLATILE = re.compile(r"\b(rand\w*|generateUUID\w*|generateULID|generateSnowflakeID\w*|now\w*|"
                       r"today|yesterday|randomString\w*|randomFixedString|rowNumberInAllBlocks|"
                       r"blockNumber)\s*\(", re.IGNORECASE)
_IDENTIFIER = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()")


class ShardingKeys(ComponentConfig):
    """Which shard a row goes to: expressions over the table's columns, evaluated by the
    Distributed table on every INSERT. They must be deterministic: a retried batch carries the
    same insert_deduplication_token, and only when every row goes to the same shard again does
    each shard recognise its part and store it once (with rand() a retry would put rows on other
    shards, where the token drops rows that were never stored)."""

    traces: str = Field("cityHash64(TraceId)", description=(
        "otel_traces and otel_traces_trace_id_ts: over TraceId only, so that a trace's spans "
        "and its lookup row share a shard, and a query by TraceId can skip the other shards "
        "(optimize_skip_unused_shards)."))
    logs: str = Field("cityHash64(TraceId, Timestamp)", description=(
        "otel_logs: records of one trace together, records without a trace spread by time."))
    metrics: str = Field("cityHash64(MetricName, Attributes, ResourceAttributes)", description=(
        "The five otel_metrics_* tables: one time series (metric, attributes, resource) on one "
        "shard, so per-series functions (rate, deltas) need no other shard."))

    @field_validator("traces", "logs", "metrics")
    @classmethod
    def _deterministic(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a sharding key is required (a Distributed table written to by "
                             "more than one shard needs one)")
        if match := _VOLATILE.search(value):
            raise ValueError(f"{match.group(1)}() makes the sharding key non-deterministic: a "
                             "retried insert would send rows to other shards, where "
                             "insert_deduplication_token drops rows that were never stored; "
                             "hash columns instead, e.g. cityHash64(TraceId)")
        return value.strip()

    @field_validator("traces")
    @classmethod
    def _trace_id_only(cls, value: str) -> str:
        others = sorted({m for m in _IDENTIFIER.findall(value) if m != "TraceId"})
        if others:
            raise ValueError(f"may use only the TraceId column, not {', '.join(others)}: the "
                             "same key shards otel_traces_trace_id_ts, which has no other "
                             "column in common")
        return value


class DistributedTables(ComponentConfig):
    enabled: bool = Field(False, description=(
        "Shard the tables over `cluster_name`: the rows of each table live in `<name>"
        "<local_suffix>` on every shard and `<name>` (otel_traces, otel_logs, …) becomes a "
        "Distributed table over them, so readers keep the contrib names. The gateway's ingest "
        "views write to the Distributed tables, which send each row to its shard (sharding_key)."))
    local_suffix: str = Field("_local", min_length=1, description=(
        "Suffix of the tables that store the rows on each shard."))
    sharding_key: ShardingKeys = Field(default_factory=ShardingKeys)
    foreground_insert: bool = Field(True, description=(
        "INSERTs wait until every shard has stored its rows (distributed_foreground_insert), "
        "so a batch leaves the sending queue only once it is stored; false lets the "
        "ClickHouse node that took the INSERT queue the rows on its disk and forward them later."))


class QueueSettings(queue_config.QueueSettings):
    """The exporterhelper's sending queue, on disk; by default in `<path>/queue/<exporter id>`
    (`path` counts in server mode too)."""

    num_consumers: int = Field(2, ge=1, le=64, description=(
        "Concurrent INSERTs (the embedded store opens as many insert connections)."))


class QueryEndpoint(ComponentConfig):
    enabled: bool = Field(False, description="Serve read-only ClickHouse-compatible HTTP queries.")
    endpoint: str = Field("127.0.0.1:8123", description="host:port of the query endpoint.")
    username: str = Field("", description="Basic-auth user required by the endpoint (empty: none).")
    password: SecretStr = Field(SecretStr(""), description="Basic-auth password.")


class ClickHouseConfig(ComponentConfig):
    endpoint: str = Field("", description="http(s)://host:8123 of a ClickHouse server; empty "
                                          "means the embedded store under `path`.")
    path: str = Field("./data", description="Directory of the embedded store.")
    username: str = Field("", description="ClickHouse user (server mode).")
    password: SecretStr = Field(SecretStr(""), description="ClickHouse password (server mode).")
    database: str = Field("default", description="Database of all tables.")
    traces_table_name: str = Field("otel_traces", description="Spans table.")
    logs_table_name: str = Field("otel_logs", description="Log records table.")
    metrics_table_name: str = Field("", description="Deprecated prefix of the metrics tables.")
    metrics_tables: MetricsTables = Field(default_factory=MetricsTables)
    k8s_events_table_name: str = Field("k8s_events", description="Kubernetes events table.")
    ttl: Duration = Field(0.0, description="Data TTL (e.g. 72h); 0 keeps data forever.")
    table_engine: TableEngine = Field(default_factory=TableEngine)
    cluster_name: str = Field("", description="Run DDL ON CLUSTER this cluster.")
    replication: bool | None = Field(None, description=(
        "Create the tables with Replicated engines (`table_engine`, or MergeTree, as "
        "Replicated…MergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}'), "
        "using the macros of each node); needs `cluster_name`. Unset: on when "
        "`distributed.enabled` and `table_engine` names no engine; an engine named "
        "Replicated… in `table_engine` is always used as written."))
    distributed: DistributedTables = Field(default_factory=DistributedTables)
    aggregations: AggregationsConfig = Field(default_factory=AggregationsConfig, description=(
        "Opt-in pre-aggregations, created with the schema and filled by materialized views "
        "from the raw tables (README: Pre-aggregations)."))
    create_schema: bool = Field(True, description="Create database and tables at start.")
    compress: str = Field("lz4", description="HTTP compression to the server ('' or 'none': off).")
    async_insert: bool = Field(True, description="Accepted for compatibility; otelgw's INSERTs "
                                                 "are synchronous: a batch leaves the sending "
                                                 "queue once ClickHouse stored it.")
    connection_params: dict[str, str] = Field(default_factory=dict,
                                              description="Extra ClickHouse settings.")
    timeout: Duration = Field(30.0, description="Timeout of one INSERT.")
    sending_queue: QueueSettings = Field(default_factory=QueueSettings, description=(
        "A request is acknowledged once its batch is in this write-ahead log on disk "
        "(`<path>/queue/<exporter id>` unless `directory` or `storage` says otherwise); "
        "consumers insert it and it leaves the log once ClickHouse stored it."))
    retry_on_failure: RetrySettings = Field(default_factory=RetrySettings, description=(
        "Backoff of failed INSERTs (every attempt carries the batch's "
        "insert_deduplication_token, so a retry of an insert that landed is stored once)."))
    query_endpoint: QueryEndpoint = Field(default_factory=QueryEndpoint)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("endpoint must be http(s)://host:port of the ClickHouse HTTP "
                             "interface (the native tcp:// protocol is not supported)")
        return value

    @model_validator(mode="after")
    def _cluster_options(self) -> ClickHouseConfig:
        needs = [what for what, on in (("distributed.enabled", self.distributed.enabled),
                                       ("replication", self.replication)) if on]
        if needs and not self.cluster_name:
            verb = "needs" if len(needs) == 1 else "need"
            raise ValueError(f"{' and '.join(needs)} {verb} cluster_name (the cluster of "
                             "remote_servers the tables are created on)")
        if self.replication is False and self.table_engine.name.startswith("Replicated"):
            raise ValueError(f"replication is false but table_engine is "
                             f"{self.table_engine.name}: set one of them")
        if self.aggregations.enabled and aggregating_engine(self.table_engine.sql()) is None:
            raise ValueError("aggregations need a MergeTree, ReplicatedMergeTree or "
                             f"SharedMergeTree table_engine, not {self.table_engine.name!r}")
        return self

    def replicated(self) -> bool:
        if self.replication is not None:
            return self.replication
        return self.distributed.enabled and not self.table_engine.name

    def schema_options(self) -> schema.SchemaOptions:
        keys = self.distributed.sharding_key
        metrics = {t.key: keys.metrics for t in schema.METRIC_TABLES}
        return schema.SchemaOptions(
            database=self.database, cluster=self.cluster_name, engine=self.table_engine.sql(),
            ttl_seconds=self.ttl, table_names=self.table_names(), replicated=self.replicated(),
            distributed=self.distributed.enabled, local_suffix=self.distributed.local_suffix,
            sharding_keys={"traces": keys.traces, "traces_trace_id_ts": keys.traces,
                           "logs": keys.logs, **metrics},
            foreground_insert=self.distributed.foreground_insert)

    def table_names(self) -> dict[str, str]:
        prefix = self.metrics_table_name
        names = {"traces": self.traces_table_name, "logs": self.logs_table_name,
                 "traces_trace_id_ts": f"{self.traces_table_name}_trace_id_ts",
                 "k8s_events": self.k8s_events_table_name}
        for kind in ("gauge", "sum", "summary", "histogram", "exponential_histogram"):
            explicit = getattr(self.metrics_tables, kind).name
            names[f"metrics_{kind}"] = explicit or (f"{prefix}_{kind}" if prefix else
                                                    f"otel_metrics_{kind}")
        return names
