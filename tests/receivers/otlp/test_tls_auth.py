"""TLS, mTLS, bearer tokens and the per-listener concurrency limit on a real gateway process, with
the OpenTelemetry SDK exporters as clients: what they are told, and what lands in ClickHouse.

One gateway serves four OTLP receivers, each with a gRPC and an HTTP listener:
  otlp/tls      TLS, token from `bearertokenauth` (two tokens); HTTP accepts TLS 1.3 only
  otlp/mtls     mutual TLS: client certificates from the test CA are required
  otlp/file     plaintext, tokens from a file that the test rewrites
  otlp/limited  plaintext, one request at a time per listener
It logs at debug level, and the last test looks for every secret in its log.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from loadtests.gatewayproc import Gateway, free_port
from tests.receivers.otlp.certs import Pki, make_pki

TOKEN_A = "tok-A-" + uuid.uuid4().hex
TOKEN_B = "tok-B-" + uuid.uuid4().hex
FILE_OLD = "file-old-" + uuid.uuid4().hex
FILE_NEW = "file-new-" + uuid.uuid4().hex
WRONG = "wrong-" + uuid.uuid4().hex
TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTOBUF = "application/x-protobuf"
RECEIVERS = ("tls", "mtls", "file", "limited")


@pytest.fixture(autouse=True)
def _own_ca_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's `verify`, which
    is where the SDK's HTTP exporter puts its certificate_file."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _listeners(pki: Pki, ports: dict[str, int]) -> dict[str, Any]:
    server_tls = {"cert_file": pki.path("server.crt"), "key_file": pki.path("server.key")}
    mtls = {**server_tls, "client_ca_file": pki.path("ca.crt")}

    def both(name: str, grpc_extra: dict[str, Any], http_extra: dict[str, Any]) -> Any:
        return {"protocols": {
            "grpc": {"endpoint": f"127.0.0.1:{ports[f'{name}_grpc']}", **grpc_extra},
            "http": {"endpoint": f"127.0.0.1:{ports[f'{name}_http']}", **http_extra}}}

    auth = {"auth": {"authenticator": "bearertokenauth"}}
    file_auth = {"auth": {"authenticator": "bearertokenauth/file"}}
    return {
        "otlp/tls": both("tls", {"tls": server_tls, **auth},
                         {"tls": {**server_tls, "min_version": "1.3"}, **auth}),
        "otlp/mtls": both("mtls", {"tls": mtls}, {"tls": mtls}),
        "otlp/file": both("file", file_auth, file_auth),
        "otlp/limited": both("limited", {"max_concurrent_requests": 1},
                             {"max_concurrent_requests": 1}),
    }


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "tokens"
    path.write_text(f"{FILE_OLD}\n\n")
    return path


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, pki: Pki, token_file: Path) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("secure-gateway")
    ports = {k: free_port() for k in ("query", "metrics")}
    ports.update({f"{r}_{t}": free_port() for r in RECEIVERS for t in ("grpc", "http")})
    ports["grpc"], ports["http"] = ports["tls_grpc"], ports["tls_http"]
    config = {
        "extensions": {"bearertokenauth": {"tokens": [TOKEN_A, TOKEN_B]},
                       "bearertokenauth/file": {"filename": str(token_file)}},
        "receivers": _listeners(pki, ports),
        "processors": {"batch": {"timeout": "50ms"}},
        "exporters": {"clickhouse": {
            "path": str(work / "data"),
            "query_endpoint": {"enabled": True, "endpoint": f"127.0.0.1:{ports['query']}"}}},
        "service": {
            "extensions": ["bearertokenauth", "bearertokenauth/file"],
            "telemetry": {"logs": {"level": "debug"},
                          "metrics": {"address": f"127.0.0.1:{ports['metrics']}"}},
            "pipelines": {"traces": {"receivers": [f"otlp/{r}" for r in RECEIVERS],
                                     "processors": ["batch"], "exporters": ["clickhouse"]}}},
    }
    gateway = Gateway(work, config, ports).start()
    yield gateway
    assert gateway.stop() == 0, gateway.logs()


def spans(service: str, n: int = 2) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test_tls_auth")
    for i in range(n):
        with tracer.start_as_current_span(f"op-{i}"):
            pass
    return list(memory.get_finished_spans())


def service(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def stored(gw: Gateway, svc: str, n: int = 2) -> int:
    return gw.wait_count("otel_traces", n, f"ServiceName = '{svc}'", timeout=15)


def grpc_exporter(gw: Gateway, name: str, pki: Pki | None = None, token: str | None = None,
                  client: str | None = None, timeout: float = 5) -> GrpcSpans:
    port = gw.ports[f"{name}_grpc"]
    headers = (("authorization", f"Bearer {token}"),) if token else None
    if pki is None:
        return GrpcSpans(endpoint=f"http://127.0.0.1:{port}", insecure=True, headers=headers,
                         timeout=timeout)
    creds = grpc.ssl_channel_credentials(
        pki.read("ca.crt"), pki.read(f"{client}.key") if client else None,
        pki.read(f"{client}.crt") if client else None)
    return GrpcSpans(endpoint=f"https://127.0.0.1:{port}", credentials=creds, headers=headers,
                     timeout=timeout)


def http_exporter(gw: Gateway, name: str, pki: Pki | None = None, token: str | None = None,
                  client: str | None = None, timeout: float = 5) -> HttpSpans:
    port = gw.ports[f"{name}_http"]
    headers = {"Authorization": f"Bearer {token}"} if token else None
    scheme = "http" if pki is None else "https"
    return HttpSpans(endpoint=f"{scheme}://127.0.0.1:{port}/v1/traces", headers=headers,
                     timeout=timeout, certificate_file=pki.path("ca.crt") if pki else None,
                     client_key_file=pki.path(f"{client}.key") if pki and client else None,
                     client_certificate_file=pki.path(f"{client}.crt") if pki and client else None)


def export(exporter: Any, svc: str) -> SpanExportResult:
    try:
        return exporter.export(spans(svc))  # type: ignore[no-any-return]
    finally:
        exporter.shutdown()


def tls_channel(gw: Gateway, name: str, pki: Pki, client: str | None = None) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        pki.read("ca.crt"), pki.read(f"{client}.key") if client else None,
        pki.read(f"{client}.crt") if client else None)
    return grpc.secure_channel(f"127.0.0.1:{gw.ports[f'{name}_grpc']}", creds)


# -- TLS and tokens ------------------------------------------------------------------------


@pytest.mark.parametrize("token", [TOKEN_A, TOKEN_B], ids=["first-token", "second-token"])
def test_sdk_exporters_over_tls_with_a_token_are_stored(gw: Gateway, pki: Pki,
                                                        token: str) -> None:
    via_grpc, via_http = service("tls-grpc"), service("tls-http")
    assert export(grpc_exporter(gw, "tls", pki, token), via_grpc) == SpanExportResult.SUCCESS
    assert export(http_exporter(gw, "tls", pki, token), via_http) == SpanExportResult.SUCCESS
    assert stored(gw, via_grpc) == 2
    assert stored(gw, via_http) == 2


@pytest.mark.parametrize("token", [None, WRONG, f"{TOKEN_A}x", TOKEN_A[:-1]],
                         ids=["missing", "wrong", "longer", "shorter"])
def test_sdk_exporters_without_the_token_are_refused_and_nothing_is_stored(
        gw: Gateway, pki: Pki, token: str | None) -> None:
    refused_grpc, refused_http, marker = service("noauth-grpc"), service("noauth-http"), \
        service("auth-marker")
    assert export(grpc_exporter(gw, "tls", pki, token), refused_grpc) == SpanExportResult.FAILURE
    assert export(http_exporter(gw, "tls", pki, token), refused_http) == SpanExportResult.FAILURE
    # a good request after them is stored: the refused ones would be there by now
    assert export(grpc_exporter(gw, "tls", pki, TOKEN_A), marker) == SpanExportResult.SUCCESS
    assert stored(gw, marker) == 2
    assert gw.count("otel_traces", f"ServiceName IN ('{refused_grpc}', '{refused_http}')") == 0


def test_grpc_unauthenticated_status(gw: Gateway, pki: Pki) -> None:
    request = ExportTraceServiceRequest()
    with tls_channel(gw, "tls", pki) as channel:
        stub = TraceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as missing:
            stub.Export(request, timeout=10)
        with pytest.raises(grpc.RpcError) as wrong:
            stub.Export(request, metadata=[("authorization", f"Bearer {WRONG}")], timeout=10)
        with pytest.raises(grpc.RpcError) as scheme:
            stub.Export(request, metadata=[("authorization", f"Basic {TOKEN_A}")], timeout=10)
        stub.Export(request, metadata=[("authorization", f"Bearer {TOKEN_B}")], timeout=10)
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert missing.value.details() == "missing or empty authorization header: Authorization"
    for err in (wrong, scheme):
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert err.value.details() == "scheme or token does not match"


def _https(gw: Gateway, name: str, pki: Pki, **kwargs: Any) -> requests.Response:
    return requests.post(f"https://127.0.0.1:{gw.ports[f'{name}_http']}/v1/traces",
                         verify=pki.path("ca.crt"), timeout=10, **kwargs)


def test_http_401_says_how_to_authenticate(gw: Gateway, pki: Pki) -> None:
    body = ExportTraceServiceRequest().SerializeToString()
    for headers in ({}, {"Authorization": f"Bearer {WRONG}"}):
        resp = _https(gw, "tls", pki, data=body, headers={"Content-Type": PROTOBUF, **headers})
        assert resp.status_code == 401
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="otelgw"'
        status = status_pb2.Status.FromString(resp.content)
        assert status.code == code_pb2.UNAUTHENTICATED
        assert WRONG not in resp.text
    resp = _https(gw, "tls", pki, json={}, headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401 and resp.json()["code"] == code_pb2.UNAUTHENTICATED
    ok = _https(gw, "tls", pki, data=body, headers={"Content-Type": PROTOBUF,
                                                    "Authorization": f"Bearer {TOKEN_A}"})
    assert ok.status_code == 200


def test_http_token_is_checked_before_the_body_is_read(gw: Gateway, pki: Pki) -> None:
    """A client announces 10 MB and sends none of it: the 401 comes at once."""
    ctx = ssl.create_default_context(cafile=pki.path("ca.crt"))
    with socket.create_connection(("127.0.0.1", gw.ports["tls_http"]), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\n"
                    b"Content-Type: application/x-protobuf\r\nContent-Length: 10000000\r\n"
                    + f"Authorization: Bearer {WRONG}\r\n\r\n".encode())
        started = time.monotonic()
        head = tls.recv(4096)
    assert head.startswith(b"HTTP/1.1 401"), head[:100]
    assert time.monotonic() - started < 3


def test_grpc_token_is_checked_before_the_message_is_read(gw: Gateway, pki: Pki) -> None:
    """The call never sends its message: UNAUTHENTICATED comes without it."""
    never = threading.Event()

    def no_message() -> Iterator[bytes]:
        never.wait(10)
        return
        yield b""  # pragma: no cover - makes this a generator

    with tls_channel(gw, "tls", pki) as channel:
        call = channel.stream_unary(TRACE_EXPORT)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            call(no_message(), timeout=5, metadata=[("authorization", "Bearer nope")])
        never.set()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert time.monotonic() - started < 3


def test_http_listener_takes_tls13_only_as_configured(gw: Gateway, pki: Pki) -> None:
    def handshake(max_version: ssl.TLSVersion) -> str:
        ctx = ssl.create_default_context(cafile=pki.path("ca.crt"))
        ctx.maximum_version = max_version
        with socket.create_connection(("127.0.0.1", gw.ports["tls_http"]), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return str(tls.version())

    assert handshake(ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        handshake(ssl.TLSVersion.TLSv1_2)


def test_plaintext_clients_cannot_use_a_tls_listener(gw: Gateway, pki: Pki) -> None:
    svc = service("plaintext-to-tls")
    plaintext = GrpcSpans(endpoint=f"http://127.0.0.1:{gw.ports['tls_grpc']}", insecure=True,
                          headers=(("authorization", f"Bearer {TOKEN_A}"),), timeout=2)
    assert export(plaintext, svc) == SpanExportResult.FAILURE
    with pytest.raises(requests.ConnectionError):
        requests.post(f"http://127.0.0.1:{gw.ports['tls_http']}/v1/traces", data=b"",
                      headers={"Content-Type": PROTOBUF}, timeout=5)


# -- mutual TLS ----------------------------------------------------------------------------


def test_mtls_with_a_client_certificate_is_stored(gw: Gateway, pki: Pki) -> None:
    via_grpc, via_http = service("mtls-grpc"), service("mtls-http")
    assert export(grpc_exporter(gw, "mtls", pki, client="client"), via_grpc) == \
        SpanExportResult.SUCCESS
    assert export(http_exporter(gw, "mtls", pki, client="client"), via_http) == \
        SpanExportResult.SUCCESS
    assert stored(gw, via_grpc) == 2
    assert stored(gw, via_http) == 2


@pytest.mark.parametrize("client", [None, "stranger"], ids=["no-cert", "untrusted-ca"])
def test_mtls_without_a_trusted_client_certificate_is_refused(gw: Gateway, pki: Pki,
                                                              client: str | None) -> None:
    with tls_channel(gw, "mtls", pki, client) as channel:
        with pytest.raises(grpc.RpcError) as err:
            TraceServiceStub(channel).Export(ExportTraceServiceRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    cert = (pki.path(f"{client}.crt"), pki.path(f"{client}.key")) if client else None
    with pytest.raises((requests.exceptions.SSLError, requests.ConnectionError)):
        _https(gw, "mtls", pki, data=b"", headers={"Content-Type": PROTOBUF}, cert=cert)
    svc = service("mtls-refused")
    assert export(grpc_exporter(gw, "mtls", pki, client=client, timeout=2), svc) == \
        SpanExportResult.FAILURE
    assert export(http_exporter(gw, "mtls", pki, client=client, timeout=2), svc) == \
        SpanExportResult.FAILURE
    assert gw.count("otel_traces", f"ServiceName = '{svc}'") == 0


# -- tokens from a file --------------------------------------------------------------------


def _plain_status(gw: Gateway, token: str) -> int:
    return requests.post(f"http://127.0.0.1:{gw.ports['file_http']}/v1/traces",
                         data=ExportTraceServiceRequest().SerializeToString(), timeout=10,
                         headers={"Content-Type": PROTOBUF,
                                  "Authorization": f"Bearer {token}"}).status_code


def test_token_file_is_reread_when_it_changes(gw: Gateway, token_file: Path) -> None:
    assert _plain_status(gw, FILE_OLD) == 200
    assert _plain_status(gw, "") == 401  # the empty line in the file is not a token
    new = token_file.with_suffix(".new")
    new.write_text(f"  {FILE_NEW}  \n")
    os.replace(new, token_file)  # as a Kubernetes Secret update swaps the file
    deadline = time.monotonic() + 10
    while _plain_status(gw, FILE_OLD) != 401:
        assert time.monotonic() < deadline, "the old token is still accepted"
        time.sleep(0.2)
    via_grpc, via_http = service("file-grpc"), service("file-http")
    assert export(grpc_exporter(gw, "file", token=FILE_NEW), via_grpc) == SpanExportResult.SUCCESS
    assert export(http_exporter(gw, "file", token=FILE_NEW), via_http) == SpanExportResult.SUCCESS
    assert export(http_exporter(gw, "file", token=FILE_OLD), service("old")) == \
        SpanExportResult.FAILURE
    assert stored(gw, via_grpc) == 2
    assert stored(gw, via_http) == 2


# -- concurrency limit ---------------------------------------------------------------------


class HeldHttpRequest:
    """A request whose body never finishes arriving: it holds its listener's slot."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          b"application/x-protobuf\r\nContent-Length: 100\r\n\r\n\x0a")

    def release(self) -> None:
        self.sock.close()


