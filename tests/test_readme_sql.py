"""Every SQL statement in README.md runs on the real engine (chDB) against the schema otelgw
creates (schema_ddl plus every pre-aggregation), and finds rows in a small data set shaped like
what the gateway stores: a two-service trace on two pods and nodes, node_exporter gauges and
cumulative CPU counters of those nodes, Linkerd response_total counters, Kubernetes events.

The store lives in a child process: chDB holds one store per process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporters.clickhouse.aggregations import AggregationsConfig

README = Path(__file__).resolve().parents[1] / "README.md"
TRACE = "0af7651916cd43dd8448eb211c80319c"  # the README's example trace id

SEED = f"""
INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind,
    ServiceName, ResourceAttributes, Duration, StatusCode)
SELECT now64(9) - INTERVAL 10 MINUTE + number, '{TRACE}', hex(number),
    if(number = 0, '', hex(number - 1)), 'GET /checkout', 'Server',
    if(number % 2 = 0, 'frontend', 'checkout'),
    map('k8s.cluster.name', 'prod', 'k8s.pod.name', concat('pod-', toString(number % 2)),
        'k8s.node.name', concat('node-', toString(number % 2))),
    500000000 * (number + 1), if(number = 3, 'Error', 'Ok')
FROM numbers(4);
INSERT INTO otel_metrics_gauge (ResourceAttributes, ServiceName, MetricName, TimeUnix, Value)
SELECT map('k8s.cluster.name', 'prod', 'k8s.node.name', concat('node-', toString(number % 2)),
           'service.instance.id', concat('10.0.0.', toString(number % 2), ':9100')),
    'node-exporter', arrayJoin(['node_load1', 'node_memory_MemAvailable_bytes']),
    now64(9) - INTERVAL 14 MINUTE + number * 30, number
FROM numbers(20);
INSERT INTO otel_metrics_sum (ResourceAttributes, ServiceName, MetricName, Attributes,
    StartTimeUnix, TimeUnix, Value, AggregationTemporality, IsMonotonic)
SELECT map('k8s.cluster.name', 'prod', 'k8s.node.name', 'node-0',
           'service.instance.id', '10.0.0.0:9100'),
    'node-exporter', 'node_cpu_seconds_total', map('cpu', toString(c), 'mode', m),
    now64(9) - INTERVAL 1 HOUR, now64(9) - INTERVAL 14 MINUTE + number * 30,
    number * if(m = 'idle', 20, 10) + c, 2, true
FROM numbers(20) ARRAY JOIN [0, 1] AS c ARRAY JOIN ['idle', 'user'] AS m;
INSERT INTO otel_metrics_sum (ResourceAttributes, ServiceName, MetricName, Attributes,
    StartTimeUnix, TimeUnix, Value, AggregationTemporality, IsMonotonic)
SELECT map('k8s.cluster.name', 'prod', 'service.instance.id', '10.1.0.7:4191'),
    'linkerd-proxy', 'response_total',
    map('namespace', 'shop', 'deployment', 'checkout', 'direction', 'inbound',
        'classification', cls),
    now64(9) - INTERVAL 1 HOUR, now64(9) - INTERVAL 14 MINUTE + number * 10,
    number * if(cls = 'failure', 1, 9), 2, true
FROM numbers(60) ARRAY JOIN ['success', 'failure'] AS cls;
INSERT INTO k8s_events (cluster_id, timestamp, first_timestamp, kind, namespace, name, reason,
    message, type, source_component, count, pod_name, node_name, uid, resource_version)
VALUES ('prod', now64(9) - INTERVAL 11 MINUTE, now64(9) - INTERVAL 12 MINUTE, 'Pod', 'shop',
        'pod-1', 'BackOff', 'Back-off restarting failed container', 'Warning', 'kubelet', 3,
        'pod-1', 'node-1', 'u1', '1'),
       ('prod', now64(9) - INTERVAL 9 MINUTE, now64(9) - INTERVAL 9 MINUTE, 'Node', '',
        'node-0', 'NodeHasDiskPressure', 'disk pressure', 'Warning', 'kubelet', 1, '',
        'node-0', 'u2', '2')
