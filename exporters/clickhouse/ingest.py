"""The ingest path: one Null-engine table per signal that takes the raw OTLP request, and one
materialized view per target table that flattens it (flatten.py). One INSERT of the request
bytes feeds every table of the signal: the five metrics tables, and through the contrib
exporter's own view, otel_traces_trace_id_ts. Metrics pass through a second Null table, one row
per data point with every target column (flatten.Flattening.stage), so the costly flattening is
planned once per INSERT and the five metrics views only select from it.

Both engines run exactly the statements produced here. On a Distributed layout the views write
to the Distributed tables (the reader names), which send each row to its shard by the sharding
key; the chain exists on every node, so any node can take the INSERT (docs/scaling.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from exporters.clickhouse import schema
from exporters.clickhouse.aggregations import AggregationsConfig, aggregation_ddl
from exporters.clickhouse.flatten import FLATTENINGS, Flattening
from exporters.clickhouse.k8sevents import k8s_events_view_ddl
from exporters.clickhouse.protoschema import message_name, schema_text
from gateway.signals import Signal


@dataclass(frozen=True)
class IngestPlan:
    signal: Signal
    table: str              # qualified name of the Null ingest table
    ddl: list[str]          # creates the ingest table and its views
    insert_sql: str
    settings: dict[str, str | int]


def _ingest_prefix(signal: Signal, o: schema.SchemaOptions) -> str:
    base = {Signal.TRACES: o.name("traces"), Signal.LOGS: o.name("logs"),
            Signal.METRICS: o.name("metrics_gauge").removesuffix("_gauge")}[signal]
    return f"{base}_otlp"


_TABLES = {t.key: t for t in (schema.TRACES, schema.LOGS, *schema.METRIC_TABLES)}


def _split_top(text: str) -> list[str]:
    """`a T, b U(x, y)` → ['a T', 'b U(x, y)']: commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return [*parts, text[start:].strip()]


def _column_types(table: schema.Table) -> dict[str, str]:
    """Target column → type, a Nested column as its `Name.Field Array(T)` columns."""
    types = {}
    for c in table.columns:
        if c.type.startswith("Nested("):
            for sub in _split_top(c.type.removeprefix("Nested(").removesuffix(")")):
                name, type_ = sub.split(" ", 1)
                types[f"{c.name}.{name}"] = f"Array({type_})"
        else:
            types[c.name] = c.type
    return types


def _stage_structure(f: Flattening) -> str:
    """The stage table's columns, typed as the target columns they feed: each value is converted
    to its target type once, as in a direct insert, and passes to the target unchanged."""
    assert f.stage is not None
    types = dict(f.stage_types)
    for target in f.targets:
        for name, type_ in _column_types(_TABLES[target.table]).items():
            if types.setdefault(name, type_) != type_:
                raise AssertionError(f"stage column {name}: {types[name]} or {type_}")
    return ", ".join(f"`{name}` {types[name]}" for name, _ in f.stage.columns)


