"""Realistic OTLP requests, deterministic for a seed: services on pods and nodes, HTTP server
and DB client spans with semantic-convention attributes, events, errors; logs and metrics.
"""

from __future__ import annotations

import base64
import json
import random

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

BASE_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
SERVICES = ["frontend", "cart", "checkout", "payments", "catalog", "shipping", "email", "ads"]
ROUTES = ["/", "/cart", "/checkout", "/product/{id}", "/api/recommendations", "/healthz"]


def _attr(msg: object, key: str, value: object) -> None:
    kv = msg.attributes.add()  # type: ignore[attr-defined]
    kv.key = key
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    else:
        kv.value.string_value = str(value)


def _resource(res: object, rnd: random.Random, service: str, cluster: str) -> None:
    pod = f"{service}-{rnd.randrange(16**6):06x}-{rnd.randrange(16**5):05x}"
    for key, value in (("service.name", service), ("service.version", "1.4.2"),
                       ("k8s.cluster.name", cluster), ("k8s.namespace.name", "shop"),
                       ("k8s.pod.name", pod), ("k8s.node.name", f"node-{rnd.randrange(8)}"),
                       ("k8s.deployment.name", service), ("telemetry.sdk.language", "go")):
        _attr(res, key, value)


def traces(spans: int, seed: int = 1, per_resource: int = 100,
           cluster: str = "prod-eu-1") -> ExportTraceServiceRequest:
    """Spans in traces, as a service's SDK sends them: per request one HTTP server span (a local
    root; 80 % carry the caller's span as parent) and 0-5 client calls under it (database
    queries and HTTP calls to other services), all with the request's trace id. 3.5 spans per
    trace on average; a trace that does not fit in a resource is cut short."""
    rnd = random.Random(seed)
    req = ExportTraceServiceRequest()
    made = 0
    while made < spans:
        rs = req.resource_spans.add()
        service = rnd.choice(SERVICES)
        _resource(rs.resource, rnd, service, cluster)
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = "go.opentelemetry.io/contrib/otelhttp", "0.60.0"
        room = min(per_resource, spans - made)
        while room:
            n = min(room, 1 + rnd.randrange(6))
            _trace(ss.spans, rnd, BASE_NS + made * 1_000_000 + rnd.randrange(1_000_000), n)
            made, room = made + n, room - n
    return req


def _trace(out: object, rnd: random.Random, start: int, n: int) -> None:
    trace_id = rnd.randbytes(16)
    server = out.add()  # type: ignore[attr-defined]
    server.trace_id, server.span_id = trace_id, rnd.randbytes(8)
    server.parent_span_id = rnd.randbytes(8) if rnd.random() < 0.8 else b""
    server.start_time_unix_nano = start
    server.end_time_unix_nano = start + int(rnd.lognormvariate(16, 1.2))
    route = rnd.choice(ROUTES)
    server.name, server.kind = f"GET {route}", 2
    status = 500 if rnd.random() < 0.02 else 200
    for k, v in (("http.request.method", "GET"), ("http.route", route),
                 ("url.path", route.replace("{id}", str(rnd.randrange(999)))),
                 ("http.response.status_code", status),
                 ("network.peer.address", f"10.1.{rnd.randrange(255)}.{rnd.randrange(255)}"),
                 ("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)")):
        _attr(server, k, v)
    if status >= 500:
        server.status.code, server.status.message = 2, "internal error"
        ev = server.events.add()
        ev.time_unix_nano, ev.name = start + 1000, "exception"
        _attr(ev, "exception.type", "RuntimeError")
        _attr(ev, "exception.message", "upstream reset")
    for i in range(1, n):
        span = out.add()  # type: ignore[attr-defined]
        span.trace_id, span.span_id, span.parent_span_id = trace_id, rnd.randbytes(8), server.span_id
        span.start_time_unix_nano = start + i * 100_000 + rnd.randrange(100_000)
        span.end_time_unix_nano = span.start_time_unix_nano + int(rnd.lognormvariate(14, 1.0))
        span.kind = 3
        if rnd.random() < 0.5:
            span.name = "SELECT shop.orders"
            for k, v in (("db.system", "postgresql"), ("db.name", "shop"),
                         ("db.statement", "SELECT * FROM orders WHERE id = $1"),
                         ("server.address", "postgres.shop.svc"), ("server.port", 5432)):
                _attr(span, k, v)
        else:
            peer = rnd.choice(SERVICES)
            span.name = "GET"
            for k, v in (("http.request.method", "GET"), ("server.address", f"{peer}.shop.svc"),
                         ("server.port", 8080), ("url.full", f"http://{peer}.shop.svc:8080/"),
                         ("http.response.status_code", 200)):
                _attr(span, k, v)


