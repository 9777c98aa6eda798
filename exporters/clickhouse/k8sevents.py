"""The k8s_events table's feed: a materialized view on the logs table that copies the records of
the `k8s_events` receiver (receivers/k8sevents) into k8s_events, one row per event occurrence.

The view reads the logs table (otel_logs; on a Distributed layout each shard's local one), not
the Null ingest table: its SELECT is planned per INSERT into the table it watches, and over
otel_logs that is a filter on ScopeName and a few map lookups. Rows reach k8s_events through
otel_logs' own insert, so a retried batch (same insert_deduplication_token) is dropped here too
(deduplicate_blocks_in_dependent_materialized_views, set by ingest.plan).

The view's name carries a hash of its SELECT, as the ingest views do. Unlike those, it watches a
table every version writes, so a view of an earlier definition keeps firing until it is dropped:
`stale_views_query` lists them.
"""

from __future__ import annotations

from exporters.clickhouse import schema
from receivers.k8sevents.convert import SCOPE_NAME


def _attr(key: str) -> str:
    return f"LogAttributes[{schema.literal(key)}]"


def _select(o: schema.SchemaOptions) -> str:
    res = schema.resource_attribute
    first = _attr("k8s.event.first_timestamp")
    columns = {
        "cluster_id": schema.CLUSTER_ID.expression.removeprefix("MATERIALIZED "),
        "timestamp": "Timestamp",
        "first_timestamp": f"if({first} = '', Timestamp, "
                           f"parseDateTime64BestEffortOrZero({first}, 9, 'UTC'))",
        "kind": res("k8s.object.kind"),
        "namespace": _attr("k8s.namespace.name"),
        "name": res("k8s.object.name"),
        "reason": _attr("k8s.event.reason"),
        "message": "Body",
        "type": f"if({_attr('k8s.event.type')} != '', {_attr('k8s.event.type')}, SeverityText)",
        "source_component": _attr("k8s.event.reporting_component"),
        "count": f"toUInt32OrZero({_attr('k8s.event.count')})",
        "pod_name": f"if({res('k8s.object.kind')} = 'Pod', {res('k8s.object.name')}, '')",
        "node_name": res("k8s.node.name"),
        "uid": _attr("k8s.event.uid"),
        "resource_version": _attr("k8s.event.resource_version"),
    }
    missing = [c.name for c in schema.K8S_EVENTS.columns if c.name not in columns]
    if missing:  # the table gained a column this view does not fill
        raise AssertionError(f"k8s_events columns without a source: {missing}")
    body = ",\n    ".join(f"{expr} AS `{name}`" for name, expr in columns.items())
    # on a Distributed layout each shard's view reads its local otel_logs and writes its local
    # k8s_events (SchemaOptions.storage), so every row is copied once, where it is stored
    return (f"SELECT\n    {body}\nFROM {o.storage('logs')}\n"
            f"WHERE ScopeName = {schema.literal(SCOPE_NAME)}")


def view_prefix(o: schema.SchemaOptions) -> str:
    return f"{o.name('k8s_events')}_mv_"


def view_name(o: schema.SchemaOptions) -> str:
    return view_prefix(o) + schema.fingerprint(_select(o), o.storage("k8s_events"))


def k8s_events_view_ddl(o: schema.SchemaOptions) -> list[str]:
    """CREATE MATERIALIZED VIEW … TO k8s_events; after the logs and k8s_events tables."""
    cluster = f" {o.on_cluster}" if o.on_cluster else ""
    mv = f"{schema.quote(o.database)}.{schema.quote(view_name(o))}"
    return [f"CREATE MATERIALIZED VIEW IF NOT EXISTS {mv}{cluster} "
            f"TO {o.storage('k8s_events')}\nAS {_select(o)}"]


def stale_views_query(o: schema.SchemaOptions) -> str:
    """Names of k8s_events views of other definitions (earlier versions): each would write every
    event a second time until dropped (DROP VIEW … [ON CLUSTER …])."""
    return (f"SELECT name FROM system.tables WHERE database = {schema.literal(o.database)} "
            f"AND startsWith(name, {schema.literal(view_prefix(o))}) "
            f"AND name != {schema.literal(view_name(o))}")