def plan(signal: Signal, o: schema.SchemaOptions) -> IngestPlan:
    f: Flattening = FLATTENINGS[signal]
    structure = ", ".join(f"`{name}` {type_}" for name, type_ in f.structure)
    selects = [t.select("{source}") for t in f.targets]
    stage = [_stage_structure(f), f.stage.select("{source}")] if f.stage else []
    # on a Distributed layout the views write elsewhere: a chain of their own, so a database that
    # moves to it gets new views instead of keeping the old ones (CREATE … IF NOT EXISTS)
    layout = [o.qualified(t.table) + "/distributed" for t in f.targets] if o.distributed else []
    fp = schema.fingerprint(schema_text(signal), structure, *stage, *selects, *layout)
    prefix = _ingest_prefix(signal, o)
    db = schema.quote(o.database)
    ingest = f"{db}.{schema.quote(f'{prefix}_{fp}')}"
    cluster = f" {o.on_cluster}" if o.on_cluster else ""
    ddl = [f"CREATE TABLE IF NOT EXISTS {ingest}{cluster} ({structure}) ENGINE = Null"]
    source = ingest
    if f.stage:
        source = f"{db}.{schema.quote(f'{prefix}_stage_{fp}')}"
        ddl.append(f"CREATE TABLE IF NOT EXISTS {source}{cluster} ({stage[0]}) ENGINE = Null")
    for target, select in zip(f.targets, selects, strict=True):
        mv = schema.quote(f"{o.name(target.table)}_otlp_mv_{fp}")
        ddl.append(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{mv}"
                   f"{cluster} TO {o.qualified(target.table)}\n"
                   f"AS {select.replace('{source}', source)}")
    if f.stage:
        # last: once it exists, every row it writes has the views above to go to
        mv = schema.quote(f"{prefix}_stage_mv_{fp}")
        ddl.append(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{mv}{cluster} TO {source}\n"
                   f"AS {stage[1].replace('{source}', ingest)}")
    settings: dict[str, str | int] = {
        "format_schema_source": "string",
        "format_schema": schema_text(signal),
        "format_schema_message_name": message_name(signal),
        "input_format_protobuf_oneof_presence": 1,
        # the five metrics views run side by side
        "parallel_view_processing": 1,
        # a retried INSERT (same insert_deduplication_token) is dropped by every table the views
        # write, not only by the first (older servers default this to 0)
        "deduplicate_blocks_in_dependent_materialized_views": 1,
        # the tables are partitioned by day: a batch with times over more than 100 days (a
        # replay, a broken clock, a hostile client) must not fail as a whole
        "max_partitions_per_insert_block": 0,
    }
    if o.distributed and o.foreground_insert:
        # the INSERT returns once every shard stored its rows (by default a Distributed table
        # queues them on this node's disk and acknowledges before any shard has them)
        settings["distributed_foreground_insert"] = 1
    return IngestPlan(signal, ingest, ddl, f"INSERT INTO {ingest}", settings)


# The embedded store's INSERTs leave the attribute-map and body indexes to its merges
# (exclude_materialize_skip_indexes_on_insert), which build them for every merged part all the
# same. Building them at INSERT cost ~0.2 CPU-s per 100k spans (0.91 → 0.69–0.72 for 64k-span
# INSERTs, merges stopped, alternated in one process) and ~0.06 per 100k log records: a hash per
# map entry or body token, and the mapKeys / mapValues columns they are built from, which also
# made a 64k-span block look larger than min_bytes_for_wide_part (engines/embedded.py), so its
# part was stored Wide. The gateway at a steady 100k spans/s: 1.09–1.24 cores instead of
# 1.28–1.40 (3 runs each, alternated). The price: the freshest parts, until their first merge
# (~10 INSERTs, merge_selector_base), are read whole by a query on attributes or Body, not
# skipped; the results are the same. A ClickHouse server's INSERTs build every index unless
# its users set this in connection_params (docs/scaling.md).
EMBEDDED_INSERT_SETTINGS: dict[str, str | int] = {
    "exclude_materialize_skip_indexes_on_insert": ", ".join(schema.insert_deferred_indexes()),
}


def schema_ddl(o: schema.SchemaOptions,
               aggregations: AggregationsConfig | None = None) -> list[str]:
    """Every statement that creates the tables, in dependency order (tables before views), with
    the enabled pre-aggregations."""
    db = f"CREATE DATABASE IF NOT EXISTS {schema.quote(o.database)}"
    if o.cluster:
        db += f" {o.on_cluster}"
    stmts = [] if o.database == "default" else [db]
    stmts += [schema.create_table(schema.TRACES, o), schema.create_table(schema.TRACE_ID_TS, o),
              schema.create_trace_id_ts_mv(o), schema.create_table(schema.LOGS, o)]
    stmts += [schema.create_table(t, o) for t in schema.METRIC_TABLES]
    stmts.append(schema.create_table(schema.K8S_EVENTS, o, o.k8s_events_ttl_seconds))
    # the Distributed tables (none on one node), before the views that write to them
    for t in (*schema.DEDUPLICATED, schema.K8S_EVENTS):
        stmts += o.distributed_ddl(t.key)
    stmts += k8s_events_view_ddl(o)
    for signal in Signal:
        stmts += plan(signal, o).ddl
    if aggregations is not None:
        stmts += aggregation_ddl(o, aggregations)
    return stmts
