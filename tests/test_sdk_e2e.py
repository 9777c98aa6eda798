"""OpenTelemetry SDK exporters (gRPC and HTTP) send traces, metrics of every kind the SDK makes,
and logs; the rows in ClickHouse carry what was sent."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from loadtests.gatewayproc import Gateway
from tests import oracle
from tests.exporters.clickhouse.test_values import diff

TRANSPORTS = ["grpc", "http"]


def _resource(service: str) -> Resource:
    return Resource.create({"service.name": service, "k8s.cluster.name": "prod-eu",
                            "k8s.pod.name": "checkout-7d9f-abc12", "k8s.node.name": "node-3",
                            "service.instance.id": "10.0.0.7:8080"})


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_traces(gateway: Gateway, transport: str) -> None:
    service = f"sdk-traces-{transport}-{uuid.uuid4().hex[:6]}"
    exporter = (GrpcSpans(endpoint=gateway.grpc_endpoint, insecure=True) if transport == "grpc"
                else HttpSpans(endpoint=f"{gateway.http_url}/v1/traces"))
    provider = TracerProvider(resource=_resource(service))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("checkout.lib", "1.2.3")
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER, attributes={
            "http.request.method": "GET", "http.response.status_code": 200,
            "retry": False, "ratio": 0.25, "tags": ["a", "b"], "ports": [80, 443]}) as parent:
        parent.add_event("cache miss", {"key": "cart:1"})
        with tracer.start_as_current_span("SELECT carts", kind=SpanKind.CLIENT) as child:
            child.set_status(Status(StatusCode.ERROR, "timeout"))
    provider.shutdown()

    assert gateway.wait_count("otel_traces", 2, f"ServiceName = '{service}'") == 2
    rows = {r["SpanName"]: r for r in gateway.rows(
        "SELECT *, cluster_id, pod_name, node_name FROM otel_traces "
        f"WHERE ServiceName = '{service}'")}
    parent_row, child_row = rows["GET /cart"], rows["SELECT carts"]
    ctx = parent.get_span_context()
    assert parent_row["TraceId"] == format(ctx.trace_id, "032x")
    assert parent_row["SpanId"] == format(ctx.span_id, "016x")
    assert parent_row["ParentSpanId"] == ""
    assert child_row["ParentSpanId"] == parent_row["SpanId"]
    assert child_row["TraceId"] == parent_row["TraceId"]
    assert (parent_row["SpanKind"], child_row["SpanKind"]) == ("Server", "Client")
    assert (parent_row["StatusCode"], child_row["StatusCode"]) == ("Unset", "Error")
    assert child_row["StatusMessage"] == "timeout"
    assert parent_row["SpanAttributes"] == {
        "http.request.method": "GET", "http.response.status_code": "200", "retry": "false",
        "ratio": "0.25", "tags": '["a","b"]', "ports": "[80,443]"}
    assert parent_row["ScopeName"] == "checkout.lib" and parent_row["ScopeVersion"] == "1.2.3"
    assert parent_row["Events.Name"] == ["cache miss"]
    assert parent_row["Events.Attributes"] == [{"key": "cart:1"}]
    assert int(parent_row["Duration"]) == parent.end_time - parent.start_time
    assert parent_row["ResourceAttributes"]["telemetry.sdk.language"] == "python"
    assert (parent_row["cluster_id"], parent_row["pod_name"], parent_row["node_name"]) == \
        ("prod-eu", "checkout-7d9f-abc12", "node-3")
    # the lookup table's part is committed apart from otel_traces' (by the contrib view)
    assert gateway.wait_count("otel_traces_trace_id_ts", 1,
                              f"TraceId = '{parent_row['TraceId']}'") >= 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_metrics_every_kind(gateway: Gateway, transport: str) -> None:
    service = f"sdk-metrics-{transport}-{uuid.uuid4().hex[:6]}"
    exporter = (GrpcMetrics(endpoint=gateway.grpc_endpoint, insecure=True) if transport == "grpc"
                else HttpMetrics(endpoint=f"{gateway.http_url}/v1/metrics"))
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=_resource(service), metric_readers=[reader], views=[
        View(instrument_name="payload.size", aggregation=ExponentialBucketHistogramAggregation())])
    meter = provider.get_meter("shop.meter")
    meter.create_counter("orders", unit="{order}", description="orders placed").add(
        5, {"region": "eu"})
    meter.create_up_down_counter("queue.depth").add(-3)
    latency = meter.create_histogram("latency", unit="ms")
    for v in (3, 7, 120):
        latency.record(v, {"route": "/cart"})
    size = meter.create_histogram("payload.size", unit="By")
    for v in (10, 1000, 100000):
        size.record(v)
    meter.create_observable_gauge("temperature", callbacks=[
        lambda _: [Observation(21.5, {"room": "a"})]])
    provider.shutdown()

    where = f"ServiceName = '{service}'"
    # one INSERT feeds the five tables, but each table's part becomes visible on its own
    for table, n in (("sum", 2), ("histogram", 1), ("exponential_histogram", 1), ("gauge", 1)):
        assert gateway.wait_count(f"otel_metrics_{table}", n, where) == n, table
    sums = {r["MetricName"]: r for r in gateway.rows(f"SELECT * FROM otel_metrics_sum WHERE {where}")}
    assert sums["orders"]["Value"] == 5 and sums["orders"]["IsMonotonic"] is True
    assert sums["orders"]["AggregationTemporality"] == 2  # cumulative
    assert sums["orders"]["Attributes"] == {"region": "eu"}
    assert sums["orders"]["MetricUnit"] == "{order}"
    assert sums["orders"]["MetricDescription"] == "orders placed"
    assert sums["queue.depth"]["Value"] == -3 and sums["queue.depth"]["IsMonotonic"] is False

    (hist,) = gateway.rows(f"SELECT * FROM otel_metrics_histogram WHERE {where}")
    assert int(hist["Count"]) == 3 and hist["Sum"] == 130
    assert (hist["Min"], hist["Max"]) == (3, 120)
    assert sum(int(c) for c in hist["BucketCounts"]) == 3
    assert len(hist["BucketCounts"]) == len(hist["ExplicitBounds"]) + 1

    (exp,) = gateway.rows(f"SELECT * FROM otel_metrics_exponential_histogram WHERE {where}")
    assert int(exp["Count"]) == 3 and exp["Sum"] == 101010
    assert sum(int(c) for c in exp["PositiveBucketCounts"]) + int(exp["ZeroCount"]) == 3

    (gauge,) = gateway.rows(f"SELECT *, instance, node_name FROM otel_metrics_gauge WHERE {where}")
    assert gauge["MetricName"] == "temperature" and gauge["Value"] == 21.5
    assert (gauge["instance"], gauge["node_name"]) == ("10.0.0.7:8080", "node-3")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_logs(gateway: Gateway, transport: str) -> None:
    service = f"sdk-logs-{transport}-{uuid.uuid4().hex[:6]}"
    exporter = (GrpcLogs(endpoint=gateway.grpc_endpoint, insecure=True) if transport == "grpc"
                else HttpLogs(endpoint=f"{gateway.http_url}/v1/logs"))
    provider = LoggerProvider(resource=_resource(service))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger(f"otelgw.test.{service}")
    logger.propagate = False
    logger.addHandler(LoggingHandler(logger_provider=provider))
    logger.setLevel(logging.INFO)
    logger.warning("payment declined for order %s", 42, extra={"order.id": 42})
    provider.shutdown()

    assert gateway.wait_count("otel_logs", 1, f"ServiceName = '{service}'") == 1
    (row,) = gateway.rows("SELECT *, pod_name FROM otel_logs "
                          f"WHERE ServiceName = '{service}'")
    assert row["Body"] == "payment declined for order 42"
    assert row["SeverityText"] == "WARN" and row["SeverityNumber"] == 13
    assert row["LogAttributes"]["order.id"] == "42"
    assert row["pod_name"] == "checkout-7d9f-abc12"
    assert row["Timestamp"].startswith("20")


# ------------------------------------------------ SDK payloads, field by field, against the oracle

class _Capture:
    """Wraps a real OTLP exporter and keeps the OTLP request the SDK encoded for each export."""

    def __init__(self, exporter: Any, encode: Any) -> None:
        self.exporter, self.encode, self.requests = exporter, encode, []

    def export(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        self.requests.append(self.encode(batch))
        return self.exporter.export(batch, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.exporter, name)


def _compare(gateway: Gateway, table: str, want: list[dict[str, Any]], where: str,
             order: str) -> None:
    assert gateway.wait_count(table, len(want), where) == len(want)
    out = gateway.sql(f"SELECT * FROM {table} WHERE {where} ORDER BY {order} "
                      f"SETTINGS {oracle.JSON_SETTINGS} FORMAT JSONEachRow")
    got = [oracle.parse_row(line) for line in out.splitlines() if line.strip()]
    key = order.split(",")[0].strip()
    want = sorted(want, key=lambda r: tuple(str(r[k.strip()]) for k in order.split(",")))
    problems = [m for w, g in zip(want, got, strict=True)
                for m in diff(f"{table} {w[key]}", w, g)]
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sdk_payloads_match_oracle(gateway: Gateway, transport: str) -> None:
    service = f"sdk-oracle-{transport}-{uuid.uuid4().hex[:6]}"
    grpc_ = transport == "grpc"
    spans = _Capture(GrpcSpans(endpoint=gateway.grpc_endpoint, insecure=True) if grpc_
                     else HttpSpans(endpoint=f"{gateway.http_url}/v1/traces"), encode_spans)
    tp = TracerProvider(resource=_resource(service))
    tp.add_span_processor(SimpleSpanProcessor(spans))
    tracer = tp.get_tracer("oracle", "0.1")
    with tracer.start_as_current_span("root", attributes={
            "s": "a<b>&\"q\"", "i": -7, "f": 1e-7, "big": 1e21, "b": True,
            "sa": ["x", "y"], "ia": [1, -2], "fa": [0.5, 2.0], "ba": [True, False]}) as root:
        root.add_event("evt", {"k": 1.25})
        with tracer.start_as_current_span("child", kind=SpanKind.PRODUCER,
                                          links=[trace_api.Link(root.get_span_context(),
                                                                {"l": "v"})]):
            pass
    tp.shutdown()

    logs_exp = _Capture(GrpcLogs(endpoint=gateway.grpc_endpoint, insecure=True) if grpc_
                        else HttpLogs(endpoint=f"{gateway.http_url}/v1/logs"), encode_logs)
    lp = LoggerProvider(resource=_resource(service))
    lp.add_log_record_processor(SimpleLogRecordProcessor(logs_exp))
    logger = logging.getLogger(f"otelgw.oracle.{service}")
    logger.propagate = False
    logger.addHandler(LoggingHandler(logger_provider=lp))
    with tracer.start_as_current_span("with-log"):
        logger.error("boom %d", 1, extra={"user.id": 99, "ratio": 0.5})
    lp.shutdown()

    metrics_exp = _Capture(GrpcMetrics(endpoint=gateway.grpc_endpoint, insecure=True) if grpc_
                           else HttpMetrics(endpoint=f"{gateway.http_url}/v1/metrics"),
                           encode_metrics)
    reader = PeriodicExportingMetricReader(metrics_exp, export_interval_millis=3_600_000)
    mp = MeterProvider(resource=_resource(service), metric_readers=[reader])
    meter = mp.get_meter("oracle.meter", "2.0")
    meter.create_counter("c").add(3, {"k": "v"})
    meter.create_histogram("h").record(12.5, {"k": "v"})
    meter.create_observable_gauge("g", callbacks=[lambda _: [Observation(-1, {"z": True})]])
    mp.shutdown()

    where = f"ServiceName = '{service}'"
    _compare(gateway, "otel_traces", [r for q in spans.requests for r in oracle.trace_rows(q)],
             where, "SpanId")
    _compare(gateway, "otel_logs", [r for q in logs_exp.requests for r in oracle.log_rows(q)],
             where, "Body")
    tables: dict[str, list[dict[str, Any]]] = {}
    for q in metrics_exp.requests:
        for table, rows in oracle.metric_rows(q).items():
            tables.setdefault(table, []).extend(rows)
    assert set(tables) >= {"otel_metrics_sum", "otel_metrics_histogram", "otel_metrics_gauge"}
    for table, rows in tables.items():
        if rows:
            _compare(gateway, table, rows, where, "MetricName, TimeUnix")
