"""Hostile values the gateway accepts with a documented normalization, end to end: sent over
OTLP/HTTP and OTLP/gRPC to a real gateway, read back from ClickHouse.

    invalid UTF-8            each maximal invalid sequence → U+FFFD (counted); the rest stored
    AnyValue nesting         any depth upb decodes (~44 levels) is stored; levels past
                             ANY_VALUE_DEPTH as documented in exporters/clickhouse/anyvalue.py
    timestamps               0 → 1970-01-01; from 2^63 ns (year 2262) on, Go's int64 conversion
                             wraps them, and so do we (2^64-1 → 1969-12-31 23:59:59.999999999)
    NaN / ±Inf               stored as such in Float64 columns, rendered as Go does in maps
    repeated attribute keys  kept as sent, sorted by key (as clickhouse-go's ordered map sends)
    huge attribute maps      stored whole (bounded by the request size)
    fields upb ignores       a known field with an unexpected wire type, an unknown group:
                             ignored as protobuf says, the rest stored
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from exporters.clickhouse.protoschema import ANY_VALUE_DEPTH
from loadtests.gatewayproc import Gateway, default_config, free_port
from receivers.otlp.config import OtlpConfig
from tests import oracle
from tests.payloads import KV, any_value
from tests.receivers.otlp import otlpdata
from tests.receivers.otlp.test_hostile_input import (
    field,
    grpc_export,
    traces_around,
    varint,
)
from tests.receivers.otlp.test_http import JSON, PROTOBUF, post

TRANSPORTS = ["http", "grpc"]


def send(gw: Gateway, transport: str, signal: str, body: bytes) -> bytes:
    """Export `body` (protobuf) and expect success; the response bytes."""
    if transport == "http":
        reply = post(gw.http_url, f"/v1/{signal}", body)
        assert reply.status == 200, reply
        return reply.body
    reply = grpc_export(gw, signal, body)
    assert reply.code == grpc.StatusCode.OK, reply
    return reply.body


def spans_of(gw: Gateway, service: str, n: int, columns: str) -> list[dict[str, Any]]:
    assert gw.wait_count("otel_traces", n, f"ServiceName = '{service}'") == n
    return gw.rows(f"SELECT {columns} FROM otel_traces WHERE ServiceName = '{service}' "
                   "ORDER BY SpanName")


def self_metric(gw: Gateway, name: str, labels: str) -> float:
    url = f"http://127.0.0.1:{gw.ports['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(p in line for p in labels.split(",")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# ---------------------------------------------------------------------------- invalid UTF-8


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invalid_utf8_in_protobuf_strings_is_replaced(gateway: Gateway, transport: str) -> None:
    service = otlpdata.service(f"utf8-{transport}")
    req = otlpdata.traces(service, spans=3)
    spans = req.resource_spans[0].scope_spans[0].spans
    # placeholders of the same length as the bad bytes, so the lengths on the wire stay right
    spans[0].name = "n-@@1@"
    spans[1].attributes.add(key="k@@2@", value=any_value("v-@@3@@"))
    spans[2].name = "fine"
    spans[2].events.add(name="e-@@4@")
    body = req.SerializeToString()
    for placeholder, bad in [(b"@@1@", b"\xff\xfe\xfd\xfc"), (b"@@2@", b"\xe2\x82x\x80"),
                             (b"@@3@@", b"\xf0\x9f\x98ab"), (b"@@4@", b"\xed\xa0\x80!")]:
        body = body.replace(placeholder, bad)
    label = f'transport="{transport}"'
    before = self_metric(gateway, "otelgw_receiver_utf8_replacements_total", label)
    send(gateway, transport, "traces", body)
    rows = spans_of(gateway, service, 3, "SpanName, SpanAttributes, Events.Name AS events")
    by_name = {r["SpanName"]: r for r in rows}
    assert set(by_name) == {"n-\ufffd\ufffd\ufffd\ufffd", "GET /cart", "fine"}
    assert by_name["GET /cart"]["SpanAttributes"] == {"k\ufffdx\ufffd": "v-\ufffdab"}
    assert by_name["fine"]["events"] == ["e-\ufffd\ufffd\ufffd!"]  # a surrogate: 3 bytes, 3 marks
    replaced = self_metric(gateway, "otelgw_receiver_utf8_replacements_total", label) - before
    assert replaced == 4 + 2 + 1 + 3


def test_invalid_utf8_and_lone_surrogates_in_json_are_replaced(gateway: Gateway) -> None:
    service = otlpdata.service("utf8-json")
    doc = otlpdata.json_traces(service, span_name="@@1@")
    attrs = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]
    attrs.append({"key": "lone", "value": {"stringValue": "a\ud800b"}})
    attrs.append({"key": "pair", "value": {"stringValue": "\U0001f600"}})  # escaped as a pair
    body = json.dumps(doc).encode().replace(b"@@1@", b"x\xffy\xc3")
    reply = post(gateway.http_url, "/v1/traces", body, JSON)
    assert reply.status == 200, reply
    [row] = spans_of(gateway, service, 1, "SpanName, SpanAttributes")
    assert row["SpanName"] == "x\ufffdy\ufffd"
    assert row["SpanAttributes"]["lone"] == "a\ufffdb"
    assert row["SpanAttributes"]["pair"] == "\U0001f600"


# ---------------------------------------------------------------------------- deep values


def nested(depth: int, leaf: Any, kvlist: bool) -> Any:
    value = leaf
    for i in range(depth):
        value = KV([(f"level{i}", value)]) if kvlist else [value, i]
    return value


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_deeply_nested_values_are_stored_as_documented(gateway: Gateway, transport: str) -> None:
    service = otlpdata.service(f"deep-{transport}")
    req = otlpdata.traces(service)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    depths = [1, ANY_VALUE_DEPTH, ANY_VALUE_DEPTH + 1, 10, 44]
    for depth in depths:
        span.attributes.append(KeyValue(key=f"array{depth}",
                                        value=any_value(nested(depth, "leaf", kvlist=False))))
    for depth in depths[:-1]:  # a kvlist level is one message more than an array level
        span.attributes.append(KeyValue(key=f"kvlist{depth}",
                                        value=any_value(nested(depth, 1.5, kvlist=True))))
    send(gateway, transport, "traces", req.SerializeToString())
    [row] = spans_of(gateway, service, 1, "SpanAttributes")
    want = oracle.attributes(span.attributes)
    assert row["SpanAttributes"] == want
    shallow = want[f"array{ANY_VALUE_DEPTH}"]
    assert json.loads(shallow)[1] == ANY_VALUE_DEPTH - 1  # plain JSON down to the last level


# ---------------------------------------------------------------------------- big maps


def test_an_enormous_attribute_map_is_stored_whole(gateway: Gateway) -> None:
    service = otlpdata.service("bigmap")
    req = otlpdata.traces(service)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.extend(KeyValue(key=f"k{i:06}", value=any_value(i)) for i in range(100_000))
    send(gateway, "http", "traces", req.SerializeToString())
    [row] = spans_of(gateway, service, 1, "toUInt32(length(SpanAttributes)) AS n, "
                                          "SpanAttributes['k099999'] AS last")
    assert row == {"n": 100_000, "last": "99999"}


def test_an_enormous_resource_over_grpc_is_stored_whole(gateway: Gateway) -> None:
    service = otlpdata.service("bigresource")
    req = otlpdata.traces(service, spans=2)
    req.resource_spans[0].resource.attributes.extend(
        KeyValue(key=f"r{i}", value=any_value("v" * 50)) for i in range(20_000))
    send(gateway, "grpc", "traces", req.SerializeToString())
    rows = spans_of(gateway, service, 2, "toUInt32(length(ResourceAttributes)) AS n")
    assert rows == [{"n": 20_001}, {"n": 20_001}]


# ---------------------------------------------------------------------------- timestamps


def go_time(nanos: int) -> str:
    """DateTime64(9) text of pcommon.Timestamp(nanos).AsTime(): time.Unix(0, int64(nanos))."""
    return oracle.ts(nanos - (1 << 64) if nanos >= 1 << 63 else nanos)


TIMES = {"zero": 0, "max-int64": (1 << 63) - 1, "2^63": 1 << 63, "max-uint64": (1 << 64) - 1,
         "year-2300": 10_413_792_000 * 10**9}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_timestamps_at_zero_and_far_future(gateway: Gateway, transport: str) -> None:
    service = otlpdata.service(f"times-{transport}")
    req = otlpdata.traces(service, spans=len(TIMES))
    for span, (name, t) in zip(req.resource_spans[0].scope_spans[0].spans, TIMES.items(),
                               strict=True):
        span.name, span.start_time_unix_nano, span.end_time_unix_nano = name, t, t
    send(gateway, transport, "traces", req.SerializeToString())
    rows = spans_of(gateway, service, len(TIMES),
                    "SpanName, toString(Timestamp, 'UTC') AS Timestamp")
    assert {r["SpanName"]: r["Timestamp"] for r in rows} == {
        name: go_time(t) for name, t in TIMES.items()}
    assert go_time((1 << 64) - 1) == "1969-12-31 23:59:59.999999999"
    assert go_time((1 << 63) - 1) == "2262-04-11 23:47:16.854775807"


def test_logs_and_metrics_at_time_zero(gateway: Gateway) -> None:
    service = otlpdata.service("times-zero")
    logs = otlpdata.logs(service)
    record = logs.resource_logs[0].scope_logs[0].log_records[0]
    record.time_unix_nano = record.observed_time_unix_nano = 0
    send(gateway, "http", "logs", logs.SerializeToString())
    metrics = gauge_request(service, [1.0])
    metrics.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].time_unix_nano = 0
    send(gateway, "grpc", "metrics", metrics.SerializeToString())
    assert gateway.wait_count("otel_logs", 1, f"ServiceName = '{service}'") == 1
    assert gateway.rows("SELECT toString(Timestamp, 'UTC') AS t FROM otel_logs "
                        f"WHERE ServiceName = '{service}'") == [
        {"t": "1970-01-01 00:00:00.000000000"}]
    assert gateway.wait_count("otel_metrics_gauge", 1, f"ServiceName = '{service}'") == 1
    assert gateway.rows("SELECT toString(TimeUnix, 'UTC') AS t FROM otel_metrics_gauge "
                        f"WHERE ServiceName = '{service}'") == [
        {"t": "1970-01-01 00:00:00.000000000"}]


def test_spans_spread_over_many_days_are_stored(gateway: Gateway) -> None:
    # the tables are partitioned by day; ClickHouse refuses an INSERT that touches more than
    # max_partitions_per_insert_block (100) partitions, and with it the whole batch
    service = otlpdata.service("times-spread")
    req = otlpdata.traces(service, spans=150)
    for i, span in enumerate(req.resource_spans[0].scope_spans[0].spans):
        t = (1_600_000_000 + i * 86400) * 10**9
        span.start_time_unix_nano = span.end_time_unix_nano = t
    good = otlpdata.service("times-spread-neighbour")
    send(gateway, "http", "traces", req.SerializeToString())
    send(gateway, "http", "traces", otlpdata.traces(good).SerializeToString())
    assert gateway.wait_count("otel_traces", 1, f"ServiceName = '{good}'") == 1
    assert gateway.wait_count("otel_traces", 150, f"ServiceName = '{service}'") == 150


# ---------------------------------------------------------------------------- NaN / Inf


def gauge_request(service: str, values: list[float]) -> Any:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.append(KeyValue(key="service.name", value=any_value(service)))
    metric = rm.scope_metrics.add().metrics.add(name="hostile.gauge")
    for i, v in enumerate(values):
        dp = metric.gauge.data_points.add(time_unix_nano=1_700_000_000 * 10**9 + i, as_double=v)
        dp.attributes.append(KeyValue(key="i", value=any_value(i)))
    return req


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_nan_and_infinities_are_stored(gateway: Gateway, transport: str) -> None:
    service = otlpdata.service(f"nan-{transport}")
    send(gateway, transport, "metrics", gauge_request(service, [float("nan"), float("inf"),
                                                                float("-inf"), 1.5])
         .SerializeToString())
    assert gateway.wait_count("otel_metrics_gauge", 4, f"ServiceName = '{service}'") == 4
    rows = gateway.rows("SELECT toString(Value) AS v FROM otel_metrics_gauge "
                        f"WHERE ServiceName = '{service}' ORDER BY toUInt32(Attributes['i'])")
    assert [r["v"] for r in rows] == ["nan", "inf", "-inf", "1.5"]

    span_service = otlpdata.service(f"nan-attrs-{transport}")
    req = otlpdata.traces(span_service)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    for key, value in [("nan", float("nan")), ("inf", float("inf")),
                       ("list", [1.0, -float("inf")])]:
        span.attributes.append(KeyValue(key=key, value=any_value(value)))
    send(gateway, transport, "traces", req.SerializeToString())
    [row] = spans_of(gateway, span_service, 1, "SpanAttributes")
    assert row["SpanAttributes"] == {"inf": "json: unsupported value: +Inf", "list": "",
                                     "nan": "json: unsupported value: NaN"}


# ---------------------------------------------------------------------------- repeated keys


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_repeated_attribute_keys_are_kept_as_sent(gateway: Gateway, transport: str) -> None:
    service = otlpdata.service(f"dupkeys-{transport}")
    req = otlpdata.traces(service)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    for key, value in [("k", "first"), ("a", "x"), ("k", "last")]:
        span.attributes.append(KeyValue(key=key, value=any_value(value)))
    send(gateway, transport, "traces", req.SerializeToString())
    [row] = spans_of(gateway, service, 1, "mapKeys(SpanAttributes) AS keys, "
                                          "mapValues(SpanAttributes) AS values, "
                                          "SpanAttributes['k'] AS k")
    assert row == {"keys": ["a", "k", "k"], "values": ["x", "first", "last"], "k": "first"}


# ---------------------------------------------------------------------------- what upb ignores

UPB_IGNORES = {
    # a known field number with the wrong wire type is an unknown field to protobuf
    "resource_spans-as-varint": b"\x08\x01",
    "span-name-as-varint": traces_around(field(2, b"\x28\x01")),
    "start-time-as-bytes": traces_around(field(2, field(7, b"x"))),
    # unknown fields of every wire type, a group too
    "unknown-group": varint(99 << 3 | 3) + b"\x08\x01" + varint(99 << 3 | 4),
    "unknown-fixed32": varint(98 << 3 | 5) + b"\0\0\0\0",
    # int32 / uint32 / bool fields given larger varints: protobuf truncates them
    "kind-2^40": traces_around(field(2, field(5, b"big-kind") + b"\x30" + varint(1 << 40))),
    "flags-2^40": traces_around(field(2, field(5, b"big-flags") + b"\x80\x01" + varint(1 << 40))),
}


@pytest.mark.parametrize("extra", UPB_IGNORES.values(), ids=UPB_IGNORES.keys())
def test_what_protobuf_ignores_does_not_cost_the_request(gateway: Gateway, extra: bytes) -> None:
    service = otlpdata.service("upb-ignores")
    body = otlpdata.traces(service).SerializeToString() + extra
    neighbour = otlpdata.service("upb-ignores-neighbour")
    send(gateway, "http", "traces", body)
    send(gateway, "grpc", "traces", otlpdata.traces(neighbour).SerializeToString())
    assert gateway.wait_count("otel_traces", 1, f"ServiceName = '{service}'") == 1
    assert gateway.wait_count("otel_traces", 1, f"ServiceName = '{neighbour}'") == 1


# ---------------------------------------------------------------------------- ids


def test_a_link_with_a_bad_id_rejects_its_span(gateway: Gateway) -> None:
    service = otlpdata.service("bad-link")
    req = otlpdata.traces(service, spans=2)
    req.resource_spans[0].scope_spans[0].spans[1].links.add(trace_id=b"\x01" * 5,
                                                            span_id=otlpdata.SPAN_ID)
    for transport in TRANSPORTS:
        resp = ExportTraceServiceResponse.FromString(
            send(gateway, transport, "traces", req.SerializeToString()))
        assert resp.partial_success.rejected_spans == 1
        assert "span 1: link 0: trace_id of 5 bytes (want 16)" in \
            resp.partial_success.error_message
    assert gateway.wait_count("otel_traces", 2, f"ServiceName = '{service}'") == 2


def test_an_exemplar_id_of_the_wrong_length_is_stored_as_sent(gateway: Gateway) -> None:
    service = otlpdata.service("bad-exemplar")
    req = gauge_request(service, [2.0])
    dp = req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    dp.exemplars.add(as_double=1.0, trace_id=b"\xab\xcd\xef", span_id=b"\x01")
    send(gateway, "http", "metrics", req.SerializeToString())
    assert gateway.wait_count("otel_metrics_gauge", 1, f"ServiceName = '{service}'") == 1
    assert gateway.rows("SELECT Exemplars.TraceId AS t, Exemplars.SpanId AS s "
                        f"FROM otel_metrics_gauge WHERE ServiceName = '{service}'") == [
        {"t": ["abcdef"], "s": ["01"]}]


# ---------------------------------------------------------------------------- truncation


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway whose otlp receiver truncates attribute values to 16 bytes and takes at most
    1000 items per request."""
    if "limits" not in OtlpConfig.model_fields:
        pytest.fail("receivers::otlp::limits is not wired into OtlpConfig yet "
                    "(see receivers/otlp/limits.py)")
    workdir = tmp_path_factory.mktemp("limited")
    ports = {k: free_port() for k in ("grpc", "http", "query", "metrics")}
    config = default_config(workdir / "data", ports)
    config["receivers"]["otlp"]["limits"] = {"attribute_value_length_limit": 16,
                                             "max_items_per_request": 1000}
    gw = Gateway(workdir, config, ports).start()
    yield gw
    assert gw.stop() == 0, gw.logs()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_attribute_values_are_truncated_and_counted(limited: Gateway, transport: str) -> None:
    service = otlpdata.service(transport)  # short: resource values are truncated too
    req = otlpdata.traces(service)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    for key, value in [("short", "x" * 16), ("long", "y" * 100), ("utf8", "é" * 10),
                       ("list", ["z" * 20, "ok", 7]), ("kv", KV([("in", "w" * 17)]))]:
        span.attributes.append(KeyValue(key=key, value=any_value(value)))
    req.resource_spans[0].resource.attributes.append(
        KeyValue(key="resource.long", value=any_value("r" * 40)))
    label = f'transport="{transport}"'
    before = self_metric(limited, "otelgw_receiver_truncated_attribute_values_total", label)
    send(limited, transport, "traces", req.SerializeToString())
    [row] = spans_of(limited, service, 1, "SpanAttributes, ResourceAttributes['resource.long'] "
                                          "AS r, SpanName")
    assert row["SpanAttributes"] == {
        "kv": '{"in":"wwwwwwwwwwwwwwww"}', "list": '["zzzzzzzzzzzzzzzz","ok",7]',
        "long": "y" * 16, "short": "x" * 16,
        "utf8": "é" * 8}  # 2 bytes each: 8 fit in 16
    assert row["r"] == "r" * 16
    assert row["SpanName"] == "GET /cart"  # not an attribute: left alone
    truncated = self_metric(limited, "otelgw_receiver_truncated_attribute_values_total", label)
    assert truncated - before == 5  # long, utf8 is exactly 20 bytes > 16, list[0], kv.in, resource


def test_the_configured_item_limit_applies(limited: Gateway) -> None:
    body = otlpdata.traces("x", spans=1001).SerializeToString()
    reply = post(limited.http_url, "/v1/traces", body, PROTOBUF)
    assert reply.status == 400, reply
    assert "more than 1000 spans, over the limit of 1000 per request" in \
        reply.rpc_status().message
