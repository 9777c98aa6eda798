"""The ingest path: one Null-engine table per signal that takes the raw OTLP request, and one
materialized view per target table that flattens it (flatten.py). One INSERT of the request
bytes feeds every table of the signal: the five metrics tables, and through the contrib
exporter's own view, otel_traces_trace_id_ts.

Both engines run exactly the statements produced here.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporters.clickhouse import schema
from exporters.clickhouse.flatten import FLATTENINGS, Flattening
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


def plan(signal: Signal, o: schema.SchemaOptions) -> IngestPlan:
    f: Flattening = FLATTENINGS[signal]
    structure = ", ".join(f"`{name}` {type_}" for name, type_ in f.structure)
    selects = [t.select("{source}") for t in f.targets]
    fp = schema.fingerprint(schema_text(signal), structure, *selects)
    ingest_name = f"{_ingest_prefix(signal, o)}_{fp}"
    ingest = f"{schema.quote(o.database)}.{schema.quote(ingest_name)}"
    cluster = f" {o.on_cluster}" if o.on_cluster else ""
    ddl = [f"CREATE TABLE IF NOT EXISTS {ingest}{cluster} ({structure}) ENGINE = Null"]
    for target, select in zip(f.targets, selects, strict=True):
        mv = schema.quote(f"{o.name(target.table)}_otlp_mv_{fp}")
        ddl.append(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {schema.quote(o.database)}.{mv}"
                   f"{cluster} TO {o.qualified(target.table)}\n"
                   f"AS {select.replace('{source}', ingest)}")
    settings: dict[str, str | int] = {
        "format_schema_source": "string",
        "format_schema": schema_text(signal),
        "format_schema_message_name": message_name(signal),
        "input_format_protobuf_oneof_presence": 1,
        # the five metrics views run side by side
        "parallel_view_processing": 1,
    }
    return IngestPlan(signal, ingest, ddl, f"INSERT INTO {ingest}", settings)


def schema_ddl(o: schema.SchemaOptions) -> list[str]:
    """Every statement that creates the tables, in dependency order (tables before views)."""
    db = f"CREATE DATABASE IF NOT EXISTS {schema.quote(o.database)}"
    if o.cluster:
        db += f" {o.on_cluster}"
    stmts = [] if o.database == "default" else [db]
    stmts += [schema.create_table(schema.TRACES, o), schema.create_table(schema.TRACE_ID_TS, o),
              schema.create_trace_id_ts_mv(o), schema.create_table(schema.LOGS, o)]
    stmts += [schema.create_table(t, o) for t in schema.METRIC_TABLES]
    stmts.append(schema.create_table(schema.K8S_EVENTS, o, o.k8s_events_ttl_seconds))
    for signal in Signal:
        stmts += plan(signal, o).ddl
    return stmts
