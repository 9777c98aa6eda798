"""Items the gateway cannot store (ids of the wrong length, metrics without a type) are
rejected one by one: the rest of the request is stored and `partial_success` says what and why."""

from __future__ import annotations

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from loadtests.gatewayproc import Gateway
from tests.receivers.otlp import otlpdata
from tests.receivers.otlp.test_http import PROTOBUF, post


def test_span_with_short_trace_id_is_rejected_alone(gateway: Gateway) -> None:
    name = otlpdata.service("partial-traces")
    req = otlpdata.traces(name, spans=4)
    req.resource_spans[0].scope_spans[0].spans[1].trace_id = b"\x01\x02\x03"
    reply = post(gateway.http_url, "/v1/traces", req.SerializeToString())
    assert reply.status == 200 and reply.headers["content-type"] == PROTOBUF
    resp = ExportTraceServiceResponse.FromString(reply.body)
    assert resp.partial_success.rejected_spans == 1
    assert "span 1: trace_id of 3 bytes (want 16)" in resp.partial_success.error_message
    assert gateway.wait_count("otel_traces", 3, f"ServiceName = '{name}'") == 3


def test_partial_success_over_grpc(gateway: Gateway) -> None:
    name = otlpdata.service("partial-grpc")
    req = otlpdata.traces(name, spans=2)
    req.resource_spans[0].scope_spans[0].spans[0].span_id = b"\x01" * 9
    with grpc.insecure_channel(gateway.grpc_endpoint) as channel:
        resp = TraceServiceStub(channel).Export(req, timeout=30)
    assert resp.partial_success.rejected_spans == 1
    assert "span_id of 9 bytes" in resp.partial_success.error_message
    assert gateway.wait_count("otel_traces", 1, f"ServiceName = '{name}'") == 1


def test_log_record_with_bad_span_id(gateway: Gateway) -> None:
    name = otlpdata.service("partial-logs")
    req = otlpdata.logs(name, records=3)
    req.resource_logs[0].scope_logs[0].log_records[2].span_id = b"\x05" * 4
    reply = post(gateway.http_url, "/v1/logs", req.SerializeToString())
    resp = ExportLogsServiceResponse.FromString(reply.body)
    assert resp.partial_success.rejected_log_records == 1
    assert gateway.wait_count("otel_logs", 2, f"ServiceName = '{name}'") == 2


def test_metric_without_type_is_reported(gateway: Gateway) -> None:
    req = otlpdata.empty_metrics()
    sm = req.resource_metrics.add().scope_metrics.add()
    sm.metrics.add().name = "no.data.type"
    reply = post(gateway.http_url, "/v1/metrics", req.SerializeToString())
    assert reply.status == 200
    resp = ExportMetricsServiceResponse.FromString(reply.body)
    assert resp.partial_success.rejected_data_points == 0
    assert "metric 'no.data.type' has no data type" in resp.partial_success.error_message


def test_valid_request_has_no_partial_success(gateway: Gateway) -> None:
    reply = post(gateway.http_url, "/v1/traces",
                 otlpdata.traces(otlpdata.service("partial-none")).SerializeToString())
    assert not ExportTraceServiceResponse.FromString(reply.body).HasField("partial_success")
