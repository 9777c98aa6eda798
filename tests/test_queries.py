"""The queries users run downstream work unchanged on the stored data, and the store answers
SQL (the `otelgw query` command and the HTTP endpoint) while ingest runs."""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from loadtests.gatewayproc import Gateway

BASE_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z


def _trace(prefix: str) -> ExportTraceServiceRequest:
    """frontend → checkout → payments; checkout and payments on two pods of two nodes.
    Spans spread over 10 minutes so per-5-minute windows have data."""
    req = ExportTraceServiceRequest()
    services = [("frontend", "fe-1", "node-a"), ("checkout", "co-1", "node-a"),
                ("payments", "pay-1", "node-b")]
    for t in range(20):
        trace_id = uuid.uuid4().bytes
        parent = b""
        for depth, (svc, pod, node) in enumerate(services):
            rs = req.resource_spans.add()
            for k, v in (("service.name", f"{prefix}-{svc}"), ("k8s.pod.name", pod),
                         ("k8s.node.name", node), ("k8s.cluster.name", "prod")):
                a = rs.resource.attributes.add()
                a.key, a.value.string_value = k, v
            span = rs.scope_spans.add().spans.add()
            span.trace_id = trace_id
            span.span_id = uuid.uuid4().bytes[:8]
            span.parent_span_id = parent
            span.name = f"{svc} op"
            span.kind = 2
            span.start_time_unix_nano = BASE_NS + t * 30 * 10**9 + depth * 10**6
            # payments is slow (2 s) on every 4th trace
            duration = 2 * 10**9 if (svc == "payments" and t % 4 == 0) else (depth + 1) * 10**7
            span.end_time_unix_nano = span.start_time_unix_nano + duration
            parent = span.span_id
    return req


@pytest.fixture(scope="module")
def stored(gateway: Gateway) -> str:
    prefix = f"q{uuid.uuid4().hex[:6]}"
    body = _trace(prefix).SerializeToString()
    req = urllib.request.Request(f"{gateway.http_url}/v1/traces", data=body,
                                 headers={"Content-Type": "application/x-protobuf"})
    assert urllib.request.urlopen(req, timeout=30).status == 200
    # acknowledged = in the gateway's log; the rows follow
    spans = sum(len(ss.spans) for rs in _trace(prefix).resource_spans for ss in rs.scope_spans)
    assert gateway.wait_count("otel_traces", spans, f"startsWith(ServiceName, '{prefix}-')") \
        == spans
    return prefix


def test_slow_spans(gateway: Gateway, stored: str) -> None:
    rows = gateway.rows(f"""
        SELECT TraceId, Duration / 1e6 AS duration_ms, SpanName
        FROM otel_traces
        WHERE ServiceName = '{stored}-payments' AND Duration > 1e9
        ORDER BY Timestamp""")
    assert len(rows) == 5 and all(r["duration_ms"] == 2000 for r in rows)


def test_service_topology(gateway: Gateway, stored: str) -> None:
    rows = gateway.rows(f"""
        SELECT parent.ServiceName AS caller, child.ServiceName AS callee, count() AS calls
        FROM otel_traces AS child
        INNER JOIN otel_traces AS parent
            ON child.TraceId = parent.TraceId AND child.ParentSpanId = parent.SpanId
        WHERE child.ServiceName LIKE '{stored}-%'
        GROUP BY caller, callee ORDER BY caller""")
    assert [(r["caller"], r["callee"], int(r["calls"])) for r in rows] == [
        (f"{stored}-checkout", f"{stored}-payments", 20),
        (f"{stored}-frontend", f"{stored}-checkout", 20)]


def test_latency_percentiles_per_5_minutes(gateway: Gateway, stored: str) -> None:
    rows = gateway.rows(f"""
        SELECT ServiceName, toStartOfFiveMinutes(Timestamp) AS window,
               quantile(0.95)(Duration) / 1e6 AS p95_ms, quantile(0.99)(Duration) / 1e6 AS p99_ms,
               count() AS spans
        FROM otel_traces WHERE ServiceName LIKE '{stored}-%'
        GROUP BY ServiceName, window ORDER BY ServiceName, window""")
    assert len(rows) == 3 * 2  # three services, two 5-minute windows
    assert sum(int(r["spans"]) for r in rows) == 60
    pay = [r for r in rows if r["ServiceName"] == f"{stored}-payments"]
    assert all(r["p99_ms"] > 1000 for r in pay)
    fe = [r for r in rows if r["ServiceName"] == f"{stored}-frontend"]
    assert all(r["p99_ms"] == pytest.approx(10) for r in fe)


def test_trace_to_pods_and_nodes(gateway: Gateway, stored: str) -> None:
    (trace,) = gateway.rows(f"""
        SELECT TraceId FROM otel_traces WHERE ServiceName = '{stored}-frontend'
        ORDER BY Timestamp LIMIT 1""")
    rows = gateway.rows(f"""
        SELECT DISTINCT cluster_id, pod_name, node_name FROM otel_traces
        WHERE TraceId = '{trace["TraceId"]}' ORDER BY pod_name""")
    assert [(r["cluster_id"], r["pod_name"], r["node_name"]) for r in rows] == [
        ("prod", "co-1", "node-a"), ("prod", "fe-1", "node-a"), ("prod", "pay-1", "node-b")]


