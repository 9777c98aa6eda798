"""`cluster_name` with Replicated and Distributed tables: the DDL, and the ingest path run on it.

No ClickHouse cluster can run here: chDB (the engine the tests use) has no Keeper and runs no
distributed DDL queue (`ON CLUSTER` → "Replicated DDL queries are disabled"; a Replicated table
is created read-only). What chDB does run is the Distributed engine over the clusters of its
`remote_servers` configuration: a shard whose replica is this node (localhost, its own
`tcp_port`) is written and read in-process, as a server does with prefer_localhost_replica. So
the engine tests take the cluster DDL exactly as generated, change only what chDB cannot run
(`as_single_node`: ON CLUSTER dropped, Replicated…MergeTree(path, replica, args) → …MergeTree(args),
each asserted to happen), run it on the HTTP test double tests/chserver.py, insert OTLP through
the ingest plan and the server engine the exporter uses, and read the rows back through the
Distributed tables under the contrib names. A second cluster has a shard on a port where nothing
listens: rows of the other shard stay queued, which shows where each row went.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporters.clickhouse import schema
from exporters.clickhouse.config import ClickHouseConfig
from exporters.clickhouse.engines import EngineError
from exporters.clickhouse.engines.server import ServerEngine
from exporters.clickhouse.ingest import plan, schema_ddl
from gateway.signals import Signal
from loadtests.gatewayproc import free_port
from tests import oracle, payloads
from tests.chserver import ChServer
from tests.exporters.clickhouse.test_values import check_rows

pytestmark = pytest.mark.timeout(90)

PATH_ARGS = f"{schema.REPLICA_PATH}, {schema.REPLICA_NAME}"
SEED = 20251121


def cluster_config(**extra: Any) -> ClickHouseConfig:
    return ClickHouseConfig.model_validate({"cluster_name": "otel", "database": "otel",
                                            "distributed": {"enabled": True}, **extra})


def ddl(cfg: ClickHouseConfig) -> list[str]:
    return schema_ddl(cfg.schema_options())


def by_name(stmts: list[str]) -> dict[str, str]:
    """CREATE statement by the name it creates (unqualified)."""
    out = {}
    for s in stmts:
        m = re.match(r'CREATE (?:TABLE|MATERIALIZED VIEW|DATABASE) IF NOT EXISTS '
                     r'(?:"[^"]+"\.)?"([^"]+)"', s)
        assert m, s
        out[m.group(1)] = s
    return out


CONTRIB = ["otel_traces", "otel_traces_trace_id_ts", "otel_logs", "otel_metrics_gauge",
           "otel_metrics_sum", "otel_metrics_histogram", "otel_metrics_exponential_histogram",
           "otel_metrics_summary", "k8s_events"]


# ------------------------------------------------------------------------------ the statements


def test_every_statement_runs_on_the_cluster() -> None:
    stmts = ddl(cluster_config())
    assert stmts[0] == 'CREATE DATABASE IF NOT EXISTS "otel" ON CLUSTER "otel"'
    assert all(' ON CLUSTER "otel"' in s.splitlines()[0] for s in stmts), \
        [s.splitlines()[0] for s in stmts if "ON CLUSTER" not in s.splitlines()[0]]


def test_local_tables_replicated_and_distributed_tables_under_contrib_names() -> None:
    stmts = by_name(ddl(cluster_config()))
    for name in CONTRIB:
        local = stmts[f"{name}_local"]
        assert f"ENGINE = ReplicatedMergeTree({PATH_ARGS})\n" in local, local
        dist = stmts[name]
        assert dist.endswith("ENGINE = Distributed('otel', 'otel', " f"'{name}_local'"
                             + {"otel_traces": ", cityHash64(TraceId))",
                                "otel_traces_trace_id_ts": ", cityHash64(TraceId))",
                                "otel_logs": ", cityHash64(TraceId, Timestamp))",
                                "k8s_events": ")"}.get(
                                    name, ", cityHash64(MetricName, Attributes, "
                                          "ResourceAttributes))")), dist
        assert f'\nAS "otel"."{name}_local"\n' in dist
    order = list(stmts)
    for name in CONTRIB:  # a Distributed table is made from its local table's structure
        assert order.index(f"{name}_local") < order.index(name)


def test_lookup_view_reads_and_writes_the_shards_own_tables() -> None:
    mv = by_name(ddl(cluster_config()))["otel_traces_trace_id_ts_mv"]
    assert '\nTO "otel"."otel_traces_trace_id_ts_local"\n' in mv
    assert '\nFROM "otel"."otel_traces_local"\n' in mv


def test_ingest_views_write_to_the_distributed_tables() -> None:
    stmts = ddl(cluster_config())
    order = by_name(stmts)
    views = {n: s for n, s in order.items() if "_otlp_mv_" in n and "_stage_" not in n}
    assert len(views) == 7  # traces, logs, five metrics tables
    for name, stmt in views.items():
        target = re.search(r'ON CLUSTER "otel" TO "otel"\."([^"]+)"\n', stmt)
        assert target, stmt
        table = target.group(1)
        assert table in CONTRIB and not table.endswith("_local")
        assert list(order).index(table) < list(order).index(name)
    p = plan(Signal.TRACES, cluster_config().schema_options())
    assert p.settings["distributed_foreground_insert"] == 1
    off = cluster_config(distributed={"enabled": True, "foreground_insert": False})
    assert "distributed_foreground_insert" not in plan(Signal.TRACES, off.schema_options()).settings


def test_distributed_layout_has_an_ingest_chain_of_its_own() -> None:
    """A database moving to the Distributed layout gets new views (IF NOT EXISTS would keep the
    old ones, which write to the tables now renamed to _local)."""
    plain = ClickHouseConfig.model_validate({"cluster_name": "otel", "database": "otel"})
    for signal in Signal:
        assert plan(signal, plain.schema_options()).table != \
            plan(signal, cluster_config().schema_options()).table


@pytest.mark.parametrize(("extra", "engine"), [
    # an engine given in table_engine is used as written, and made Replicated when asked,
    # its own arguments after the path
    ({"table_engine": {"name": "ReplacingMergeTree", "params": "Timestamp"}},
     "ReplacingMergeTree(Timestamp)"),
    ({"table_engine": {"name": "ReplacingMergeTree", "params": "Timestamp"}, "replication": True},
     f"ReplicatedReplacingMergeTree({PATH_ARGS}, Timestamp)"),
    # a Replicated engine in table_engine is the contrib option: used as written
    ({"table_engine": {"name": "ReplicatedMergeTree",
                       "params": "'/ch/{shard}/otel/{table}', '{replica}'"}},
     "ReplicatedMergeTree('/ch/{shard}/otel/{table}', '{replica}')"),
    # sharding without replicas
    ({"replication": False}, "MergeTree()"),
])
def test_engine_choice(extra: dict[str, Any], engine: str) -> None:
    local = by_name(ddl(cluster_config(**extra)))["otel_logs_local"]
    assert f"ENGINE = {engine}\n" in local


def test_replication_without_distributed_tables() -> None:
    """One shard, several replicas: no Distributed tables, the contrib names are Replicated."""
    cfg = ClickHouseConfig.model_validate({"cluster_name": "otel", "replication": True})
    stmts = by_name(ddl(cfg))
    assert not any(n.endswith("_local") for n in stmts)
    assert f"ENGINE = ReplicatedMergeTree({PATH_ARGS})\n" in stmts["otel_traces"]
    assert "Distributed" not in "\n".join(stmts.values())


def test_contrib_cluster_name_alone_keeps_its_meaning() -> None:
    """The contrib exporter's cluster_name: the same tables, MergeTree, ON CLUSTER; nothing more."""
    cfg = ClickHouseConfig.model_validate({"cluster_name": "otel"})
    stmts = ddl(cfg)
    text = "\n".join(stmts)
    assert "Replicated" not in text and "Distributed" not in text and "_local" not in text
    single = schema_ddl(ClickHouseConfig().schema_options())
    assert [s.replace(' ON CLUSTER "otel"', "") for s in stmts] == single


