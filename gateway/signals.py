"""The three OTLP signals and, per signal, the request message and how to count its items."""

from __future__ import annotations

import enum
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class Signal(enum.Enum):
    TRACES = "traces"
    METRICS = "metrics"
    LOGS = "logs"

    @property
    def request_type(self) -> type[Any]:
        return _REQUEST[self]

    @property
    def item_name(self) -> str:
        """The Collector's name for one item of this signal, as used in self-metric names."""
        return _ITEM[self]


_REQUEST: dict[Signal, type[Any]] = {
    Signal.TRACES: ExportTraceServiceRequest,
    Signal.METRICS: ExportMetricsServiceRequest,
    Signal.LOGS: ExportLogsServiceRequest,
}
_ITEM = {Signal.TRACES: "spans", Signal.METRICS: "metric_points", Signal.LOGS: "log_records"}


def _metric_points(metric: Any) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0


def count_items(signal: Signal, request: Any) -> int:
    """Spans, data points or log records in a request; loops over scopes, not items."""
    if signal is Signal.TRACES:
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if signal is Signal.LOGS:
        return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    return sum(
        _metric_points(m)
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    )


def resources(signal: Signal, request: Any) -> Any:
    """The repeated ResourceSpans / ResourceMetrics / ResourceLogs field of a request."""
    if signal is Signal.TRACES:
        return request.resource_spans
    if signal is Signal.METRICS:
        return request.resource_metrics
    return request.resource_logs
