"""Table DDL: the contrib ClickHouse exporter's tables, column for column, plus otelgw's additions.

Pinned release: opentelemetry-collector-contrib **v0.129.0**, exporter/clickhouseexporter
(internal/sqltemplates after the refactor of PR #40536). Same columns in the same order, types,
codecs, indexes, partitioning, ordering, TTL column per table and table settings. The statements are
generated here from data, not copied; tests/exporters/clickhouse/test_schema.py checks the created
tables against the release's schema.

Added on top, after the contrib columns so `SELECT *` and positional readers see the contrib layout:
- correlation columns (`cluster_id`, `pod_name`, `node_name`; `instance` on metrics), MATERIALIZED
  from ResourceAttributes, so ClickHouse fills them and no writer can forget them;
- the `k8s_events` table;
- `non_replicated_deduplication_window` in every table's SETTINGS (plain MergeTree keeps no
  window by default), so a retried INSERT with the same `insert_deduplication_token` is stored
  once (Replicated engines ignore it: they have their own window);
- per signal a Null-engine ingest table that takes the raw OTLP request (ProtobufSingle) and
  materialized views that flatten it into the tables (see flatten.py). Their names carry a hash
  of their definition, so a new otelgw version creates its own and never alters a running one's.

On a cluster (SchemaOptions: `cluster`, `replicated`, `distributed`; docs/scaling.md) the same
tables are created ON CLUSTER, Replicated, and under Distributed tables that keep the contrib
names; with none of these options the statements are exactly the single-node ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

CONTRIB_RELEASE = "v0.129.0"

MAP = "Map(LowCardinality(String), String)"
Z = "CODEC(ZSTD(1))"
DZ = "CODEC(Delta, ZSTD(1))"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    codec: str = ""
    expression: str = ""  # "DEFAULT …" / "MATERIALIZED …"

    def sql(self) -> str:
        return " ".join(p for p in (f"`{self.name}`", self.type, self.expression, self.codec) if p)


@dataclass(frozen=True)
class Table:
    key: str                 # traces, logs, metrics_gauge, …
    columns: list[Column]
    indexes: list[str]
    partition_by: str
    order_by: str
    ttl_column: str
    primary_key: str = ""
    settings: str = "index_granularity=8192, ttl_only_drop_parts = 1"
    extra: list[Column] = field(default_factory=list)  # otelgw additions


# Inserts (blocks per partition) whose tokens a table remembers. A retry comes at most a queue's
# worth of inserts after the original (the sending queue's default is 1000 batches).
DEDUP_WINDOW = 1000


def _idx(name: str, expr: str, kind: str = "bloom_filter(0.01)") -> str:
    return f"INDEX {name} {expr} TYPE {kind} GRANULARITY 1"


_RES_IDX = [_idx("idx_res_attr_key", "mapKeys(ResourceAttributes)"),
            _idx("idx_res_attr_value", "mapValues(ResourceAttributes)")]
_SCOPE_IDX = [_idx("idx_scope_attr_key", "mapKeys(ScopeAttributes)"),
              _idx("idx_scope_attr_value", "mapValues(ScopeAttributes)")]


def literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def resource_attribute(key: str) -> str:
    return f"ResourceAttributes[{literal(key)}]"


CLUSTER_ID = Column("cluster_id", "LowCardinality(String)", Z,
                    f"MATERIALIZED if({resource_attribute('k8s.cluster.name')} != '', "
                    f"{resource_attribute('k8s.cluster.name')}, "
                    f"{resource_attribute('cluster.name')})")
POD_NAME = Column("pod_name", "LowCardinality(String)", Z,
                  f"MATERIALIZED {resource_attribute('k8s.pod.name')}")
NODE_NAME = Column("node_name", "LowCardinality(String)", Z,
                   f"MATERIALIZED {resource_attribute('k8s.node.name')}")
INSTANCE = Column("instance", "LowCardinality(String)", Z,
                  f"MATERIALIZED {resource_attribute('service.instance.id')}")

TRACES = Table(
    key="traces",
    columns=[
        Column("Timestamp", "DateTime64(9)", DZ),
        Column("TraceId", "String", Z), Column("SpanId", "String", Z),
        Column("ParentSpanId", "String", Z), Column("TraceState", "String", Z),
        Column("SpanName", "LowCardinality(String)", Z),
        Column("SpanKind", "LowCardinality(String)", Z),
        Column("ServiceName", "LowCardinality(String)", Z),
        Column("ResourceAttributes", MAP, Z),
        Column("ScopeName", "String", Z), Column("ScopeVersion", "String", Z),
        Column("SpanAttributes", MAP, Z),
        Column("Duration", "UInt64", Z),
        Column("StatusCode", "LowCardinality(String)", Z),
        Column("StatusMessage", "String", Z),
        Column("Events", f"Nested(Timestamp DateTime64(9), Name LowCardinality(String), "
                         f"Attributes {MAP})", Z),
        Column("Links", f"Nested(TraceId String, SpanId String, TraceState String, "
                        f"Attributes {MAP})", Z),
    ],
    indexes=[_idx("idx_trace_id", "TraceId", "bloom_filter(0.001)"), *_RES_IDX,
             _idx("idx_span_attr_key", "mapKeys(SpanAttributes)"),
             _idx("idx_span_attr_value", "mapValues(SpanAttributes)"),
             _idx("idx_duration", "Duration", "minmax")],
    partition_by="toDate(Timestamp)",
    order_by="(ServiceName, SpanName, toDateTime(Timestamp))",
    ttl_column="toDateTime(Timestamp)",
    extra=[CLUSTER_ID, POD_NAME, NODE_NAME],
)

TRACE_ID_TS = Table(
    key="traces_trace_id_ts",
    columns=[Column("TraceId", "String", Z), Column("Start", "DateTime", DZ),
             Column("End", "DateTime", DZ)],
    indexes=[_idx("idx_trace_id", "TraceId")],
    partition_by="toDate(Start)",
    order_by="(TraceId, Start)",
    ttl_column="toDateTime(Start)",
)

LOGS = Table(
    key="logs",
    columns=[
        Column("Timestamp", "DateTime64(9)", "CODEC(Delta(8), ZSTD(1))"),
        Column("TimestampTime", "DateTime", "", "DEFAULT toDateTime(Timestamp)"),
        Column("TraceId", "String", Z), Column("SpanId", "String", Z),
        Column("TraceFlags", "UInt8"),
        Column("SeverityText", "LowCardinality(String)", Z),
        Column("SeverityNumber", "UInt8"),
        Column("ServiceName", "LowCardinality(String)", Z),
        Column("Body", "String", Z),
        Column("ResourceSchemaUrl", "LowCardinality(String)", Z),
        Column("ResourceAttributes", MAP, Z),
        Column("ScopeSchemaUrl", "LowCardinality(String)", Z),
        Column("ScopeName", "String", Z),
        Column("ScopeVersion", "LowCardinality(String)", Z),
        Column("ScopeAttributes", MAP, Z),
        Column("LogAttributes", MAP, Z),
    ],
    indexes=[_idx("idx_trace_id", "TraceId", "bloom_filter(0.001)"), *_RES_IDX, *_SCOPE_IDX,
             _idx("idx_log_attr_key", "mapKeys(LogAttributes)"),
             _idx("idx_log_attr_value", "mapValues(LogAttributes)"),
             "INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8"],
    partition_by="toDate(TimestampTime)",
    primary_key="(ServiceName, TimestampTime)",
    order_by="(ServiceName, TimestampTime, Timestamp)",
    ttl_column="TimestampTime",
    settings="index_granularity = 8192, ttl_only_drop_parts = 1",
    extra=[CLUSTER_ID, POD_NAME, NODE_NAME],
)

_METRIC_HEAD = [
    Column("ResourceAttributes", MAP, Z), Column("ResourceSchemaUrl", "String", Z),
    Column("ScopeName", "String", Z), Column("ScopeVersion", "String", Z),
    Column("ScopeAttributes", MAP, Z), Column("ScopeDroppedAttrCount", "UInt32", Z),
    Column("ScopeSchemaUrl", "String", Z), Column("ServiceName", "LowCardinality(String)", Z),
    Column("MetricName", "String", Z), Column("MetricDescription", "String", Z),
    Column("MetricUnit", "String", Z), Column("Attributes", MAP, Z),
    Column("StartTimeUnix", "DateTime64(9)", DZ), Column("TimeUnix", "DateTime64(9)", DZ),
]
_EXEMPLARS = Column("Exemplars", f"Nested(FilteredAttributes {MAP}, TimeUnix DateTime64(9), "
                                 "Value Float64, SpanId String, TraceId String)", Z)
_FLAGS = Column("Flags", "UInt32", Z)
_MINMAX_TEMP = [Column("Min", "Float64", Z), Column("Max", "Float64", Z),
                Column("AggregationTemporality", "Int32", Z)]
_COUNT_SUM = [Column("Count", "UInt64", DZ), Column("Sum", "Float64", Z)]


def _metrics(key: str, body: list[Column]) -> Table:
    return Table(
        key=f"metrics_{key}",
        columns=[*_METRIC_HEAD, *body],
        indexes=[*_RES_IDX, *_SCOPE_IDX, _idx("idx_attr_key", "mapKeys(Attributes)"),
                 _idx("idx_attr_value", "mapValues(Attributes)")],
        partition_by="toDate(TimeUnix)",
        order_by="(ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))",
        ttl_column="toDateTime(TimeUnix)",
        extra=[CLUSTER_ID, NODE_NAME, INSTANCE],
    )


METRICS_GAUGE = _metrics("gauge", [Column("Value", "Float64", Z), _FLAGS, _EXEMPLARS])
METRICS_SUM = _metrics("sum", [Column("Value", "Float64", Z), _FLAGS, _EXEMPLARS,
                               Column("AggregationTemporality", "Int32", Z),
                               Column("IsMonotonic", "Bool", DZ)])
METRICS_HISTOGRAM = _metrics("histogram", [
    *_COUNT_SUM, Column("BucketCounts", "Array(UInt64)", Z),
    Column("ExplicitBounds", "Array(Float64)", Z), _EXEMPLARS, _FLAGS, *_MINMAX_TEMP])
METRICS_EXP_HISTOGRAM = _metrics("exponential_histogram", [
    *_COUNT_SUM, Column("Scale", "Int32", Z), Column("ZeroCount", "UInt64", Z),
    Column("PositiveOffset", "Int32", Z), Column("PositiveBucketCounts", "Array(UInt64)", Z),
    Column("NegativeOffset", "Int32", Z), Column("NegativeBucketCounts", "Array(UInt64)", Z),
    _EXEMPLARS, _FLAGS, *_MINMAX_TEMP])
METRICS_SUMMARY = _metrics("summary", [
    *_COUNT_SUM, Column("ValueAtQuantiles", "Nested(Quantile Float64, Value Float64)", Z), _FLAGS])

METRIC_TABLES = [METRICS_GAUGE, METRICS_SUM, METRICS_HISTOGRAM, METRICS_EXP_HISTOGRAM,
                 METRICS_SUMMARY]
DEDUPLICATED = [TRACES, TRACE_ID_TS, LOGS, *METRIC_TABLES]  # what the OTLP inserts write


def insert_deferred_indexes() -> list[str]:
    """The skip indexes over attribute maps (mapKeys / mapValues) and log bodies in the tables
    the OTLP inserts write: the costly ones to build, a hash per map entry or body token.
    The embedded store builds them in its merges instead of at INSERT (ingest.py,
    EMBEDDED_INSERT_SETTINGS); the TraceId blooms and the Duration minmax stay built at INSERT."""
    names = set()
    for table in DEDUPLICATED:
        for index in table.indexes:
            _, name, expr, *_ = index.split()
            if expr.startswith(("mapKeys(", "mapValues(")) or expr == "Body":
                names.add(name)
    return sorted(names)


K8S_EVENTS = Table(
    key="k8s_events",
    columns=[
        Column("cluster_id", "LowCardinality(String)", Z),
        Column("timestamp", "DateTime64(9)", DZ),
        Column("first_timestamp", "DateTime64(9)", DZ),
        Column("kind", "LowCardinality(String)", Z),
        Column("namespace", "LowCardinality(String)", Z),
        Column("name", "String", Z),
        Column("reason", "LowCardinality(String)", Z),
        Column("message", "String", Z),
        Column("type", "LowCardinality(String)", Z),
        Column("source_component", "LowCardinality(String)", Z),
        Column("count", "UInt32", Z),
        Column("pod_name", "LowCardinality(String)", Z),
        Column("node_name", "LowCardinality(String)", Z),
        Column("uid", "String", Z),
        Column("resource_version", "String", Z),
    ],
    indexes=[_idx("idx_reason", "reason"), "INDEX idx_type type TYPE set(16) GRANULARITY 1"],
    partition_by="toDate(timestamp)",
    order_by="(cluster_id, namespace, toDateTime(timestamp), uid)",
    ttl_column="toDateTime(timestamp)",
)


def quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ttl_expr(ttl_seconds: float, column: str) -> str:
    """The contrib exporter's GenerateTTLExpr: days, hours, minutes or seconds, whichever divides."""
    ttl = int(ttl_seconds)
    if ttl <= 0:
        return ""
    for unit, size in (("Day", 86400), ("Hour", 3600), ("Minute", 60)):
        if ttl % size == 0:
            return f"TTL {column} + toInterval{unit}({ttl // size})"
    return f"TTL {column} + toIntervalSecond({ttl})"