def _probe_http(port: int) -> requests.Response:
    return requests.post(f"http://127.0.0.1:{port}/v1/traces",
                         data=ExportTraceServiceRequest().SerializeToString(),
                         headers={"Content-Type": PROTOBUF}, timeout=10)


def test_http_over_the_concurrency_limit_is_told_to_retry(gw: Gateway) -> None:
    port = gw.ports["limited_http"]
    held = HeldHttpRequest(port)
    try:
        deadline = time.monotonic() + 5
        while (resp := _probe_http(port)).status_code != 429:
            assert resp.status_code == 200
            assert time.monotonic() < deadline, "the held request does not count"
            time.sleep(0.05)
        assert resp.headers["Retry-After"] == "1"
        assert status_pb2.Status.FromString(resp.content).code == code_pb2.RESOURCE_EXHAUSTED
        # the SDK exporter retries after Retry-After and gets through once the slot is free
        svc = service("limited-http")
        result: list[SpanExportResult] = []
        sender = threading.Thread(target=lambda: result.append(
            export(http_exporter(gw, "limited", timeout=10), svc)))
        sender.start()
        time.sleep(0.3)
    finally:
        held.release()
    sender.join(15)
    assert result == [SpanExportResult.SUCCESS]
    assert stored(gw, svc) == 2
    assert _probe_http(port).status_code == 200  # the slots were all given back


