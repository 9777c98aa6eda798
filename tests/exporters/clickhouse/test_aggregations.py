"""Pre-aggregations (exporters/clickhouse/aggregations.py) on the real engine, fed by a real
gateway: spans over OTLP/HTTP, and the Linkerd proxy capture scraped by the prometheus receiver
while its response_total counters grow (one series resets). Every figure of the views must
equal what the test computes from the raw rows of otel_traces / otel_metrics_sum, and what the
served counters say.

The store is created before the gateway starts (schema_ddl, then aggregation_ddl, in a child
process); the gateway's own `CREATE … IF NOT EXISTS` then leaves it as it is.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from exporters.clickhouse import schema
from exporters.clickhouse.aggregations import (
    AggregationsConfig,
    aggregating_engine,
    aggregation_ddl,
)
from exporters.clickhouse.config import ClickHouseConfig
from exporters.clickhouse.ingest import schema_ddl
from gateway.errors import ConfigError
from loadtests.gatewayproc import Gateway, default_config
from tests.conftest import SHARED_DATA
from tests.receivers.prometheus.test_scrape_loop import TargetServer, sequence

pytestmark = pytest.mark.timeout(120)

ALL = AggregationsConfig(span_latency=True, linkerd_response_rate=True)
T0 = 1_735_689_720  # 2025-01-01T00:02:00Z: 12 scrapes a minute apart span three 5-min buckets
STEPS = 12
SPAN_T0 = 1_735_689_600 * 10**9  # 2025-01-01T00:00:00Z
# service → (namespace, deployment) the scrape config gives its target
WORKLOADS = {"web": ("emojivoto", "web"), "voting": ("emojivoto", "voting")}

CREATE_STORE = """
import sys, chdb
conn = chdb.connect(sys.argv[1])
for stmt in sys.stdin.read().split("\\0"):
    conn.query(stmt)
conn.close()
"""


def create_store(path: Path, stmts: list[str]) -> None:
    subprocess.run([sys.executable, "-c", CREATE_STORE, str(path)], input="\0".join(stmts),
                   text=True, check=True, timeout=60)


# ---------------------------------------------------------------- Linkerd counters


def _series(capture: str) -> list[str]:
    """The capture's response_total samples (label text), plus an inbound failure series made
    from its first one (the capture has only successes)."""
    lines = [ln.split("}")[0] + "}" for ln in capture.splitlines()
             if ln.startswith("response_total{")]
    assert len(lines) == 4
    failure = lines[0].replace('status_code="200"', 'status_code="503"').replace(
        'classification="success"', 'classification="failure"')
    return [*lines, failure]


def counter_values(seed: int, n: int) -> list[list[float]]:
    """Per scrape, the value of each of n series: growing by a random amount each minute;
    series 1 resets (its proxy restarted) at scrape 6."""
    rng = random.Random(seed)
    values = [[float(rng.randrange(100, 20000)) for _ in range(n)]]
    for step in range(1, STEPS):
        row = [v + rng.randrange(0, 400) for v in values[-1]]
        if step == 6:
            row[1] = float(rng.randrange(0, 50))
        values.append(row)
    return values


def exposition(capture: str, series: list[str], values: list[float], t_ms: int) -> str:
    """The whole capture, its response_total family replaced by our series, with timestamps."""
    out, done = [], False
    for line in capture.splitlines():
        if line.startswith("response_total{"):
            if not done:
                out += [f"{s} {v:.0f} {t_ms}" for s, v in zip(series, values, strict=True)]
                done = True
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def label(series: str, name: str) -> str:
    key = f'{name}="'
    return series.split(key)[1].split('"')[0] if key in series else ""


def expected_increases(series: list[str], values: list[list[float]]
                       ) -> dict[tuple[int, str], tuple[float, float]]:
    """(bucket, direction) → (requests, failures), computed from the served values alone:
    Prometheus' increase() without extrapolation, each step's increase in its sample's bucket."""
    out: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for step in range(1, STEPS):
        bucket = (T0 + 60 * step) // 300 * 300
        for i, s in enumerate(series):
            now, before = values[step][i], values[step - 1][i]
            inc = now - before if now >= before else now
            acc = out[(bucket, label(s, "direction"))]
            acc[0] += inc
            if label(s, "classification") == "failure":
                acc[1] += inc
    return {k: (v[0], v[1]) for k, v in out.items()}


