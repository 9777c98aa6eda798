"""`exporters.clickhouse` configuration: the contrib exporter's options plus the embedded store."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

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