"""

CHILD = """
import json, sys
import chdb
from exporters.clickhouse import schema
from exporters.clickhouse.aggregations import AggregationsConfig, aggregation_ddl
from exporters.clickhouse.ingest import schema_ddl

seed, statements = json.load(sys.stdin)
conn = chdb.connect(sys.argv[1])
o = schema.SchemaOptions()
all_on = AggregationsConfig(span_latency=True, linkerd_response_rate=True)
for stmt in schema_ddl(o) + aggregation_ddl(o, all_on) + seed:
    conn.query(stmt)
results = []
for stmt in statements:
    try:
        out = conn.query(stmt, "JSONEachRow").bytes().decode()
        results.append({"rows": [json.loads(line) for line in out.splitlines() if line]})
    except Exception as exc:
        results.append({"error": str(exc)})
conn.close()
json.dump(results, sys.stdout)
"""


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(), re.S | re.M)


def _statements() -> list[str]:
    out = []
    for block in _blocks("sql"):
        for stmt in re.split(r";[ \t]*\n", block):
            if re.sub(r"--[^\n]*", "", stmt).strip():
                out.append(stmt.strip().removesuffix(";"))
    return out


STATEMENTS = _statements()


def _id(stmt: str) -> str:
    return stmt.splitlines()[0][:60]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    seed = [s for s in SEED.split(";\n") if s.strip()]
    store = tmp_path_factory.mktemp("readme") / "store"
    done = subprocess.run([sys.executable, "-c", CHILD, str(store)],
                          input=json.dumps([seed, STATEMENTS]), capture_output=True,
                          text=True, timeout=120, cwd=README.parent)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def test_readme_has_the_queries() -> None:
    assert len(STATEMENTS) >= 12


@pytest.mark.parametrize("index", range(len(STATEMENTS)),
                         ids=[_id(s) for s in STATEMENTS])
def test_statement_runs_and_finds_rows(results: list[dict[str, Any]], index: int) -> None:
    result = results[index]
    assert "error" not in result, f"{STATEMENTS[index]}\n\n{result.get('error')}"
    assert result["rows"], f"no rows: {STATEMENTS[index]}"


def test_correlation_finds_what_the_trace_touched(results: list[dict[str, Any]]) -> None:
    def rows_of(comment: str) -> list[dict[str, Any]]:
        (i,) = [i for i, s in enumerate(STATEMENTS) if comment in s]
        return list(results[i]["rows"])

    pods = rows_of("where the trace ran")
    assert {(r["pod_name"], r["node_name"]) for r in pods} == {("pod-0", "node-0"),
                                                             ("pod-1", "node-1")}
    assert sum(int(r["errors"]) for r in pods) == 1
    assert {r["node_name"] for r in rows_of("node_exporter gauges")} == {"node-0", "node-1"}
    # user mode: 10 CPU-seconds per 30 s on each of 2 CPUs; idle is not busy
    assert {round(r["busy_cores"], 6) for r in rows_of("busy CPU cores")} == {round(2 / 3, 6)}
    assert [r["reason"] for r in rows_of("Kubernetes events of")] == ["BackOff",
                                                                      "NodeHasDiskPressure"]


def test_linkerd_queries_agree(results: list[dict[str, Any]]) -> None:
    """The view and the ranged query over its state table give the same figures; the raw-table
    query sees one failure in ten."""
    linkerd = [i for i, s in enumerate(STATEMENTS) if "linkerd_response_5m" in s]
    assert len(linkerd) == 2
    view, ranged = (results[i]["rows"] for i in linkerd)
    assert [(r["Timestamp"], r["RequestsPerSecond"], r["ErrorRate"]) for r in view] == \
        [(r["Timestamp"], r["rps"], r["error_rate"]) for r in ranged]
    (raw,) = [i for i, s in enumerate(STATEMENTS) if "FROM otel_metrics_sum\n" in s
              and "response_total" in s]
    assert {r["error_rate"] for r in results[raw]["rows"] if r["error_rate"] is not None} == {0.1}


def test_aggregations_yaml() -> None:
    (block,) = [b for b in _blocks("yaml") if "aggregations:" in b]
    cfg = yaml.safe_load(block)["exporters"]["clickhouse"]["aggregations"]
    assert AggregationsConfig.model_validate(cfg) == AggregationsConfig(
        span_latency=True, linkerd_response_rate=True)