# Where a table generated by otelgw keeps its replicas' state in Keeper: one path per shard and
# table, spelled with the macros every node defines in <macros>. Not `{uuid}`: a gateway runs its
# DDL (CREATE … IF NOT EXISTS ON CLUSTER) at every start, and a node added to the cluster later
# gets the table from such a run with a fresh UUID, so a `{uuid}` path would make it the first
# replica of a new, empty table instead of a replica of the existing one.
REPLICA_PATH = "'/clickhouse/tables/{shard}/{database}/{table}'"
REPLICA_NAME = "'{replica}'"


@dataclass(frozen=True)
class SchemaOptions:
    """How the tables are created. On a cluster (`cluster`): every statement ON CLUSTER;
    `replicated` makes the engines Replicated (REPLICA_PATH) unless the given engine already is;
    `distributed` stores the rows of table `<name>` in `<name><local_suffix>` on every shard and
    makes `<name>` a Distributed table over them, so readers and writers keep the contrib names.

    For DDL of further tables (pre-aggregations, …), built the same way:
    `storage(key)` / `local(name)` is the table a CREATE TABLE makes and a materialized view on
    the shard reads FROM and writes TO; `local_engine(engine)` its engine; `on_cluster` the clause
    every statement carries; `distributed_ddl(key, sharding_key)` /
    `distributed_table_ddl(name, sharding_key)` the Distributed table over it (nothing when not
    distributed); `qualified(key)` (or the plain name) is what queries and INSERTs use."""

    database: str = "default"
    cluster: str = ""
    engine: str = "MergeTree()"
    ttl_seconds: float = 0.0
    table_names: dict[str, str] = field(default_factory=dict)  # key → table name
    k8s_events_ttl_seconds: float = 30 * 86400
    replicated: bool = False
    distributed: bool = False
    local_suffix: str = "_local"
    sharding_keys: dict[str, str] = field(default_factory=dict)  # key → Distributed sharding key
    foreground_insert: bool = True  # INSERTs through Distributed wait for every shard

    def name(self, key: str) -> str:
        return self.table_names.get(key) or default_table_name(key)

    def qualified(self, key: str) -> str:
        """The table readers query and INSERTs go to (Distributed when `distributed`)."""
        return f"{quote(self.database)}.{quote(self.name(key))}"

    def local(self, name: str) -> str:
        """The name of the table that stores the rows of table `name` on each node."""
        return name + self.local_suffix if self.distributed else name

    def local_name(self, key: str) -> str:
        return self.local(self.name(key))

    def storage(self, key: str) -> str:
        """The table that stores the rows on this node: `<name><local_suffix>` when
        distributed, else the table itself."""
        return f"{quote(self.database)}.{quote(self.local_name(key))}"

    @property
    def on_cluster(self) -> str:
        return f"ON CLUSTER {quote(self.cluster)}" if self.cluster else ""

    def local_engine(self, engine: str = "") -> str:
        """`engine` (default: the configured one) as the stored tables get it: made Replicated
        when `replicated`, with REPLICA_PATH and REPLICA_NAME before its own arguments
        (`SummingMergeTree(x)` → `ReplicatedSummingMergeTree('/clickhouse/…', '{replica}', x)`).
        An engine that is already Replicated or Shared is kept as written."""
        engine = engine or self.engine
        if not self.replicated or engine.startswith(("Replicated", "Shared")):
            return engine
        family, _, rest = engine.partition("(")
        args = rest.strip().removesuffix(")").strip()
        args = ", ".join(a for a in (REPLICA_PATH, REPLICA_NAME, args) if a)
        return f"Replicated{family.strip()}({args})"

    def distributed_ddl(self, key: str, sharding_key: str | None = None) -> list[str]:
        """CREATE TABLE `<name>` … ENGINE = Distributed over `<name><local_suffix>`, after the
        local table; nothing when not distributed. `sharding_key` None: the configured key of
        `key`; "": none (a table only its shards' materialized views fill: readable, and an
        INSERT into it fails on a cluster of more than one shard instead of misplacing rows)."""
        if sharding_key is None:
            sharding_key = self.sharding_keys.get(key, "")
        return self.distributed_table_ddl(self.name(key), sharding_key)

    def distributed_table_ddl(self, name: str, sharding_key: str = "") -> list[str]:
        """distributed_ddl for a table named `name` (no table key: pre-aggregations, …)."""
        if not self.distributed:
            return []
        args = [literal(self.cluster), literal(self.database), literal(self.local(name))]
        if sharding_key:
            args.append(sharding_key)
        db = quote(self.database)
        head = " ".join(p for p in (f"CREATE TABLE IF NOT EXISTS {db}.{quote(name)}",
                                    self.on_cluster) if p)
        return [f"{head}\nAS {db}.{quote(self.local(name))}\n"
                f"ENGINE = Distributed({', '.join(args)})"]


