"""Hostile and broken requests against a real gateway, over OTLP/HTTP and OTLP/gRPC: each gets a
clear refusal (HTTP 4xx with a google.rpc.Status / gRPC INVALID_ARGUMENT, naming what is wrong)
in bounded time, and the gateway goes on storing good requests sent between them.

What is stored for the requests the gateway accepts with a normalization (invalid UTF-8, deep
values, timestamps, NaN, repeated keys, …) is in test_hostile_values.py.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import grpc
import pytest
import zstandard
from google.rpc import code_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from loadtests.gatewayproc import Gateway
from receivers.otlp.compression import MAX_MEMBERS
from receivers.otlp.limits import DEFAULT_LIMITS
from tests.receivers.otlp import otlpdata
from tests.receivers.otlp.test_http import JSON, PROTOBUF, compress, post

EXPORT = {"traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
          "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
          "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export"}
MAX_ITEMS = DEFAULT_LIMITS.max_items_per_request


# ---------------------------------------------------------------------------- wire helpers


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def traces_around(spans: bytes) -> bytes:
    """ExportTraceServiceRequest{resource_spans{scope_spans{<spans>}}}: `spans` is the wire
    content of one ScopeSpans."""
    return field(1, field(2, spans))


def nested_array(depth: int, leaf: bytes = field(1, b"x")) -> bytes:
    """An AnyValue holding `depth` arrays one inside the other, around string "x"."""
    value = leaf
    for _ in range(depth):
        value = field(5, field(1, value))  # AnyValue.array_value{values: [value]}
    return value


def span_with_attribute(value: bytes, name: bytes = b"deep") -> bytes:
    """The wire content of a ScopeSpans with one span carrying attribute `name` = value."""
    span = field(5, b"deep-span") + field(9, field(1, name) + field(2, value))
    return field(2, span)


# ---------------------------------------------------------------------------- transports


class GrpcReply:
    def __init__(self, code: grpc.StatusCode, message: str, body: bytes = b"") -> None:
        self.code, self.message, self.body = code, message, body

    def __repr__(self) -> str:
        return f"<gRPC {self.code.name} {self.message!r}>"


def grpc_export(gw: Gateway, signal: str, body: bytes,
                compression: grpc.Compression | None = None) -> GrpcReply:
    """A unary Export with `body` as the request bytes, as a broken client would send them."""
    with grpc.insecure_channel(gw.grpc_endpoint) as channel:
        call = channel.unary_unary(EXPORT[signal], request_serializer=None,
                                   response_deserializer=None)
        try:
            return GrpcReply(grpc.StatusCode.OK, "", bytes(call(body, timeout=60,
                                                               compression=compression)))
        except grpc.RpcError as err:
            return GrpcReply(err.code(), err.details() or "")


def refused(gw: Gateway, signal: str, body: bytes, words: str, ctype: str = PROTOBUF,
            encoding: str | None = None, status: int = 400) -> None:
    """The HTTP answer is `status` with an INVALID_ARGUMENT google.rpc.Status saying `words`."""
    reply = post(gw.http_url, f"/v1/{signal}", body, ctype, encoding)
    assert reply.status == status, reply
    assert reply.headers["content-type"] == ctype
    rpc = reply.rpc_status()
    assert rpc.code == code_pb2.INVALID_ARGUMENT
    assert words in rpc.message, rpc.message


def refused_grpc(gw: Gateway, signal: str, body: bytes, words: str) -> None:
    reply = grpc_export(gw, signal, body)
    assert reply.code == grpc.StatusCode.INVALID_ARGUMENT, reply
    assert words in reply.message, reply


def good_traces(gw: Gateway, prefix: str) -> str:
    """Send one good request over each transport; the service name they are stored under."""
    service = otlpdata.service(prefix)
    body = otlpdata.traces(service).SerializeToString()
    assert post(gw.http_url, "/v1/traces", body).status == 200
    assert grpc_export(gw, "traces", body).code == grpc.StatusCode.OK
    return service


# ---------------------------------------------------------------------------- malformed protobuf

MALFORMED = {
    "truncated-varint": b"\x0a\xff",
    "length-past-end": b"\x0a\x10\x12\x02",
    "wire-type-7": traces_around(b"\x17\x00"),
    "field-number-0": b"\x02\x00",
    "end-group-alone": traces_around(b"\x14"),
    "unclosed-group": b"\x0b\x12\x00",
    "span-length-past-scope": field(1, b"\x12\x04\x12\x10ab"),
    "bad-nested-string-length": traces_around(field(2, b"\x2a\x7f")),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_protobuf_is_refused_on_both_transports(gateway: Gateway, body: bytes) -> None:
    words = "cannot decode the body as a protobuf ExportTraceServiceRequest"
    refused(gateway, "traces", body, words)
    refused_grpc(gateway, "traces", body, words)


def test_nesting_beyond_the_decoder_depth_limit_is_refused(gateway: Gateway) -> None:
    # ~45 AnyValue levels fill upb's depth limit of 100 messages; deeper is refused, whole
    body = traces_around(span_with_attribute(nested_array(60)))
    refused(gateway, "traces", body, "nested more than 100 levels deep")
    refused_grpc(gateway, "traces", body, "nested more than 100 levels deep")


@pytest.mark.parametrize("signal", ["traces", "metrics", "logs"])
def test_empty_requests_are_accepted_and_store_nothing(gateway: Gateway, signal: str) -> None:
    for ctype, body in [(PROTOBUF, b""), (JSON, b"{}"), (PROTOBUF, field(1, b"")),
                        (JSON, b'{"resourceSpans": [], "resourceMetrics": [{}]}')]:
        reply = post(gateway.http_url, f"/v1/{signal}", body, ctype)
        assert reply.status == 200, (ctype, body, reply)
    assert grpc_export(gateway, signal, b"").code == grpc.StatusCode.OK
    refused(gateway, signal, b"", "not valid JSON", JSON)


# ---------------------------------------------------------------------------- compression


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_a_flood_of_empty_members_is_refused_quickly(gateway: Gateway, encoding: str) -> None:
    # ~20 / 9 bytes per empty gzip member / zstd frame: 2 MB of them must not cost a core
    # for minutes (each one is a decoder round)
    member = compress(b"", encoding)
    body = member * (2_000_000 // len(member))
    started = time.monotonic()
    refused(gateway, "traces", body, f"more than {MAX_MEMBERS} {encoding} ", encoding=encoding)
    assert time.monotonic() - started < 5


def test_many_members_within_the_limit_are_one_body(gateway: Gateway) -> None:
    service = otlpdata.service("hostile-members")
    body = compress(otlpdata.traces(service).SerializeToString(), "gzip")
    body += compress(b"", "gzip") * (MAX_MEMBERS - 1)
    reply = post(gateway.http_url, "/v1/traces", body, PROTOBUF, "gzip")
    assert reply.status == 200, reply
    assert gateway.wait_count("otel_traces", 1, f"ServiceName = '{service}'") == 1


def test_zstd_frame_asking_for_a_huge_window_is_refused(gateway: Gateway) -> None:
    # a frame header can ask the decoder for a 1 GiB window whatever it holds
    params = zstandard.ZstdCompressionParameters(window_log=30, enable_ldm=True)
    writer = zstandard.ZstdCompressor(compression_params=params).compressobj()
    frame = writer.compress(otlpdata.traces("x").SerializeToString()) + writer.flush()
    assert zstandard.get_frame_parameters(frame).window_size == 1 << 30
    refused(gateway, "traces", frame, "too much memory", encoding="zstd")


def test_grpc_gzip_bomb_is_refused_by_the_message_size_limit(gateway: Gateway) -> None:
    # gRPC decompresses itself; the 4 MiB max_recv_msg_size_mib applies to what comes out
    body = traces_around(span_with_attribute(field(1, b"\0" * (8 << 20))))
    reply = grpc_export(gateway, "traces", body, grpc.Compression.Gzip)
    assert reply.code == grpc.StatusCode.RESOURCE_EXHAUSTED, reply
    assert "larger than max" in reply.message.lower() or "exceeds" in reply.message.lower(), reply


# ---------------------------------------------------------------------------- OTLP/JSON

WRONG_TYPES = {
    "attributes-object": ({"resourceSpans": [{"resource": {"attributes": {"k": "v"}}}]},
                          "attributes"),
    "int-as-float": ({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"attributes": [{"key": "k", "value": {"intValue": 1.5}}]}]}]}]}, "intValue"),
    "bool-as-string": ({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"attributes": [{"key": "k", "value": {"boolValue": "yes"}}]}]}]}]}, "boolValue"),
    "span-as-string": ({"resourceSpans": [{"scopeSpans": [{"spans": ["GET /"]}]}]}, "spans"),
    "id-as-number": ({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 12}]}]}]},
                     "traceId"),
    "two-oneof-values": ({"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [
        {"key": "k", "value": {"intValue": "1", "stringValue": "1"}}]}]}]}]}, "oneof"),
    "bytes-not-base64": ({"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [
        {"key": "k", "value": {"bytesValue": "%%%"}}]}]}]}]}, "bytesValue"),
    "huge-integer": ({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"startTimeUnixNano": str(2**64)}]}]}]}, "startTimeUnixNano"),
}


@pytest.mark.parametrize("doc, words", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_json_with_wrong_types_is_400_naming_the_field(gateway: Gateway, doc: Any,
                                                       words: str) -> None:
    refused(gateway, "traces", json.dumps(doc).encode(), words, JSON)


@pytest.mark.parametrize("body, key", [
    (b'{"resourceSpans": [], "resourceSpans": []}', "resourceSpans"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "a", "name": "b"}]}]}]}', "name"),
    (b'{"resourceSpans": [{"resource": {"attributes": [{"key": "k", "key": "k2", '
     b'"value": {"stringValue": "v"}}]}}]}', "key"),
])
def test_json_object_with_a_repeated_key_is_400(gateway: Gateway, body: bytes, key: str) -> None:
    refused(gateway, "traces", body, f"repeats the key {key!r}", JSON)


def test_deep_json_is_400(gateway: Gateway) -> None:
    value: Any = {"stringValue": "x"}
    for _ in range(60):
        value = {"arrayValue": {"values": [value]}}
    doc = {"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": value}]}}]}
    refused(gateway, "traces", json.dumps(doc).encode(), "nested more than 100 levels", JSON)


# ---------------------------------------------------------------------------- items per request


def test_more_items_than_the_limit_are_refused_before_decoding(gateway: Gateway) -> None:
    # an empty span is two bytes: 1 MB holds more spans than a request may carry; upb would
    # need ~170 bytes and ~0.7 µs for each of them
    body = traces_around(b"\x12\x00" * (MAX_ITEMS + 1))
    words = f"more than {MAX_ITEMS} spans, over the limit of {MAX_ITEMS} per request"
    started = time.monotonic()
    refused(gateway, "traces", body, words)
    refused_grpc(gateway, "traces", body, words)
    assert time.monotonic() - started < 5


def test_data_points_count_toward_the_limit(gateway: Gateway) -> None:
    gauge = field(5, b"\x0a\x00" * (MAX_ITEMS // 2 + 1))  # Metric.gauge{data_points × n}
    metric = field(1, b"m") + gauge
    body = field(1, field(2, field(2, metric) * 2))  # two such metrics in one scope
    refused(gateway, "metrics", body, "metric points, over the limit")


def test_json_items_over_the_limit_are_refused(gateway: Gateway) -> None:
    spans = ",".join(["{}"] * (MAX_ITEMS + 1))
    body = f'{{"resourceSpans": [{{"scopeSpans": [{{"spans": [{spans}]}}]}}]}}'.encode()
    refused(gateway, "traces", body, f"{MAX_ITEMS + 1} spans, over the limit", JSON)


def test_a_large_request_within_the_limit_is_stored(gateway: Gateway) -> None:
    service = otlpdata.service("hostile-many")
    req = otlpdata.traces(service, spans=50_000)
    reply = post(gateway.http_url, "/v1/traces", req.SerializeToString())
    assert reply.status == 200, reply
    assert gateway.wait_count("otel_traces", 50_000, f"ServiceName = '{service}'",
                              timeout=60) == 50_000


# ---------------------------------------------------------------------------- mixed traffic


BAD_REQUESTS: list[tuple[str, bytes, str | None, str | None, int]] = [
    # (signal, body, content type, content encoding, HTTP status)
    *[("traces", body, PROTOBUF, None, 400) for body in MALFORMED.values()],
    ("traces", traces_around(span_with_attribute(nested_array(60))), PROTOBUF, None, 400),
    ("traces", traces_around(b"\x12\x00" * (MAX_ITEMS + 1)), PROTOBUF, None, 400),
    ("logs", compress(b"\0" * (21 << 20), "gzip"), PROTOBUF, "gzip", 413),
    ("logs", compress(otlpdata.logs("x").SerializeToString(), "zstd")[:-3], PROTOBUF, "zstd",
     400),
    ("metrics", b'{"resourceMetrics": [{"scopeMetrics": 7}]}', JSON, None, 400),
    ("traces", b'{"resourceSpans": [], "resourceSpans": []}', JSON, None, 400),
    ("logs", b'{"resourceLogs": [{"scopeLogs": [{"logRecords": ["text"]}]}]}', JSON, None, 400),
]


def test_good_requests_between_bad_ones_are_all_stored(gateway: Gateway) -> None:
    offset = len(gateway.logs())
    services = []
    for signal, body, ctype, encoding, status in BAD_REQUESTS:
        assert post(gateway.http_url, f"/v1/{signal}", body, ctype, encoding).status == status
        if encoding is None and ctype == PROTOBUF:
            assert grpc_export(gateway, signal, body).code == grpc.StatusCode.INVALID_ARGUMENT
        services.append(good_traces(gateway, "hostile-between"))
    for service in services:  # one over HTTP, one over gRPC
        assert gateway.wait_count("otel_traces", 2, f"ServiceName = '{service}'") == 2
    assert gateway.proc is not None and gateway.proc.poll() is None
    assert "Traceback" not in gateway.logs()[offset:]


def test_concurrent_bad_and_good_clients(gateway: Gateway) -> None:
    service = otlpdata.service("hostile-concurrent")
    good = otlpdata.traces(service).SerializeToString()
    errors: list[str] = []

    def bad_client() -> None:
        for signal, body, ctype, encoding, status in BAD_REQUESTS * 2:
            got = post(gateway.http_url, f"/v1/{signal}", body, ctype, encoding).status
            if got != status:
                errors.append(f"bad request answered {got}, not {status}")

    def good_client() -> None:
        for _ in range(20):
            reply = post(gateway.http_url, "/v1/traces", good)
            if reply.status != 200:
                errors.append(f"good request answered {reply!r}")
            if grpc_export(gateway, "traces", good).code != grpc.StatusCode.OK:
                errors.append("good gRPC request refused")

    threads = [threading.Thread(target=f) for f in (bad_client, bad_client, good_client)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    assert gateway.wait_count("otel_traces", 40, f"ServiceName = '{service}'") == 40
    resp = ExportTraceServiceResponse.FromString(
        post(gateway.http_url, "/v1/traces", good).body)
    assert not resp.HasField("partial_success")