def test_single_node_ddl_has_no_cluster_parts() -> None:
    text = "\n".join(schema_ddl(ClickHouseConfig().schema_options()))
    for part in ("ON CLUSTER", "Replicated", "Distributed", "_local", "{shard}"):
        assert part not in text


def test_reusable_for_further_tables() -> None:
    """What pre-aggregation and k8s event DDL build their tables with."""
    o = cluster_config().schema_options()
    assert o.storage("traces_latency_1m") == '"otel"."otel_traces_latency_1m_local"'
    assert o.qualified("traces_latency_1m") == '"otel"."otel_traces_latency_1m"'
    assert o.local_engine("AggregatingMergeTree()") == \
        f"ReplicatedAggregatingMergeTree({PATH_ARGS})"
    assert o.local_engine("SummingMergeTree((Count, Sum))") == \
        f"ReplicatedSummingMergeTree({PATH_ARGS}, (Count, Sum))"
    (dist,) = o.distributed_ddl("traces_latency_1m", "")
    assert dist.endswith("Distributed('otel', 'otel', 'otel_traces_latency_1m_local')")
    assert o.local("spans_latency_1m_state") == "spans_latency_1m_state_local"
    (dist,) = o.distributed_table_ddl("spans_latency_1m_state")
    assert dist == ('CREATE TABLE IF NOT EXISTS "otel"."spans_latency_1m_state" ON CLUSTER '
                    '"otel"\nAS "otel"."spans_latency_1m_state_local"\n'
                    "ENGINE = Distributed('otel', 'otel', 'spans_latency_1m_state_local')")
    one = ClickHouseConfig().schema_options()
    assert one.storage("traces") == one.qualified("traces") == '"default"."otel_traces"'
    assert one.local_engine("AggregatingMergeTree()") == "AggregatingMergeTree()"
    assert one.distributed_ddl("traces") == [] == one.distributed_table_ddl("x", "rand()")
    assert one.local("spans_latency_1m_state") == "spans_latency_1m_state"


