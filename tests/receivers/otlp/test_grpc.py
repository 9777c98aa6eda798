"""OTLP/gRPC against a real gateway process, with the generated OTLP stubs: status codes as the
specification maps them, and the rows that land in ClickHouse."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceStub
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from gateway.component import ComponentID
from gateway.errors import RefusedError
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry
from loadtests.gatewayproc import Gateway, default_config, free_port
from receivers.otlp.common import Ingest
from receivers.otlp.config import GrpcConfig
from receivers.otlp.grpc import OtlpGrpcServer
from tests.receivers.otlp import otlpdata

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


@pytest.fixture(scope="module")
def channel(gateway: Gateway) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(gateway.grpc_endpoint) as ch:
        yield ch


def raw_export(channel: grpc.Channel, method: str, body: bytes) -> bytes:
    """A unary call with the bytes as they are (no serializer): what a broken client sends."""
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    return bytes(call(body, timeout=30))


def test_traces_are_stored(gateway: Gateway, channel: grpc.Channel) -> None:
    service = otlpdata.service("grpc-traces")
    response = TraceServiceStub(channel).Export(otlpdata.traces(service, spans=3), timeout=30)
    assert isinstance(response, ExportTraceServiceResponse)
    assert not response.HasField("partial_success")
    assert gateway.wait_count("otel_traces", 3, f"ServiceName = '{service}'") == 3
    rows = gateway.rows("SELECT DISTINCT TraceId, SpanName, SpanKind FROM otel_traces "
                        f"WHERE ServiceName = '{service}'")
    assert rows == [{"TraceId": otlpdata.TRACE_ID.hex(), "SpanName": "GET /cart",
                     "SpanKind": "Server"}]


def test_gzip_compressed_logs_are_stored(gateway: Gateway, channel: grpc.Channel) -> None:
    service = otlpdata.service("grpc-gzip")
    response = LogsServiceStub(channel).Export(otlpdata.logs(service, body="zipped", records=2),
                                               timeout=30, compression=grpc.Compression.Gzip)
    assert isinstance(response, ExportLogsServiceResponse)
    assert gateway.wait_count("otel_logs", 2, f"ServiceName = '{service}'") == 2
    [row] = gateway.rows(f"SELECT DISTINCT Body FROM otel_logs WHERE ServiceName = '{service}'")
    assert row == {"Body": "zipped"}


def test_gzip_channel_default_compression(gateway: Gateway) -> None:
    service = otlpdata.service("grpc-gzip-channel")
    with grpc.insecure_channel(gateway.grpc_endpoint, compression=grpc.Compression.Gzip) as ch:
        TraceServiceStub(ch).Export(otlpdata.traces(service), timeout=30)
    assert gateway.wait_count("otel_traces", 1, f"ServiceName = '{service}'") == 1


@pytest.mark.parametrize("body", [b"\x0a\xff\xff\xff\xff\x0f\x01", b"\xff" * 64, b"\x0a\x05abc"],
                         ids=["huge-length", "bad-tag", "short"])
def test_garbage_bytes_are_invalid_argument(channel: grpc.Channel, body: bytes) -> None:
    with pytest.raises(grpc.RpcError) as err:
        raw_export(channel, TRACE_EXPORT, body)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ExportTraceServiceRequest" in (err.value.details() or "")


def test_message_over_max_recv_size_is_resource_exhausted(channel: grpc.Channel) -> None:
    # the default max_recv_msg_size_mib is 4
    request = otlpdata.logs(otlpdata.service("grpc-big"), body="x" * (5 * 1024 * 1024))
    with pytest.raises(grpc.RpcError) as err:
        LogsServiceStub(channel).Export(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_compressed_message_over_max_recv_size_is_resource_exhausted(
        channel: grpc.Channel) -> None:
    # small on the wire with gzip, over the limit once decompressed
    request = otlpdata.logs(otlpdata.service("grpc-gzip-bomb"), body="\0" * (8 * 1024 * 1024))
    with pytest.raises(grpc.RpcError) as err:
        LogsServiceStub(channel).Export(request, timeout=30, compression=grpc.Compression.Gzip)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_good_requests_are_served_after_bad_ones(gateway: Gateway,
                                                 channel: grpc.Channel) -> None:
    stub = LogsServiceStub(channel)
    for body in (b"\xff" * 16, b"\x0a\xff\xff\xff\xff\x0f"):
        with pytest.raises(grpc.RpcError):
            raw_export(channel, LOGS_EXPORT, body)
    with pytest.raises(grpc.RpcError):
        stub.Export(otlpdata.logs("grpc-big", body="x" * (5 * 1024 * 1024)), timeout=30)
    service = otlpdata.service("grpc-after-bad")
    # the raw bytes of a good request through the same generic call path
    raw_export(channel, LOGS_EXPORT, otlpdata.logs(service).SerializeToString())
    stub.Export(otlpdata.logs(service), timeout=30)
    assert gateway.wait_count("otel_logs", 2, f"ServiceName = '{service}'") == 2


@pytest.fixture(scope="module")
def traces_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with a traces pipeline only and a 1 MiB gRPC message limit."""
    workdir = tmp_path_factory.mktemp("traces-only")
    ports = {k: free_port() for k in ("grpc", "http", "query", "metrics")}
    config = default_config(workdir / "data", ports)
    config["receivers"]["otlp"]["protocols"]["grpc"]["max_recv_msg_size_mib"] = 1
    config["service"]["pipelines"] = {"traces": config["service"]["pipelines"]["traces"]}
    gw = Gateway(workdir, config, ports).start()
    yield gw
    assert gw.stop() == 0, gw.logs()


