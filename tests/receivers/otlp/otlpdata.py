"""Small OTLP requests for the receiver tests, each tagged with a unique service.name."""

from __future__ import annotations

import time
import uuid
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")


def service(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _resource(name: str) -> Resource:
    return Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=name))])


def traces(service_name: str, spans: int = 1, span_name: str = "GET /cart") -> Any:
    now = time.time_ns()
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add(resource=_resource(service_name))
    ss = rs.scope_spans.add()
    ss.scope.name = "otelgw.tests"
    for i in range(spans):
        ss.spans.append(Span(trace_id=TRACE_ID, span_id=(i + 1).to_bytes(8, "big"),
                             name=span_name, kind=Span.SPAN_KIND_SERVER,
                             start_time_unix_nano=now, end_time_unix_nano=now + 1_000_000))
    return req


def logs(service_name: str, body: str = "hello", records: int = 1) -> Any:
    now = time.time_ns()
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add(resource=_resource(service_name))
    sl = rl.scope_logs.add()
    for _ in range(records):
        sl.log_records.append(LogRecord(time_unix_nano=now, observed_time_unix_nano=now,
                                        severity_number=9, severity_text="INFO",
                                        body=AnyValue(string_value=body),
                                        trace_id=TRACE_ID, span_id=SPAN_ID))
    return req


def empty_metrics() -> Any:
    return ExportMetricsServiceRequest()


def json_traces(service_name: str, span_name: str = "GET /json") -> dict[str, Any]:
    """OTLP/JSON as the specification writes it: hex ids, int64 as strings, enums as ints."""
    now = time.time_ns()
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": service_name}}]},
        "scopeSpans": [{"scope": {"name": "otelgw.tests"}, "spans": [{
            "traceId": TRACE_ID.hex(), "spanId": SPAN_ID.hex(), "parentSpanId": "",
            "name": span_name, "kind": 3,
            "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 2_000_000),
            "attributes": [{"key": "http.response.status_code", "value": {"intValue": "200"}}],
            "status": {"code": 2, "message": "boom"}}]}]}]}


def json_logs(service_name: str, body: str = "hello json") -> dict[str, Any]:
    now = time.time_ns()
    return {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": service_name}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": str(now), "observedTimeUnixNano": str(now),
            "severityNumber": 17, "severityText": "ERROR", "body": {"stringValue": body},
            "traceId": TRACE_ID.hex(), "spanId": SPAN_ID.hex()}]}]}]}