def test_grpc_over_the_concurrency_limit_is_told_to_retry(gw: Gateway) -> None:
    release = threading.Event()

    def no_message() -> Iterator[bytes]:
        release.wait(15)
        return
        yield b""  # pragma: no cover - makes this a generator

    address = f"127.0.0.1:{gw.ports['limited_grpc']}"
    with grpc.insecure_channel(address) as holder, grpc.insecure_channel(address) as prober:
        held = holder.stream_unary(TRACE_EXPORT).future(no_message(), timeout=20)
        try:
            deadline = time.monotonic() + 5
            while True:
                if held.done():  # it reached the server while a probe held the slot: again
                    held = holder.stream_unary(TRACE_EXPORT).future(no_message(), timeout=20)
                try:
                    TraceServiceStub(prober).Export(ExportTraceServiceRequest(), timeout=5)
                except grpc.RpcError as exc:
                    err = exc
                    break
                assert time.monotonic() < deadline, "the held call does not count"
                time.sleep(0.05)
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            trailers = dict(err.trailing_metadata() or ())
            status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
            info = error_details_pb2.RetryInfo()
            assert status.details[0].Unpack(info) and info.retry_delay.seconds == 1
            svc = service("limited-grpc")
            result: list[SpanExportResult] = []
            sender = threading.Thread(target=lambda: result.append(
                export(grpc_exporter(gw, "limited", timeout=10), svc)))
            sender.start()
            time.sleep(0.3)
        finally:
            release.set()
            held.cancel()  # the held call ends without a message: its slot is free again
        sender.join(15)
    assert result == [SpanExportResult.SUCCESS]
    assert stored(gw, svc) == 2