def test_signal_without_pipeline_is_unimplemented(traces_only: Gateway) -> None:
    with grpc.insecure_channel(traces_only.grpc_endpoint) as ch:
        with pytest.raises(grpc.RpcError) as err:
            MetricsServiceStub(ch).Export(otlpdata.empty_metrics(), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as err:
            LogsServiceStub(ch).Export(otlpdata.logs("nowhere"), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # the configured signal is served on the same server
        service = otlpdata.service("grpc-traces-only")
        TraceServiceStub(ch).Export(otlpdata.traces(service), timeout=30)
    assert traces_only.wait_count("otel_traces", 1, f"ServiceName = '{service}'") == 1


def test_configured_max_recv_msg_size_mib_applies(traces_only: Gateway) -> None:
    with grpc.insecure_channel(traces_only.grpc_endpoint) as ch:
        stub = TraceServiceStub(ch)
        big = otlpdata.traces(otlpdata.service("grpc-1mib"), span_name="x" * (1536 * 1024))
        with pytest.raises(grpc.RpcError) as err:
            stub.Export(big, timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        service = otlpdata.service("grpc-under-1mib")
        stub.Export(otlpdata.traces(service, span_name="y" * (512 * 1024)), timeout=30)
    assert traces_only.wait_count("otel_traces", 1, f"ServiceName = '{service}'") == 1


def test_http_path_of_signal_without_pipeline_is_404(traces_only: Gateway) -> None:
    req = urllib.request.Request(f"{traces_only.http_url}/v1/metrics", data=b"", method="POST",
                                 headers={"Content-Type": "application/x-protobuf"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 404


class _Refusing:
    """A pipeline whose limit refuses everything (what a memory limiter does under pressure)."""

    async def consume(self, payload: Any) -> None:
        raise RefusedError("memory limit reached", retry_after=7)


def test_refused_by_a_limit_is_resource_exhausted_with_retry_info() -> None:
    async def scenario() -> grpc.aio.AioRpcError:
        ingest = Ingest(ComponentID("otlp"), {Signal.LOGS: _Refusing()}, SelfTelemetry())
        server = OtlpGrpcServer(GrpcConfig(endpoint="127.0.0.1:0"), ingest)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
                try:
                    await LogsServiceStub(ch).Export(otlpdata.logs("refused"), timeout=30)
                except grpc.aio.AioRpcError as exc:
                    return exc
                raise AssertionError("the export was accepted")
        finally:
            await server.stop(0)

    err = asyncio.run(scenario())
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == "memory limit reached"
    details = dict(err.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert info.retry_delay.seconds == 7