@pytest.mark.parametrize(("config", "message"), [
    ({"distributed": {"enabled": True}}, "distributed.enabled needs cluster_name"),
    ({"replication": True}, "replication needs cluster_name"),
    ({"cluster_name": "c", "replication": False, "table_engine": {"name": "ReplicatedMergeTree"}},
     "replication is false but table_engine is ReplicatedMergeTree"),
    ({"cluster_name": "c", "distributed": {"enabled": True,
                                           "sharding_key": {"logs": "rand()"}}},
     "rand() makes the sharding key non-deterministic"),
    ({"cluster_name": "c", "distributed": {"enabled": True,
                                           "sharding_key": {"metrics": " "}}},
     "a sharding key is required"),
    ({"cluster_name": "c", "distributed": {"enabled": True, "sharding_key": {
        "traces": "cityHash64(TraceId, SpanId)"}}}, "may use only the TraceId column, not SpanId"),
    ({"cluster_name": "c", "distributed": {"enabled": True, "local_suffix": ""}},
     "at least 1 character"),
])
def test_invalid_cluster_options(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ClickHouseConfig.model_validate(config)


# --------------------------------------------------------------- the statements on an engine


def as_single_node(stmt: str, cluster: str) -> str:
    """`stmt` as one chDB process can run it: without ON CLUSTER (no distributed DDL queue) and
    with the plain engine of a Replicated one (no Keeper). Nothing else changes."""
    clause = f" ON CLUSTER {schema.quote(cluster)}"
    assert stmt.count(clause) == 1, stmt
    stmt = stmt.replace(clause, "")
    if "ENGINE = Replicated" in stmt:
        stmt, n = re.subn(r"ENGINE = Replicated(\w*MergeTree)\(" + re.escape(PATH_ARGS)
                          + r"(?:, )?", r"ENGINE = \1(", stmt)
        assert n == 1, stmt
    return stmt


CONFIG_XML = """<clickhouse>
  <tcp_port>{own}</tcp_port>
  <remote_servers>
    <otel>
      <shard><internal_replication>true</internal_replication>
        <replica><host>localhost</host><port>{own}</port></replica></shard>
    </otel>
    <otel_two>
      <shard><internal_replication>true</internal_replication>
        <replica><host>localhost</host><port>{own}</port></replica></shard>
      <shard><internal_replication>true</internal_replication>
        <replica><host>127.0.0.1</host><port>{dead}</port></replica></shard>
    </otel_two>
  </remote_servers>
</clickhouse>
"""


@pytest.fixture(scope="module")
def chserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChServer]:
    root = tmp_path_factory.mktemp("cluster")
    # chDB reads config.xml from its working directory, which ChServer sets to log_dir; the port
    # of the second cluster's shard has no listener (connections to it are refused)
    (root / "config.xml").write_text(CONFIG_XML.format(own=free_port(), dead=free_port()))
    ch = ChServer(root / "store", free_port(), log_dir=root)
    ch.start()
    yield ch
    assert ch.stop() == 0, ch.logs()