def increases_from_rows(rows: list[dict[str, Any]]) -> dict[tuple[str, int, str], list[float]]:
    """(deployment, bucket, direction) → [requests, failures] from raw otel_metrics_sum rows:
    per series (resource + attributes) in time order, the same increase rule."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    attrs: dict[str, dict[str, str]] = {}
    for r in rows:
        key = json.dumps([r["ResourceAttributes"], r["Attributes"]], sort_keys=True)
        series[key].append((int(r["t"]), float(r["Value"])))
        attrs[key] = r["Attributes"]
    out: dict[tuple[str, int, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for key, points in series.items():
        a = attrs[key]
        points = sorted(set(points))  # a repeated scrape of the last step repeats its sample
        for (_, before), (t, now) in zip(points, points[1:]):
            inc = now - before if now >= before else now
            acc = out[(a["deployment"], t // 300 * 300, a["direction"])]
            acc[0] += inc
            if a["classification"] == "failure":
                acc[1] += inc
    return out


# ---------------------------------------------------------------- spans


def span_request(seed: int) -> ExportTraceServiceRequest:
    """Three minutes of spans of two services and two operations each, log-normal durations,
    about one in ten an error."""
    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    for service in ("checkout", "cart"):
        rs = req.resource_spans.add()
        for key, value in (("service.name", service), ("k8s.cluster.name", "ci")):
            kv = rs.resource.attributes.add()
            kv.key, kv.value.string_value = key, value
        spans = rs.scope_spans.add().spans
        for minute in range(3):
            for name in ("GET /items", "POST /order"):
                for _ in range(rng.randrange(40, 120)):
                    start = SPAN_T0 + minute * 60 * 10**9 + rng.randrange(60 * 10**9)
                    duration = int(rng.lognormvariate(math.log(20e6), 0.9))
                    spans.append(Span(
                        trace_id=rng.randbytes(16), span_id=rng.randbytes(8), name=name,
                        kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=start,
                        end_time_unix_nano=start + duration,
                        status=Status(code=Status.STATUS_CODE_ERROR if rng.random() < 0.1
                                      else Status.STATUS_CODE_OK)))
    return req


def nearest_ranks(values: list[int], q: float) -> tuple[int, int]:
    """The values around rank q·(n−1): a quantile estimate of value x is right when x lies
    between them (within the sketch's relative accuracy)."""
    pos = q * (len(values) - 1)
    return values[math.floor(pos)], values[math.ceil(pos)]


# ---------------------------------------------------------------- the gateway


@pytest.fixture(scope="module")
def linkerd() -> tuple[str, list[str]]:
    path = SHARED_DATA / "prometheus" / "linkerd-proxy.prom"
    if not path.is_file():
        pytest.skip(f"the shared Linkerd capture is not at {path} (../shared/data)")
    capture = path.read_text()
    return capture, _series(capture)


@pytest.fixture(scope="module")
def counters(linkerd: tuple[str, list[str]]) -> dict[str, list[list[float]]]:
    return {name: counter_values(seed, len(linkerd[1]))
            for seed, name in enumerate(WORKLOADS)}


@pytest.fixture(scope="module")
def targets(linkerd: tuple[str, list[str]], counters: dict[str, list[list[float]]]
            ) -> Iterator[TargetServer]:
    capture, series = linkerd
    srv = TargetServer().start()
    for name, values in counters.items():
        srv.routes[f"/{name}"] = sequence(*(
            exposition(capture, series, row, (T0 + 60 * step) * 1000)
            for step, row in enumerate(values)))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def agg_gateway(tmp_path_factory: pytest.TempPathFactory, targets: TargetServer
                ) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("aggregations")
    gw = Gateway(workdir)
    o = schema.SchemaOptions()
    create_store(gw.data_dir, schema_ddl(o) + aggregation_ddl(o, ALL))
    cfg = default_config(gw.data_dir, gw.ports)
    cfg["receivers"]["prometheus"] = {"config": {"scrape_configs": [{
        "job_name": "linkerd-proxy", "scrape_interval": "300ms", "scrape_timeout": "300ms",
        "static_configs": [
            {"targets": [targets.address], "labels": {
                "__metrics_path__": f"/{name}", "instance": name, "namespace": ns,
                "deployment": deployment}}
            for name, (ns, deployment) in WORKLOADS.items()]}]}}
    cfg["processors"]["batch"]["timeout"] = "200ms"
    cfg["service"]["pipelines"] = {
        "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["clickhouse"]},
        "metrics": {"receivers": ["prometheus"], "processors": ["batch"],
                    "exporters": ["clickhouse"]}}
    gw = Gateway(workdir, cfg, gw.ports).start()
    yield gw
    code = gw.stop()
    assert code == 0, f"otelgw exited with {code}:\n{gw.logs()}"


def post_spans(gw: Gateway, req: ExportTraceServiceRequest) -> None:
    http = urllib.request.Request(f"{gw.http_url}/v1/traces", data=req.SerializeToString(),
                                  method="POST",
                                  headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(http, timeout=30) as resp:
        assert resp.status == 200


# ---------------------------------------------------------------- tests


def test_off_by_default(gateway: Gateway) -> None:
    assert aggregation_ddl(schema.SchemaOptions(), AggregationsConfig()) == []
    assert gateway.count("system.tables", "name LIKE '%latency_1m%' OR name LIKE "
                         "'%linkerd_response%'") == 0


def test_ddl_options() -> None:
    o = schema.SchemaOptions(database="ot\"el", cluster="prod", ttl_seconds=3 * 86400,
                             engine="ReplicatedMergeTree('/t/{shard}/{table}', '{replica}')",
                             table_names={"traces": "spans", "metrics_sum": "sums"})
    stmts = aggregation_ddl(o, ALL)
    assert len(stmts) == 6
    assert all(' ON CLUSTER "prod"' in s.splitlines()[0] for s in stmts)
    assert all("IF NOT EXISTS \"ot\\\"el\"." in s for s in stmts)
    tables = [s for s in stmts if s.startswith("CREATE TABLE")]
    assert [t.split("(", 1)[0].split(".")[1].split()[0] for t in tables] == [
        '"spans_latency_1m_state"', '"sums_linkerd_response_5m_state"']
    for t in tables:
        assert "ENGINE = ReplicatedAggregatingMergeTree('/t/{shard}/{table}', '{replica}')" in t
        assert "TTL Timestamp + toIntervalDay(3)" in t
    views = [s for s in stmts if "MATERIALIZED VIEW" in s]
    assert 'FROM "ot\\"el"."spans"' in views[0] and 'FROM "ot\\"el"."sums"' in views[1]
    plain = aggregation_ddl(schema.SchemaOptions(), ALL)
    assert not any("TTL" in s or "ON CLUSTER" in s for s in plain)
    assert "ENGINE = AggregatingMergeTree()" in plain[0]
    assert aggregating_engine("SharedMergeTree") == "SharedAggregatingMergeTree()"
    assert aggregating_engine("ReplacingMergeTree(ver)") is None
    assert ALL.enabled and not AggregationsConfig().enabled
    with pytest.raises(ConfigError, match="ReplacingMergeTree"):
        aggregation_ddl(schema.SchemaOptions(engine="ReplacingMergeTree()"), ALL)


def test_span_latency_per_minute(agg_gateway: Gateway) -> None:
    req = span_request(7)
    post_spans(agg_gateway, req)
    n = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
    assert agg_gateway.wait_count("otel_traces", n, "cluster_id = 'ci'") == n
    # the view's table is written by a view of otel_traces: its part becomes visible on its own
    agg_gateway.wait_count("otel_traces_latency_1m", 12, "cluster_id = 'ci' AND SpanKind = 'Server'")
    raw = agg_gateway.rows("SELECT ServiceName AS s, SpanName AS op, "
                           "toUnixTimestamp(toStartOfMinute(Timestamp)) AS t, Duration AS d, "
                           "StatusCode AS code FROM otel_traces WHERE cluster_id = 'ci'")
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in raw:
        groups[(r["s"], r["op"], int(r["t"]))].append(r)
    got = {(r["ServiceName"], r["SpanName"], int(r["t"])): r for r in agg_gateway.rows(
        "SELECT *, toUnixTimestamp(Timestamp) AS t FROM otel_traces_latency_1m "
        "WHERE cluster_id = 'ci' AND SpanKind = 'Server'")}
    assert set(got) == set(groups) and len(got) == 12
    for key, rows in groups.items():
        g = got[key]
        durations = sorted(int(r["d"]) for r in rows)
        errors = sum(r["code"] == "Error" for r in rows)
        assert (int(g["Count"]), int(g["Errors"])) == (len(rows), errors), key
        assert g["ErrorRate"] == pytest.approx(errors / len(rows))
        assert g["DurationAvg"] == pytest.approx(sum(durations) / len(durations))
        for q in (50, 90, 95, 99):
            low, high = nearest_ranks(durations, q / 100)
            assert low * 0.99 <= g[f"DurationP{q}"] <= high * 1.01, (key, q)
    # merged over minutes and span names, the sketches equal one sketch of the raw durations
    (merged,) = agg_gateway.rows(
        "SELECT quantilesDDMerge(0.01, 0.5, 0.9, 0.95, 0.99)(DurationQuantiles) AS q FROM "
        "otel_traces_latency_1m_state WHERE cluster_id = 'ci' AND ServiceName = 'checkout'")
    (direct,) = agg_gateway.rows(
        "SELECT quantilesDD(0.01, 0.5, 0.9, 0.95, 0.99)(Duration) AS q FROM otel_traces "
        "WHERE cluster_id = 'ci' AND ServiceName = 'checkout'")
    assert merged["q"] == pytest.approx(direct["q"], rel=1e-12)


def test_linkerd_rate_per_5_minutes(agg_gateway: Gateway, linkerd: tuple[str, list[str]],
                                    counters: dict[str, list[list[float]]]) -> None:
    # every scrape's samples, not only the last one's: two consumers may store batches out
    # of order
    expected = len(linkerd[1]) * len(WORKLOADS) * STEPS
    samples = ("SELECT uniqExact(ResourceAttributes, Attributes, TimeUnix) AS n "
               "FROM otel_metrics_sum WHERE MetricName = 'response_total' AND Flags = 0")
    deadline = time.monotonic() + 30
    while int(agg_gateway.rows(samples)[0]["n"]) < expected:
        assert time.monotonic() < deadline, "not every scrape's samples arrived"
        time.sleep(0.2)
    raw = agg_gateway.rows(
        "SELECT ResourceAttributes, Attributes, toUnixTimestamp(TimeUnix) AS t, Value "
        "FROM otel_metrics_sum WHERE MetricName = 'response_total' AND Flags = 0")
    from_rows = increases_from_rows(raw)
    got = agg_gateway.rows(
        "SELECT *, toUnixTimestamp(Timestamp) AS t FROM otel_metrics_sum_linkerd_response_5m "
        "ORDER BY t, workload, direction")
    assert {(r["namespace"], r["workload"]) for r in got} == set(WORKLOADS.values())
    view = {(r["workload"], int(r["t"]), r["direction"]): r for r in got}
    assert set(view) == set(from_rows) and len(view) == 2 * 3 * 2
    for key, (requests, failures) in from_rows.items():
        g = view[key]
        assert (g["Requests"], g["Failures"]) == (requests, failures), key
        assert g["RequestsPerSecond"] == pytest.approx(requests / 300)
        assert g["ErrorRate"] == (pytest.approx(failures / requests) if requests else None)
    # and what the target served: nothing lost at bucket boundaries or at the reset
    for name, values in counters.items():
        for (bucket, direction), (requests, failures) in expected_increases(
                linkerd[1], values).items():
            g = view[(name, bucket, direction)]
            assert (g["Requests"], g["Failures"]) == (requests, failures)
    assert any(g["Failures"] > 0 for g in got)
    # the reset started a new run (StartTimeUnix) of that series: the path above was taken
    (runs,) = agg_gateway.rows("SELECT max(n) AS n FROM (SELECT uniqExact(StartTimeUnix) AS n "
                               "FROM otel_metrics_sum_linkerd_response_5m_state GROUP BY SeriesId)")
    assert int(runs["n"]) == 2


# Each object's definition as released, by name. `CREATE … IF NOT EXISTS` keeps an object of an
# earlier release as it is, so a changed definition under the same name would never reach a
# deployed store: change the name with it (aggregations.py), then record the new hash here.
RELEASED = {
    "otel_traces_latency_1m_state": "25da2a59dae9f15a",
    "otel_traces_latency_1m_mv": "39865147849fcd07",
    "otel_traces_latency_1m": "a53ebf17edfeb8bb",
    "otel_metrics_sum_linkerd_response_5m_state": "ba02e3411b8f752b",
    "otel_metrics_sum_linkerd_response_5m_mv": "c08889899606bd5c",
    "otel_metrics_sum_linkerd_response_5m": "0d9db66a5d0a28dc",
}


def test_a_changed_definition_comes_with_a_new_name() -> None:
    options = ClickHouseConfig.model_validate({}).schema_options()
    found = {}
    for stmt in aggregation_ddl(options, ALL):
        match = re.match(r'CREATE (?:TABLE|MATERIALIZED VIEW|VIEW) IF NOT EXISTS "default"\."'
                         r'([^"]+)"', stmt)
        assert match, stmt[:80]
        found[match.group(1)] = hashlib.sha256(stmt.encode()).hexdigest()[:16]
    changed = {name for name in found.keys() & RELEASED.keys() if found[name] != RELEASED[name]}
    assert not changed, (f"{sorted(changed)} changed under a released name: deployed stores "
                         "would keep the old definition; give the objects new names")
    assert found.keys() == RELEASED.keys(), "record new objects' hashes in RELEASED"