def logs(records: int, seed: int = 1, per_resource: int = 100,
         cluster: str = "prod-eu-1") -> ExportLogsServiceRequest:
    rnd = random.Random(seed)
    req = ExportLogsServiceRequest()
    made = 0
    while made < records:
        rl = req.resource_logs.add()
        _resource(rl.resource, rnd, rnd.choice(SERVICES), cluster)
        sl = rl.scope_logs.add()
        for _ in range(min(per_resource, records - made)):
            r = sl.log_records.add()
            r.time_unix_nano = BASE_NS + made * 1_000_000
            r.observed_time_unix_nano = r.time_unix_nano + 5_000
            r.severity_number, r.severity_text = rnd.choice([(9, "INFO"), (13, "WARN"), (17, "ERROR")])
            r.body.string_value = (f"request {rnd.randrange(10**9)} served in "
                                   f"{rnd.randrange(900)}ms route={rnd.choice(ROUTES)}")
            r.trace_id, r.span_id = rnd.randbytes(16), rnd.randbytes(8)
            _attr(r, "log.logger", "http.server")
            _attr(r, "thread.id", rnd.randrange(64))
            made += 1
    return req


def metrics(points: int, seed: int = 1, cluster: str = "prod-eu-1") -> ExportMetricsServiceRequest:
    """Gauges, cumulative sums and histograms, a third of the points each."""
    rnd = random.Random(seed)
    req = ExportMetricsServiceRequest()
    made = 0
    while made < points:
        rm = req.resource_metrics.add()
        _resource(rm.resource, rnd, rnd.choice(SERVICES), cluster)
        sm = rm.scope_metrics.add()
        sm.scope.name = "otelgw.loadtest"
        for kind in ("gauge", "sum", "histogram"):
            m = sm.metrics.add()
            m.name = {"gauge": "process.memory.usage", "sum": "http.server.requests",
                      "histogram": "http.server.request.duration"}[kind]
            data = getattr(m, kind)
            if kind != "gauge":
                data.aggregation_temporality = 2
            if kind == "sum":
                data.is_monotonic = True
            for i in range(30):
                dp = data.data_points.add()
                dp.time_unix_nano = BASE_NS + made * 10**9
                dp.start_time_unix_nano = BASE_NS
                _attr(dp, "http.route", ROUTES[i % len(ROUTES)])
                _attr(dp, "http.response.status_code", 200 + (i % 3) * 100)
                if kind == "histogram":
                    counts = [rnd.randrange(50) for _ in range(8)]
                    dp.bucket_counts.extend(counts)
                    dp.explicit_bounds.extend([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5])
                    dp.count, dp.sum = sum(counts), sum(counts) * 0.03
                else:
                    dp.as_double = rnd.random() * 1e6
                made += 1
    return req


_HEX_IDS = frozenset({"traceId", "spanId", "parentSpanId"})


def _hex_ids(node: object) -> object:
    if isinstance(node, dict):
        return {k: (base64.b64decode(v).hex() if k in _HEX_IDS and isinstance(v, str)
                    else _hex_ids(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def to_otlp_json(message: object) -> bytes:
    """OTLP/JSON as the specification writes it: lowerCamelCase keys, enums as integers, trace
    and span ids as hex (not protobuf JSON's base64)."""
    doc = json_format.MessageToDict(message, use_integers_for_enums=True)  # type: ignore[arg-type]
    return json.dumps(_hex_ids(doc), separators=(",", ":")).encode()