def create(ch: ChServer, cfg: ClickHouseConfig) -> ServerEngine:
    for stmt in ddl(cfg):
        ch.sql(as_single_node(stmt, cfg.cluster_name))
    return ServerEngine(ch.url, "default", "", cfg.database, "lz4", 30, {})


def insert(engine: ServerEngine, cfg: ClickHouseConfig, signal: Signal, data: bytes,
           token: str) -> None:
    p = plan(signal, cfg.schema_options())
    engine.insert(p.insert_sql, data, "ProtobufSingle",
                  {**p.settings, "insert_deduplication_token": token})


def fetch(ch: ChServer, database: str, table: str, run: str, attrs: str) -> list[dict[str, Any]]:
    out = ch.sql(f"SELECT * FROM {table} WHERE ResourceAttributes['{payloads.RUN_KEY}'] = "
                 f"'{run}' ORDER BY toUInt64({attrs}['{payloads.SEQ_KEY}']) "
                 f"SETTINGS {oracle.JSON_SETTINGS} FORMAT JSONEachRow", database)
    return [oracle.parse_row(line) for line in out.splitlines() if line.strip()]


def count(ch: ChServer, database: str, table: str, where: str = "1") -> int:
    return int(ch.rows(f"SELECT count() AS n FROM {table} WHERE {where}", database)[0]["n"])


def test_ingest_through_distributed_tables(chserver: ChServer) -> None:
    cfg = cluster_config(database="otel_one")
    create(chserver, cfg).close()
    engine = create(chserver, cfg)  # a gateway runs its DDL at every start: no change
    try:
        names = [r["name"] for r in chserver.rows(
            "SELECT name FROM system.tables WHERE database = 'otel_one'")]
        assert sorted(names) == sorted(list(by_name(ddl(cfg)))[1:])  # all but CREATE DATABASE
        engines = {r["name"]: r["engine"] for r in chserver.rows(
            "SELECT name, engine FROM system.tables WHERE database = 'otel_one'")}
        assert all(engines[n] == "Distributed" for n in CONTRIB), engines
        assert all(engines[f"{n}_local"] == "MergeTree" for n in CONTRIB), engines

        run = "cluster-one"
        traces, logs = payloads.traces(SEED, run), payloads.logs(SEED, run)
        metrics = payloads.metrics(SEED, run)
        for signal, req in ((Signal.TRACES, traces), (Signal.LOGS, logs),
                            (Signal.METRICS, metrics)):
            insert(engine, cfg, signal, req.SerializeToString(), f"{signal.value}-1")

        # read back under the contrib names, field by field
        check_rows("otel_traces", "SpanAttributes", oracle.trace_rows(traces),
                   fetch(chserver, "otel_one", "otel_traces", run, "SpanAttributes"))
        check_rows("otel_logs", "LogAttributes", oracle.log_rows(logs),
                   fetch(chserver, "otel_one", "otel_logs", run, "LogAttributes"))
        metric_rows = oracle.metric_rows(metrics)
        for table, rows in metric_rows.items():
            check_rows(table, "Attributes", rows,
                       fetch(chserver, "otel_one", table, run, "Attributes"))

        # the lookup view ran on the shard, from the local spans into the local lookup table
        ids = {r["TraceId"] for r in oracle.trace_rows(traces) if r["TraceId"]}
        looked_up = chserver.rows("SELECT groupUniqArray(TraceId) AS ids FROM "
                                  "otel_traces_trace_id_ts", "otel_one")[0]["ids"]
        assert set(looked_up) == ids

        # a retried batch (same token) is stored once, through Distributed and the views ...
        spans, sums = len(oracle.trace_rows(traces)), len(metric_rows["otel_metrics_sum"])
        lookups = count(chserver, "otel_one", "otel_traces_trace_id_ts")
        insert(engine, cfg, Signal.TRACES, traces.SerializeToString(), "traces-1")
        insert(engine, cfg, Signal.METRICS, metrics.SerializeToString(), "metrics-1")
        assert count(chserver, "otel_one", "otel_traces") == spans
        assert count(chserver, "otel_one", "otel_traces_trace_id_ts") == lookups
        assert count(chserver, "otel_one", "otel_metrics_sum") == sums
        # ... and another batch with the same rows is another batch
        insert(engine, cfg, Signal.TRACES, traces.SerializeToString(), "traces-2")
        assert count(chserver, "otel_one", "otel_traces") == 2 * spans
    finally:
        engine.close()


