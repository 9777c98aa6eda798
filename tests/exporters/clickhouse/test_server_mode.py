"""Server mode: the clickhouse exporter with `endpoint: http://...` writes through clickhouse-connect
to a ClickHouse server's HTTP interface.

The server is tests/chserver.py, a test double of that HTTP interface over the real ClickHouse
engine (chDB) in a process of its own; the gateway is a real otelgw process. Rows are read back from
the server and compared field by field with tests/oracle.py, as test_values.py does for the
embedded store.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from exporters.clickhouse.config import ClickHouseConfig
from exporters.clickhouse.ingest import schema_ddl
from loadtests.gatewayproc import Gateway, default_config, free_port
from tests import oracle, payloads
from tests.chserver import ChServer
from tests.exporters.clickhouse.test_values import check_rows

pytestmark = pytest.mark.timeout(60)

USER = "otelgw"
# what must never reach the gateway's log; ':', '@', '/' and '%' also test the URL userinfo form
SECRET = f"pw:{uuid.uuid4().hex[:10]}@/%x"
SEED = 20250701


def _ports() -> dict[str, int]:
    return {k: free_port() for k in ("grpc", "http", "query", "metrics")}


def _config(workdir: Path, ports: dict[str, int], **clickhouse: Any) -> dict[str, Any]:
    config = default_config(workdir / "data", ports)
    config["processors"]["batch"] = {"send_batch_size": 8192, "timeout": "20ms"}
    exporter = config["exporters"]["clickhouse"]
    exporter.pop("path")
    exporter.update(clickhouse)
    return config


def _post(gw: Gateway, signal: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"{gw.http_url}/v1/{signal}", data=body, method="POST",
                                 headers={"Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _fetch(ch: ChServer, database: str, table: str, run: str, attrs_col: str, expected: int
           ) -> list[dict[str, Any]]:
    where = f"ResourceAttributes['{payloads.RUN_KEY}'] = '{run}'"
    deadline = time.monotonic() + 15
    while True:
        n = int(ch.rows(f"SELECT count() AS n FROM {table} WHERE {where}", database)[0]["n"])
        if n >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert n == expected, f"{database}.{table}: {n} rows of {expected}"
    out = ch.sql(f"SELECT * FROM {table} WHERE {where} "
                 f"ORDER BY toUInt64({attrs_col}['{payloads.SEQ_KEY}']) "
                 f"SETTINGS {oracle.JSON_SETTINGS} FORMAT JSONEachRow", database)
    return [oracle.parse_row(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def chserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChServer]:
    ch = ChServer(tmp_path_factory.mktemp("chserver") / "store", free_port(), USER, SECRET)
    ch.start()
    yield ch
    assert ch.stop() == 0, ch.logs()


class Gateways:
    """Gateways started by a test, all stopped at teardown (and their logs checked)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Gateway] = []

    def make(self, name: str, **clickhouse: Any) -> Gateway:
        ports = _ports()
        gw = Gateway(self.root / name, _config(self.root / name, ports, **clickhouse), ports)
        self.started.append(gw)
        return gw

    def stop_all(self) -> None:
        for gw in self.started:
            gw.stop()


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Gateways]:
    gws = Gateways(tmp_path)
    try:
        yield gws
    finally:
        gws.stop_all()
    for gw in gws.started:
        assert SECRET not in gw.logs(), f"the password is in {gw.log_path}"
        assert urllib.parse.quote(SECRET, safe="") not in gw.logs()


