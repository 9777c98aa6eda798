"""OTLP/HTTP as the specification describes it, against a real gateway process: what a client sees
(status, headers, a google.rpc.Status body in the request's encoding) and what lands in ClickHouse.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import threading
import urllib.parse
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import grpc
import pytest
import zstandard
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from gateway.component import ComponentID
from gateway.errors import RefusedError
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry
from loadtests.gatewayproc import Gateway, default_config, free_port
from receivers.otlp.common import Ingest
from receivers.otlp.config import HttpConfig
from receivers.otlp.http import OtlpHttpServer
from tests.receivers.otlp import otlpdata

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
LIMIT = 20 * 1024 * 1024  # the default max_request_body_size


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def rpc_status(self) -> Any:
        """The google.rpc.Status body, decoded per the response Content-Type."""
        status = status_pb2.Status()
        ctype = self.headers.get("content-type", "")
        if ctype.startswith(JSON):
            doc = json.loads(self.body)
            status.code = doc.get("code", 0)
            status.message = doc.get("message", "")
        else:
            assert ctype.startswith(PROTOBUF), ctype
            status.ParseFromString(self.body)
        return status

    def __repr__(self) -> str:
        return f"<{self.status} {self.headers.get('content-type')} {self.body[:300]!r}>"


def post(base_url: str, path: str, body: bytes | None, ctype: str | None = PROTOBUF,
         encoding: str | None = None, method: str = "POST",
         headers: dict[str, str] | None = None) -> Reply:
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    hdrs = dict(headers or {})
    if ctype is not None:
        hdrs["Content-Type"] = ctype
    if encoding is not None:
        hdrs["Content-Encoding"] = encoding
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def compress(data: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "deflate-raw":
        c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return c.compress(data) + c.flush()
    if encoding == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    raise AssertionError(encoding)


def stored_spans(gw: Gateway, service: str, n: int = 1) -> list[dict[str, Any]]:
    assert gw.wait_count("otel_traces", n, f"ServiceName = '{service}'") == n
    return gw.rows("SELECT SpanName, TraceId, SpanId, SpanKind, StatusCode, StatusMessage "
                   f"FROM otel_traces WHERE ServiceName = '{service}' ORDER BY SpanId")


# ---------------------------------------------------------------------------- success paths


def test_protobuf_traces_are_stored(gateway: Gateway) -> None:
    service = otlpdata.service("http-pb")
    reply = post(gateway.http_url, "/v1/traces",
                 otlpdata.traces(service, spans=2).SerializeToString())
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == PROTOBUF
    ExportTraceServiceResponse.FromString(reply.body)  # an Export*ServiceResponse, in protobuf
    rows = stored_spans(gateway, service, 2)
    assert [r["SpanName"] for r in rows] == ["GET /cart", "GET /cart"]
    assert {r["TraceId"] for r in rows} == {otlpdata.TRACE_ID.hex()}
    assert [r["SpanId"] for r in rows] == ["0000000000000001", "0000000000000002"]
    assert {r["SpanKind"] for r in rows} == {"Server"}


def test_json_traces_are_stored_with_hex_ids(gateway: Gateway) -> None:
    service = otlpdata.service("http-json")
    reply = post(gateway.http_url, "/v1/traces", json.dumps(otlpdata.json_traces(service)).encode(),
                 JSON)
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == JSON
    assert json.loads(reply.body) == {}  # ExportTraceServiceResponse without partial success
    [row] = stored_spans(gateway, service)
    assert row["TraceId"] == otlpdata.TRACE_ID.hex()
    assert row["SpanId"] == otlpdata.SPAN_ID.hex()
    assert row["SpanKind"] == "Client"  # enum sent as the int 3
    assert (row["StatusCode"], row["StatusMessage"]) == ("Error", "boom")


def test_json_logs_are_stored(gateway: Gateway) -> None:
    service = otlpdata.service("http-json-logs")
    body = json.dumps(otlpdata.json_logs(service, body="disk full")).encode()
    reply = post(gateway.http_url, "/v1/logs", body, "application/json; charset=utf-8")
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == JSON
    assert gateway.wait_count("otel_logs", 1, f"ServiceName = '{service}'") == 1
    [row] = gateway.rows("SELECT Body, SeverityNumber, SeverityText, TraceId, SpanId "
                         f"FROM otel_logs WHERE ServiceName = '{service}'")
    assert row == {"Body": "disk full", "SeverityNumber": 17, "SeverityText": "ERROR",
                   "TraceId": otlpdata.TRACE_ID.hex(), "SpanId": otlpdata.SPAN_ID.hex()}


def test_metrics_path_answers_protobuf(gateway: Gateway) -> None:
    reply = post(gateway.http_url, "/v1/metrics", otlpdata.empty_metrics().SerializeToString())
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == PROTOBUF


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "deflate-raw", "zstd"])
@pytest.mark.parametrize("ctype", [PROTOBUF, JSON])
def test_compressed_bodies_are_stored(gateway: Gateway, encoding: str, ctype: str) -> None:
    service = otlpdata.service(f"http-{encoding}")
    raw = (otlpdata.traces(service).SerializeToString() if ctype == PROTOBUF
           else json.dumps(otlpdata.json_traces(service)).encode())
    header = "deflate" if encoding == "deflate-raw" else encoding
    reply = post(gateway.http_url, "/v1/traces", compress(raw, encoding), ctype, header)
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == ctype
    assert len(stored_spans(gateway, service)) == 1


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_several_gzip_members_or_zstd_frames_are_one_body(gateway: Gateway,
                                                          encoding: str) -> None:
    # Concatenated protobuf requests are one request; so are concatenated gzip members / zstd
    # frames one body: nothing after the first member may be dropped.
    service = otlpdata.service(f"http-multi-{encoding}")
    first = otlpdata.traces(service, span_name="first").SerializeToString()
    second = otlpdata.traces(service, span_name="second").SerializeToString()
    body = compress(first, encoding) + compress(second, encoding)
    reply = post(gateway.http_url, "/v1/traces", body, PROTOBUF, encoding)
    assert reply.status == 200, reply
    assert gateway.wait_count("otel_traces", 2, f"ServiceName = '{service}'") == 2
    names = {r["SpanName"] for r in gateway.rows(
        f"SELECT SpanName FROM otel_traces WHERE ServiceName = '{service}'")}
    assert names == {"first", "second"}


# ---------------------------------------------------------------------------- refused requests


def test_garbage_protobuf_is_400_with_a_protobuf_status(gateway: Gateway) -> None:
    # field 1, length-delimited, claims a length far beyond the body
    reply = post(gateway.http_url, "/v1/traces", b"\x0a\xff\xff\xff\xff\x0f\x01\x02")
    assert reply.status == 400, reply
    assert reply.headers["content-type"] == PROTOBUF
    status = reply.rpc_status()
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert "protobuf" in status.message and "ExportTraceServiceRequest" in status.message


@pytest.mark.parametrize("body, words", [
    (b"{not json", "not valid JSON"),
    (b"[]", "must be an object"),
    (json.dumps({"resourceSpans": "nope"}).encode(), "resourceSpans"),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"name": "x", "startTimeUnixNano": "yesterday"}]}]}]}).encode(), "startTimeUnixNano"),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"name": 42, "kind": "sideways"}]}]}]}).encode(), "ExportTraceServiceRequest"),
    (b"[" * 50_000 + b"]" * 50_000, "JSON"),
], ids=["syntax", "array", "wrong-type", "bad-int64", "bad-enum-and-string", "deep"])
def test_bad_json_is_400_with_a_json_status(gateway: Gateway, body: bytes, words: str) -> None:
    reply = post(gateway.http_url, "/v1/traces", body, JSON)
    assert reply.status == 400, reply
    assert reply.headers["content-type"] == JSON
    status = reply.rpc_status()
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert words in status.message


@pytest.mark.parametrize("field, value", [
    ("traceId", "not-hex-at-all"),
    ("traceId", "abcd"),                              # hex, but not 16 bytes
    ("spanId", otlpdata.TRACE_ID.hex()),              # 16 bytes where 8 belong
    ("parentSpanId", "eee19b7ec3c1b17"),              # odd number of digits
])
def test_wrong_hex_id_is_400_naming_the_field(gateway: Gateway, field: str, value: str) -> None:
    doc = otlpdata.json_traces(otlpdata.service("http-badid"))
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0][field] = value
    reply = post(gateway.http_url, "/v1/traces", json.dumps(doc).encode(), JSON)
    assert reply.status == 400, reply
    message = reply.rpc_status().message
    assert f"spans[0].{field}" in message and value in message


@pytest.mark.parametrize("encoding", ["gzip", "zstd", "deflate"])
def test_truncated_compressed_body_is_400(gateway: Gateway, encoding: str) -> None:
    body = compress(otlpdata.traces(otlpdata.service("http-trunc"), spans=50).SerializeToString(),
                    encoding)
    reply = post(gateway.http_url, "/v1/traces", body[: len(body) // 2], PROTOBUF, encoding)
    assert reply.status == 400, reply
    status = reply.rpc_status()
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert f"cannot decompress the {encoding} body" in status.message
    assert "truncated" in status.message


def test_unsupported_content_encoding_is_400(gateway: Gateway) -> None:
    reply = post(gateway.http_url, "/v1/traces", b"\x1b\x00\x00", PROTOBUF, "br")
    assert reply.status == 400, reply
    assert "Content-Encoding 'br'" in reply.rpc_status().message


@pytest.mark.parametrize("encoding, ctype", [("gzip", PROTOBUF), ("zstd", JSON),
                                             ("deflate", PROTOBUF)])
def test_decompression_bomb_is_413(gateway: Gateway, encoding: str, ctype: str) -> None:
    bomb = compress(b"\0" * (LIMIT + 1024 * 1024), encoding)
    assert len(bomb) < 100_000  # small on the wire, over the limit once decompressed
    reply = post(gateway.http_url, "/v1/traces", bomb, ctype, encoding)
    assert reply.status == 413, reply
    assert reply.headers["content-type"] == ctype
    status = reply.rpc_status()
    assert "decompressed body is over the limit" in status.message


def test_body_over_the_limit_is_413(gateway: Gateway) -> None:
    reply = post(gateway.http_url, "/v1/logs", b"\0" * (LIMIT + 1))
    assert reply.status == 413, reply
    assert "over the limit" in reply.rpc_status().message


def test_a_body_arriving_in_pieces_is_stored_whole(gateway: Gateway) -> None:
    """Chunked, with pauses: the receiver reads the body in several pieces and joins them."""
    service = otlpdata.service("http-pieces")
    body = otlpdata.traces(service, spans=300).SerializeToString()
    pieces = [body[i:i + 4096] for i in range(0, len(body), 4096)]
    assert len(pieces) > 3

    def slowly() -> Iterator[bytes]:
        for piece in pieces:
            yield piece
            threading.Event().wait(0.01)

    url = urllib.parse.urlsplit(gateway.http_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("POST", "/v1/traces", body=slowly(),
                     headers={"Content-Type": PROTOBUF}, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        assert not ExportTraceServiceResponse.FromString(resp.read()).HasField(
            "partial_success")
    finally:
        conn.close()
    assert len(stored_spans(gateway, service, 300)) == 300


def test_chunked_body_over_the_limit_is_413(gateway: Gateway) -> None:
    # no Content-Length to check up front: the limit applies while reading
    chunk = b"\0" * (1024 * 1024)
    url = urllib.parse.urlsplit(gateway.http_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("POST", "/v1/logs", body=iter([chunk] * 21),
                     headers={"Content-Type": PROTOBUF}, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 413
        resp.read()
    except (BrokenPipeError, ConnectionResetError):
        pytest.fail("the gateway closed the connection instead of answering 413")
    finally:
        conn.close()


@pytest.mark.parametrize("ctype", ["text/plain", "application/xml", None])
def test_unsupported_content_type_is_415(gateway: Gateway, ctype: str | None) -> None:
    reply = post(gateway.http_url, "/v1/traces", b"{}", ctype)
    assert reply.status == 415, reply
    assert b"application/x-protobuf" in reply.body and b"application/json" in reply.body


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(gateway: Gateway, method: str) -> None:
    reply = post(gateway.http_url, "/v1/traces", None, None, method=method)
    assert reply.status == 405, reply
    assert reply.headers.get("allow") == "POST"


@pytest.mark.parametrize("path", ["/v1/trace", "/v2/traces", "/", "/v1/traces/extra"])
def test_unknown_path_is_404(gateway: Gateway, path: str) -> None:
    reply = post(gateway.http_url, path, b"", PROTOBUF)
    assert reply.status == 404, reply


def test_good_requests_are_served_after_bad_ones(gateway: Gateway) -> None:
    bad: list[tuple[bytes | None, str | None, str | None, str]] = [
        (b"\x0a\xff\xff\xff\xff\x0f", PROTOBUF, None, "POST"),
        (b"{", JSON, None, "POST"),
        (compress(b"\0" * (LIMIT + 1), "gzip"), PROTOBUF, "gzip", "POST"),
        (compress(b"\0" * (LIMIT + 1), "zstd"), PROTOBUF, "zstd", "POST"),
        (gzip.compress(b"x" * 1000)[:20], PROTOBUF, "gzip", "POST"),
        (b"{}", "text/plain", None, "POST"),
        (None, None, None, "GET"),
    ]
    for body, ctype, encoding, method in bad:
        assert post(gateway.http_url, "/v1/logs", body, ctype, encoding, method).status >= 400

    service = otlpdata.service("http-after-bad")
    reply = post(gateway.http_url, "/v1/logs", otlpdata.logs(service).SerializeToString())
    assert reply.status == 200, reply
    assert gateway.wait_count("otel_logs", 1, f"ServiceName = '{service}'") == 1

    # and on one keep-alive connection: a refused request does not poison the next one
    service = otlpdata.service("http-keepalive")
    url = urllib.parse.urlsplit(gateway.http_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        for body, ctype in [(b"{", JSON), (b"\x0a\xff\xff", PROTOBUF),
                            (otlpdata.logs(service).SerializeToString(), PROTOBUF)]:
            conn.request("POST", "/v1/logs", body=body, headers={"Content-Type": ctype})
            resp = conn.getresponse()
            resp.read()
        assert resp.status == 200
    finally:
        conn.close()
    assert gateway.wait_count("otel_logs", 1, f"ServiceName = '{service}'") == 1


# ------------------------------------------------------------- the gateway cannot take data now


class _FakeClickHouse(BaseHTTPRequestHandler):
    """Just enough of ClickHouse's HTTP interface for the exporter to start (clickhouse-connect
    asks for the version and settings when it connects)."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        query = urllib.parse.unquote_plus(self.path) + self.rfile.read(length).decode(
            errors="replace")
        out = b"24.8.1.1\tUTC\n" if "version()" in query else b""
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def unavailable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway whose ClickHouse server went away after it started: every insert fails."""
    fake = ThreadingHTTPServer(("127.0.0.1", 0), _FakeClickHouse)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    workdir = tmp_path_factory.mktemp("unavailable")
    ports = {k: free_port() for k in ("grpc", "http", "query", "metrics")}
    config = default_config(workdir / "data", ports)
    config["exporters"]["clickhouse"] = {
        "endpoint": f"http://127.0.0.1:{fake.server_address[1]}", "create_schema": False,
        "retry_on_failure": {"enabled": False},
        "sending_queue": {"enabled": False}}  # answer with the store's outcome, not the log's
    gw = Gateway(workdir, config, ports)
    try:
        gw.start()
    finally:
        fake.shutdown()
        fake.server_close()  # the port is closed now: inserts get "connection refused"
    yield gw
    assert gw.stop() == 0, gw.logs()


@pytest.mark.parametrize("ctype", [PROTOBUF, JSON])
def test_store_unavailable_is_503_with_retry_after(unavailable: Gateway, ctype: str) -> None:
    service = otlpdata.service("http-503")
    body = (otlpdata.logs(service).SerializeToString() if ctype == PROTOBUF
            else json.dumps(otlpdata.json_logs(service)).encode())
    reply = post(unavailable.http_url, "/v1/logs", body, ctype)
    assert reply.status == 503, reply
    assert reply.headers["content-type"] == ctype
    assert int(reply.headers["retry-after"]) >= 1
    status = reply.rpc_status()
    assert status.code == code_pb2.UNAVAILABLE
    assert "ClickHouse insert failed" in status.message


def test_store_unavailable_is_grpc_unavailable_with_retry_info(unavailable: Gateway) -> None:
    with grpc.insecure_channel(unavailable.grpc_endpoint) as channel:
        stub = LogsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Export(otlpdata.logs(otlpdata.service("grpc-503")), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    details = dict(err.value.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    assert status.code == code_pb2.UNAVAILABLE
    infos = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(infos) == 1
    info = error_details_pb2.RetryInfo()
    infos[0].Unpack(info)
    assert info.retry_delay.seconds >= 1


def test_bad_requests_still_400_when_the_store_is_down(unavailable: Gateway) -> None:
    # an undecodable request is the client's fault whatever the store's state
    reply = post(unavailable.http_url, "/v1/logs", b"{", JSON)
    assert reply.status == 400, reply


class _Refusing:
    """A pipeline whose limit refuses everything (what a memory limiter does under pressure)."""

    async def consume(self, payload: Any) -> None:
        raise RefusedError("memory limit reached", retry_after=7)


@pytest.mark.parametrize("ctype", [PROTOBUF, JSON])
def test_refused_by_a_limit_is_429_with_retry_after(ctype: str) -> None:
    async def scenario() -> Reply:
        ingest = Ingest(ComponentID("otlp"), {Signal.LOGS: _Refusing()}, SelfTelemetry())
        server = OtlpHttpServer(HttpConfig(endpoint="127.0.0.1:0"), ingest)
        await server.start()
        try:
            body = (otlpdata.logs("refused").SerializeToString() if ctype == PROTOBUF
                    else json.dumps(otlpdata.json_logs("refused")).encode())
            async with aiohttp.ClientSession() as session, session.post(
                    f"http://127.0.0.1:{server.port}/v1/logs", data=body,
                    headers={"Content-Type": ctype}) as resp:
                return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                             await resp.read())
        finally:
            await server.stop()

    reply = asyncio.run(scenario())
    assert reply.status == 429, reply
    assert reply.headers["retry-after"] == "7"
    assert reply.headers["content-type"] == ctype
    status = reply.rpc_status()
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    assert status.message == "memory limit reached"


def test_logs_response_decodes(gateway: Gateway) -> None:
    reply = post(gateway.http_url, "/v1/logs",
                 otlpdata.logs(otlpdata.service("http-resp")).SerializeToString())
    assert reply.status == 200, reply
    assert not ExportLogsServiceResponse.FromString(reply.body).HasField("partial_success")


class _Counting:
    def __init__(self) -> None:
        self.items = 0

    async def consume(self, payload: Any) -> None:
        self.items += payload.items


def test_large_json_bodies_are_decoded_off_the_event_loop() -> None:
    """Decoding OTLP/JSON costs ~33 ms per 1000 spans of Python: on the event loop it would
    stall every other client for that long. Large bodies decode on another thread; their
    answers (stored, or a 400 that names the bad field) are the same."""
    from loadtests import payloads

    big = payloads.to_otlp_json(payloads.traces(1000, seed=3))
    bad = big.replace(b'"spanId":"', b'"spanId":"zz', 1)
    small = json.dumps(otlpdata.json_traces("small")).encode()

    async def scenario() -> tuple[list[int], list[bool], int]:
        sink = _Counting()
        ingest = Ingest(ComponentID("otlp"), {Signal.TRACES: sink}, SelfTelemetry())
        loop_thread = threading.get_ident()
        on_loop: list[bool] = []
        decode = ingest.decode

        def watched(*args: Any) -> Any:
            on_loop.append(threading.get_ident() == loop_thread)
            return decode(*args)

        ingest.decode = watched  # type: ignore[method-assign]
        server = OtlpHttpServer(HttpConfig(endpoint="127.0.0.1:0"), ingest)
        await server.start()
        statuses = []
        try:
            async with aiohttp.ClientSession() as session:
                for body in (big, bad, small):
                    async with session.post(f"http://127.0.0.1:{server.port}/v1/traces",
                                            data=body, headers={"Content-Type": JSON}) as resp:
                        statuses.append(resp.status)
                        if resp.status == 400:
                            assert "spanId" in (await resp.json())["message"]
        finally:
            await server.stop()
        return statuses, on_loop, sink.items

    statuses, on_loop, items = asyncio.run(scenario())
    assert statuses == [200, 400, 200]
    assert on_loop == [False, False, True]  # the small body is cheaper to decode in place
    assert items == 1000 + sum(len(ss["spans"]) for rs in otlpdata.json_traces("small")
                               ["resourceSpans"] for ss in rs["scopeSpans"])