def test_refusals_are_counted(gw: Gateway) -> None:
    metrics = requests.get(f"http://127.0.0.1:{gw.ports['metrics']}/metrics", timeout=10).text
    for receiver, transport, reason in (("otlp/tls", "http", "unauthenticated"),
                                        ("otlp/tls", "grpc", "unauthenticated"),
                                        ("otlp/limited", "http", "concurrency_limit"),
                                        ("otlp/limited", "grpc", "concurrency_limit")):
        line = (f'otelgw_receiver_requests_denied_total{{reason="{reason}",'
                f'receiver="{receiver}",transport="{transport}"}}')
        assert line in metrics, line


# -- last: the secrets never reached the log -----------------------------------------------


def test_no_token_or_key_in_the_gateway_log(gw: Gateway, pki: Pki) -> None:
    log = gw.logs()
    assert "receiver otlp/tls: OTLP/gRPC listening" in log
    key_lines = [line for line in pki.read("server.key").decode().splitlines()
                 if line and not line.startswith("-----")]
    # refused clients are not errors of the gateway, nor a line each from gRPC's core
    assert "Traceback" not in log and "Handshake failed" not in log
    for secret in (TOKEN_A, TOKEN_B, FILE_OLD, FILE_NEW, WRONG, *key_lines):
        assert secret not in log