def test_rows_go_to_their_shard(chserver: ChServer) -> None:
    """Cluster otel_two: shard 1 is this node, shard 2 cannot be reached. The INSERT queues shard
    2's rows on this node (foreground_insert: false); with foreground_insert on it fails (the
    next test)."""
    cfg = cluster_config(cluster_name="otel_two", database="otel_two",
                         distributed={"enabled": True, "foreground_insert": False})
    engine = create(chserver, cfg)
    traces = payloads.traces(SEED, "cluster-two", spans_per_scope=25)
    try:
        insert(engine, cfg, Signal.TRACES, traces.SerializeToString(), "two-1")
    finally:
        engine.close()
    rows = oracle.trace_rows(traces)
    (mine,) = chserver.rows(
        "SELECT count() AS n, countIf(cityHash64(TraceId) % 2 != 0) AS strays, "
        "groupUniqArray(TraceId) AS ids FROM otel_traces_local", "otel_two")
    # shard 1 of two (weights 1, 1) takes the rows whose key is even, and only those
    assert 0 < mine["n"] < len(rows) and mine["strays"] == 0
    # every trace is whole on one shard: all its spans here, or none
    assert mine["n"] == sum(1 for r in rows if r["TraceId"] in set(mine["ids"]))
    lookups = chserver.rows("SELECT groupUniqArray(TraceId) AS ids FROM "
                            "otel_traces_trace_id_ts_local", "otel_two")[0]["ids"]
    assert set(lookups) == set(mine["ids"]) - {""}
    # the other shard's rows wait in the Distributed table's queue on this node
    deadline = time.monotonic() + 10
    while True:
        pending = chserver.rows("SELECT sum(data_files) AS files FROM system.distribution_queue "
                                "WHERE database = 'otel_two' AND table = 'otel_traces'")
        if pending and pending[0]["files"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert pending[0]["files"] >= 1


def test_a_foreground_insert_with_a_shard_down_fails_and_is_retryable(chserver: ChServer) -> None:
    """With foreground_insert (the default) an acknowledgement would mean every shard stored its
    rows: an INSERT that cannot reach a shard fails, retryable, so the batch stays queued."""
    cfg = cluster_config(cluster_name="otel_two", database="otel_two_fg")
    engine = create(chserver, cfg)
    try:
        with pytest.raises(EngineError) as failed:
            insert(engine, cfg, Signal.TRACES, payloads.traces(SEED, "fg").SerializeToString(),
                   "fg-1")
        assert failed.value.retryable, failed.value
        assert "ALL_CONNECTION_TRIES_FAILED" in str(failed.value) or \
            "Connection refused" in str(failed.value), failed.value
    finally:
        engine.close()


def test_schema_command_prints_the_cluster_ddl(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    config = tmp_path / "gateway.yaml"
    config.write_text(
        "receivers: {otlp: {protocols: {http: {endpoint: 127.0.0.1:0}}}}\n"
        "exporters:\n  clickhouse:\n    database: otel\n    distributed: {enabled: true}\n"
        "    cluster_name: staging\n"
        "service: {pipelines: {traces: {receivers: [otlp], exporters: [clickhouse]}}}\n")
    assert main(["schema", "--config", str(config), "--cluster", "prod"]) == 0
    out = capsys.readouterr().out
    stmts = [s.strip() for s in out.split(";\n") if s.strip()]
    assert stmts == ddl(cluster_config(cluster_name="prod"))
    assert "staging" not in out


def test_single_node_tables_in_the_way_are_found(chserver: ChServer) -> None:
    """A database from a single node keeps its MergeTree otel_traces under CREATE … IF NOT
    EXISTS; the check names it, so the start can stop instead of storing rows on one node."""
    single = ClickHouseConfig.model_validate({"database": "otel_moved"})
    for stmt in schema_ddl(single.schema_options())[:2]:  # database, otel_traces
        chserver.sql(stmt)
    cfg = cluster_config(database="otel_moved")
    create(chserver, cfg).close()
    o = cfg.schema_options()
    keys = [t.key for t in (*schema.DEDUPLICATED, schema.K8S_EVENTS)]
    sql = schema.misplaced_tables_query(o, keys)
    assert sql is not None
    assert chserver.rows(sql) == [{"name": "otel_traces", "engine": "MergeTree"}]
    assert schema.misplaced_tables_query(single.schema_options(), keys) is None