def test_query_command_and_http_while_ingesting(gateway: Gateway, stored: str) -> None:
    body = _trace(f"{stored}-load").SerializeToString()
    stop = threading.Event()
    sent = [0]

    def load() -> None:
        while not stop.is_set() and sent[0] < 200:
            req = urllib.request.Request(f"{gateway.http_url}/v1/traces", data=body,
                                         headers={"Content-Type": "application/x-protobuf"})
            urllib.request.urlopen(req, timeout=30).read()
            sent[0] += 1

    worker = threading.Thread(target=load)
    worker.start()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "query", "--config", str(gateway.config_path),
             "--format", "TSV",
             f"SELECT count() FROM otel_traces WHERE ServiceName = '{stored}-frontend'"],
            capture_output=True, text=True, timeout=60, check=True)
        assert out.stdout.strip() == "20"
        rows = gateway.rows("SELECT ServiceName, count() AS n FROM otel_traces "
                            f"WHERE ServiceName LIKE '{stored}-%' GROUP BY 1")
        assert {r["ServiceName"] for r in rows} >= {f"{stored}-frontend"}
        assert sent[0] > 0 or worker.is_alive()
    finally:
        stop.set()
        worker.join(60)


def test_query_endpoint_is_read_only(gateway: Gateway) -> None:
    req = urllib.request.Request(f"{gateway.query_url}/", data=b"DROP TABLE otel_traces")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 403
    assert gateway.count("otel_traces") >= 0
    assert urllib.request.urlopen(f"{gateway.query_url}/ping", timeout=10).read() == b"Ok.\n"


def _ask(gateway: Gateway, sql: str, **params: str) -> tuple[int, str]:
    url = f"{gateway.query_url}/?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url, data=sql.encode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.parametrize("sql, status, words", [
    ("SELECT 1; DROP TABLE otel_logs", 400, "multi-statements are not allowed"),
    ("SELECT * FROM file('/etc/hostname', 'LineAsString')", 403, "file() is not allowed"),
    ("SELECT * FROM URL ('http://127.0.0.1:1/', 'LineAsString')", 403, "URL() is not allowed"),
    ("SELECT * FROM remote('127.0.0.1:1', system.one)", 403, "remote() is not allowed"),
    ("SELECT 1 SETTINGS readonly = 0", 400, "readonly"),
    ("INSERT INTO otel_logs (Body) SELECT 'x'", 403, "read-only"),
    ("SELECT 1 INTO OUTFILE '{outfile}'", 403, "without INTO OUTFILE"),
    ("WITH 1 AS x SELECT x; INSERT INTO otel_logs (Body) VALUES ('x')", 400, "multi-statements"),
])
def test_query_endpoint_cannot_write_or_read_files(gateway: Gateway, tmp_path: Path, sql: str,
                                                   status: int, words: str) -> None:
    outfile = tmp_path / "out.tsv"
    code, text = _ask(gateway, sql.format(outfile=outfile))
    assert (code, words in text) == (status, True), text
    assert not outfile.exists()
    assert _ask(gateway, "EXISTS TABLE otel_logs") == (200, "1\n")
    # what looks like a second statement inside a string is data
    assert _ask(gateway, "SELECT 'a; DROP TABLE otel_logs'") == (200, "a; DROP TABLE otel_logs\n")
    # format settings are reads too
    assert _ask(gateway, "SELECT 1 SETTINGS output_format_json_quote_64bit_integers = 0") == (
        200, "1\n")


def test_query_endpoint_database_parameter_is_an_identifier(gateway: Gateway) -> None:
    code, text = _ask(gateway, "SELECT 1", database="default`; DROP TABLE otel_logs; --")
    assert code == 400 and "invalid database name" in text
    assert _ask(gateway, "SELECT currentDatabase()", database="default") == (200, "default\n")


def test_query_endpoint_non_ascii_credentials_are_refused_not_a_crash() -> None:
    from aiohttp.test_utils import make_mocked_request

    from exporters.clickhouse.config import QueryEndpoint
    from exporters.clickhouse.query_http import QueryServer

    server = QueryServer(None, QueryEndpoint(username="admin", password="pässword"),  # type: ignore[arg-type]
                         "default")
    good = base64.b64encode("admin:pässword".encode()).decode()
    bad = base64.b64encode("ädmin:x".encode()).decode()
    assert server._authorized(make_mocked_request("GET", "/", headers={
        "Authorization": f"Basic {good}"}))
    assert not server._authorized(make_mocked_request("GET", "/", headers={
        "Authorization": f"Basic {bad}"}))
    assert not server._authorized(make_mocked_request("GET", "/", headers={
        "X-ClickHouse-User": "ädmin", "X-ClickHouse-Key": "ü"}))