def default_table_name(key: str) -> str:
    return f"otel_{key}" if key != "k8s_events" else key


def create_table(t: Table, o: SchemaOptions, ttl_seconds: float | None = None) -> str:
    ttl = ttl_expr(o.ttl_seconds if ttl_seconds is None else ttl_seconds, t.ttl_column)
    body = ",\n    ".join([c.sql() for c in (*t.columns, *t.extra)] + t.indexes)
    engine = o.local_engine()
    clauses = [f"ENGINE = {engine}", f"PARTITION BY {t.partition_by}"]
    if t.primary_key:
        clauses.append(f"PRIMARY KEY {t.primary_key}")
    clauses.append(f"ORDER BY {t.order_by}")
    if ttl:
        clauses.append(ttl)
    # Replicated engines ignore it and keep their own window (replicated_deduplication_window:
    # 10000 blocks and one hour on current servers), which covers the retries of the queue
    clauses.append(f"SETTINGS {t.settings}, non_replicated_deduplication_window = {DEDUP_WINDOW}")
    head = " ".join(p for p in (f"CREATE TABLE IF NOT EXISTS {o.storage(t.key)}", o.on_cluster)
                    if p)
    return f"{head} (\n    {body}\n)\n" + "\n".join(clauses)


def create_trace_id_ts_mv(o: SchemaOptions) -> str:
    """The contrib lookup view. Distributed: it reads the local spans table and writes the local
    lookup table of the same shard, so it fires wherever spans are stored (whatever INSERT put
    them there) and a trace's lookup rows sit on its spans' shard."""
    mv = f"{quote(o.database)}.{quote(o.name('traces') + '_trace_id_ts_mv')}"
    head = " ".join(p for p in (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {mv}", o.on_cluster) if p)
    return (f"{head}\nTO {o.storage('traces_trace_id_ts')}\nAS SELECT TraceId, "
            f"min(Timestamp) AS Start, max(Timestamp) AS End\nFROM {o.storage('traces')}\n"
            f"WHERE TraceId != ''\nGROUP BY TraceId")


def misplaced_tables_query(o: SchemaOptions, keys: list[str]) -> str | None:
    """Distributed layout: the tables of `keys` that exist under their reader names but are not
    Distributed, left from a single-node database (CREATE … IF NOT EXISTS keeps them, and rows
    would stay on the node that took the INSERT). None when not distributed. After the DDL, an
    answer with rows should stop the start: docs/scaling.md says how to move such tables."""
    if not o.distributed:
        return None
    names = ", ".join(literal(o.name(k)) for k in keys)
    return (f"SELECT name, engine FROM system.tables WHERE database = {literal(o.database)} "
            f"AND name IN ({names}) AND engine != 'Distributed' ORDER BY name")


def fingerprint(*parts: str) -> str:
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()[:10]