@pytest.fixture(scope="module")
def server_gateway(request: pytest.FixtureRequest, chserver: ChServer,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway writing to database otel_<compress> (CREATE DATABASE runs at start)."""
    compress = request.param
    workdir = tmp_path_factory.mktemp(f"gw-{compress}")
    ports = _ports()
    gw = Gateway(workdir, _config(workdir, ports, endpoint=chserver.url, username=USER,
                                  password=SECRET, database=f"otel_{compress}",
                                  compress=compress), ports)
    gw.start()
    yield gw
    assert gw.stop() == 0, gw.logs()
    assert SECRET not in gw.logs()


# ---------------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("server_gateway", ["lz4", "none", "zstd"], indirect=True)
def test_signals_stored_field_by_field(server_gateway: Gateway, chserver: ChServer) -> None:
    compress = server_gateway.config["exporters"]["clickhouse"]["compress"]
    database = f"otel_{compress}"
    run = f"server-{compress}-{uuid.uuid4().hex[:6]}"
    traces = payloads.traces(SEED, run)
    logs = payloads.logs(SEED, run)
    metrics = payloads.metrics(SEED, run)
    for signal, req in (("traces", traces), ("logs", logs), ("metrics", metrics)):
        status, _, body = _post(server_gateway, signal, req.SerializeToString())
        assert status == 200, body

    # an acknowledgement means stored: the rows are there at once
    want = oracle.trace_rows(traces)
    check_rows("otel_traces", "SpanAttributes", want,
               _fetch(chserver, database, "otel_traces", run, "SpanAttributes", len(want)))
    want = oracle.log_rows(logs)
    check_rows("otel_logs", "LogAttributes", want,
               _fetch(chserver, database, "otel_logs", run, "LogAttributes", len(want)))
    for table, rows in oracle.metric_rows(metrics).items():
        check_rows(table, "Attributes", rows,
                   _fetch(chserver, database, table, run, "Attributes", len(rows)))
    # the contrib exporter's own view fed otel_traces_trace_id_ts from the same insert
    ids = chserver.rows("SELECT uniqExact(TraceId) AS n FROM otel_traces_trace_id_ts WHERE "
                        "TraceId IN (SELECT TraceId FROM otel_traces WHERE "
                        f"ResourceAttributes['{payloads.RUN_KEY}'] = '{run}')", database)
    assert ids[0]["n"] > 0

    # the gateway's query endpoint reads the server, in the configured database
    where = f"ResourceAttributes['{payloads.RUN_KEY}'] = '{run}'"
    assert server_gateway.count("otel_traces", where) == len(oracle.trace_rows(traces))

    # what went over the wire
    seen = [r for r in chserver.requests() if r.get("user") == USER]
    assert any(r["statement"] == f'CREATE DATABASE IF NOT EXISTS "{database}"' for r in seen)
    inserts = [r for r in seen if r.get("insert_format") == "ProtobufSingle"
               and r["statement"].startswith(f'INSERT INTO "{database}".')]
    assert len(inserts) >= 3 and all(r["status"] == 200 for r in inserts)
    for r in inserts:
        assert r["content_encoding"] == ("" if compress == "none" else compress), r
        assert {"format_schema", "format_schema_source", "format_schema_message_name",
                "input_format_protobuf_oneof_presence"} <= set(r["settings"])
        if compress != "none":
            assert r["body_bytes"] < r["data_bytes"]
    assert SECRET not in server_gateway.logs()


@pytest.mark.parametrize("server_gateway", ["lz4"], indirect=True)
def test_sdk_grpc_exporter(server_gateway: Gateway, chserver: ChServer) -> None:
    service = f"sdk-grpc-server-{uuid.uuid4().hex[:6]}"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=server_gateway.grpc_endpoint, insecure=True)))
    tracer = provider.get_tracer("server.mode")
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER) as parent:
        with tracer.start_as_current_span("SELECT carts", kind=SpanKind.CLIENT):
            pass
    provider.shutdown()
    deadline = time.monotonic() + 30  # acknowledged = in the gateway's log; the rows follow
    while True:
        rows = chserver.rows("SELECT SpanName, SpanKind, TraceId, ParentSpanId FROM otel_traces "
                             f"WHERE ServiceName = '{service}' ORDER BY SpanName", "otel_lz4")
        if len(rows) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    trace_id = format(parent.get_span_context().trace_id, "032x")
    assert [(r["SpanName"], r["SpanKind"], r["TraceId"]) for r in rows] == [
        ("GET /cart", "Server", trace_id), ("SELECT carts", "Client", trace_id)]
    assert rows[1]["ParentSpanId"] == format(parent.get_span_context().span_id, "016x")


def test_credentials_in_endpoint_url_are_used_and_not_logged(chserver: ChServer,
                                                              gateways: Gateways) -> None:
    userinfo = f"{USER}:{urllib.parse.quote(SECRET, safe='')}"
    endpoint = f"http://{userinfo}@127.0.0.1:{chserver.port}"
    gw = gateways.make("userinfo", endpoint=endpoint, database="otel_userinfo").start()
    run = f"userinfo-{uuid.uuid4().hex[:6]}"
    status, _, body = _post(gw, "logs", payloads.logs(SEED, run).SerializeToString())
    assert status == 200, body
    assert _fetch(chserver, "otel_userinfo", "otel_logs", run, "LogAttributes",
                  len(oracle.log_rows(payloads.logs(SEED, run))))
    assert f"http://{USER}:***@127.0.0.1:{chserver.port}" in gw.logs()


def test_wrong_password_fails_start_without_logging_it(chserver: ChServer,
                                                        gateways: Gateways) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    gw = gateways.make("wrong", endpoint=chserver.url, username=USER, password=wrong,
                       database="otel_wrong")
    with pytest.raises(RuntimeError, match="exited"):
        gw.start(timeout=30)
    assert "AUTHENTICATION_FAILED" in gw.logs()
    assert wrong not in gw.logs()


def test_server_down_at_start(tmp_path: Path, gateways: Gateways) -> None:
    """With create_schema false the gateway starts without the server (clickhouse-connect
    connects lazily); inserts answer 503 with Retry-After until the server is up."""
    port = free_port()
    database = "otel_late"
    gw = gateways.make("late", endpoint=f"http://127.0.0.1:{port}", username=USER,
                       password=SECRET, database=database, create_schema=False,
                       compress="lz4", retry_on_failure={"enabled": False},
                       sending_queue={"enabled": False}).start()
    run = f"late-{uuid.uuid4().hex[:6]}"
    body = payloads.traces(SEED, run).SerializeToString()
    status, headers, _ = _post(gw, "traces", body)
    assert status == 503
    assert int(headers["Retry-After"]) >= 1

    ch = ChServer(tmp_path / "late-store", port, USER, SECRET)
    try:
        ch.start()
        # the operator creates the schema (create_schema: false): the same DDL, over HTTP
        cfg = ClickHouseConfig(database=database)
        for stmt in schema_ddl(cfg.schema_options()):
            ch.sql(stmt, fmt="TabSeparated")
        status, _, out = _post(gw, "traces", body)
        assert status == 200, out
        want = oracle.trace_rows(payloads.traces(SEED, run))
        check_rows("otel_traces", "SpanAttributes", want,
                   _fetch(ch, database, "otel_traces", run, "SpanAttributes", len(want)))

        # the server goes away and comes back: 503 meanwhile, then the same client goes on
        ch.stop()
        logs = payloads.logs(SEED, run).SerializeToString()
        status, headers, out = _post(gw, "logs", logs)
        assert status == 503 and int(headers["Retry-After"]) >= 1
        assert b"ClickHouse insert failed" in out and b"format_schema" not in out
        ch.start()
        status, _, out = _post(gw, "logs", logs)
        assert status == 200, out
        assert _fetch(ch, database, "otel_logs", run, "LogAttributes",
                      len(oracle.log_rows(payloads.logs(SEED, run))))
    finally:
        ch.stop()
    # a failing insert's URL (format_schema holds a whole .proto) stays out of the log
    assert "format_schema" not in gw.logs()


def test_chserver_speaks_clickhouse_http(chserver: ChServer) -> None:
    """The double's HTTP surface that clickhouse-connect relies on (the rest is chDB's)."""
    auth = {"Authorization": "Basic " + __import__("base64").b64encode(
        f"{USER}:{SECRET}".encode()).decode()}

    def call(method: str, query: str = "", body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
        url = f"{chserver.url}/" + (f"?{query}" if query else "")
        req = urllib.request.Request(url, data=body, method=method,
                                     headers=auth if headers is None else headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    with urllib.request.urlopen(f"{chserver.url}/ping", timeout=5) as resp:
        assert resp.read() == b"Ok.\n"
    status, headers, out = call("GET", "query=SELECT+1+AS+x&default_format=JSONEachRow")
    assert (status, out) == (200, b'{"x":1}\n')
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert headers["X-ClickHouse-Timezone"] and headers["X-ClickHouse-Query-Id"]
    assert "read_rows" in headers["X-ClickHouse-Summary"]
    # settings as URL parameters, the query in the parameter and the body
    status, _, out = call("POST", "max_threads=3&query=SELECT+getSetting('max_threads')",
                          b" AS n FORMAT TSV")
    assert (status, out) == (200, b"3\n")
    # ClickHouse's errors: text, code header, HTTP status
    status, headers, out = call("POST", body=b"SELECT * FROM no_such_table")
    assert status == 404 and headers["X-ClickHouse-Exception-Code"] == "60"
    assert out.startswith(b"Code: 60. DB::Exception: ") and b"(UNKNOWN_TABLE)" in out
    status, headers, _ = call("POST", "database=no_such_db", b"SELECT 1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "81")
    status, headers, _ = call("GET", "query=CREATE+DATABASE+never")   # GET is read-only
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "164")
    status, headers, _ = call("POST", body=b"SELECT 1", headers={})      # no credentials
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (401, "516")
    # an INSERT's data after the statement, compressed by Content-Encoding
    assert call("POST", body=b"CREATE TABLE IF NOT EXISTS default.t (s String) "
                             b"ENGINE = MergeTree ORDER BY s")[0] == 200
    import lz4.frame

    status, _, _ = call("POST", "query=" + urllib.parse.quote("INSERT INTO default.t FORMAT TSV"),
                        lz4.frame.compress(b"a\nb\n"), {**auth, "Content-Encoding": "lz4"})
    assert status == 200
    status, _, _ = call("POST", body=b"INSERT INTO default.t FORMAT TSV\nc\n")
    assert status == 200
    assert call("POST", body=b"SELECT groupArray(s) FROM (SELECT s FROM default.t ORDER BY s)"
                )[2] == b"['a','b','c']\n"
    # an INSERT that fails after its data was read (here a view that throws) is an error, as
    # on the server, not a success that stored nothing
    assert call("POST", body=b"CREATE MATERIALIZED VIEW default.t_boom ENGINE = Null AS "
                             b"SELECT throwIf(s = 'bad', 'view failed') AS x FROM default.t"
                )[0] == 200
    status, headers, out = call("POST", body=b"INSERT INTO default.t FORMAT TSV\nbad\n")
    assert status >= 400 and headers["X-ClickHouse-Exception-Code"] == "395", out
    assert b"view failed" in out


def test_compress_option_and_redaction() -> None:
    from exporters.clickhouse.engines.server import ServerEngine, compression_method, redact

    assert [compression_method(c) for c in ("", "none", "lz4", "zstd", "gzip", "true")] == [
        None, None, "lz4", "zstd", "gzip", "lz4"]
    with pytest.raises(ValueError, match="snappy"):
        compression_method("snappy")
    assert redact("https://u:p%40ss@ch.example:8443/x") == "https://u:***@ch.example:8443/x"
    assert redact("http://ch:8123") == "http://ch:8123"
    # nothing is contacted until the first statement
    engine = ServerEngine(f"http://127.0.0.1:{free_port()}", "u", "p", "otel", "lz4", 5, {})
    with pytest.raises(Exception) as exc:
        engine.insert('INSERT INTO "otel"."t"', b"", "ProtobufSingle", {})
    assert getattr(exc.value, "retryable", False) and "cannot connect" in str(exc.value)
    engine.close()
