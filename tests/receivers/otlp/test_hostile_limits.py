"""The receiver's limits and normalizations in-process, at the seam the transports call
(Ingest.decode → Ingest.push → the pipeline): what reaches the next stage, and what is counted.
The same behaviour through a real gateway is in test_hostile_values.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from pydantic import ValidationError

from gateway.component import ComponentID
from gateway.errors import PermanentError
from gateway.payload import Payload, RequestContext
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry
from receivers.otlp.common import Ingest
from receivers.otlp.decode import TooManyItems, decode_json, decode_protobuf
from receivers.otlp.limits import OtlpLimits, truncate_attributes
from tests.payloads import KV, any_value
from tests.receivers.otlp import otlpdata
from tests.receivers.otlp.test_hostile_input import field


class Capture:
    def __init__(self) -> None:
        self.payloads: list[Payload] = []

    async def consume(self, payload: Payload) -> None:
        self.payloads.append(payload)


def ingest(limits: OtlpLimits) -> tuple[Ingest, Capture, SelfTelemetry]:
    capture, telemetry = Capture(), SelfTelemetry()
    sink: Any = {s: capture for s in Signal}
    return Ingest(ComponentID("otlp"), sink, telemetry, limits), capture, telemetry


def counter(telemetry: SelfTelemetry, name: str, transport: str) -> float:
    value = telemetry.registry.get_sample_value(f"{name}_total",
                                                {"receiver": "otlp", "transport": transport})
    return value or 0.0


def push(ing: Ingest, signal: Signal, body: bytes, as_json: bool = False,
         transport: str = "http") -> Any:
    async def run() -> Any:
        decoded = ing.decode(signal, body, as_json, transport)
        return await ing.push(signal, decoded, transport, RequestContext())
    return asyncio.run(run())


# ---------------------------------------------------------------------------- configuration


def test_limits_have_defaults_and_refuse_nonsense() -> None:
    assert OtlpLimits().max_items_per_request == 500_000
    assert OtlpLimits().attribute_value_length_limit == 0
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        OtlpLimits(max_items_per_request=-1)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        OtlpLimits.model_validate({"max_items": 5})


# ---------------------------------------------------------------------------- UTF-8


def test_a_repaired_request_goes_on_re_encoded_and_is_counted() -> None:
    ing, capture, telemetry = ingest(OtlpLimits())
    req = otlpdata.traces(otlpdata.service("unit"), spans=2, span_name="ab@")
    body = req.SerializeToString().replace(b"ab@", b"ab\xff")
    push(ing, Signal.TRACES, body, transport="grpc")
    [payload] = capture.payloads
    assert payload.raw != body  # the received bytes were not valid: never passed on
    spans = Signal.TRACES.request_type.FromString(payload.raw).resource_spans[0].scope_spans[0]
    assert [s.name for s in spans.spans] == ["ab\ufffd", "ab\ufffd"]
    assert counter(telemetry, "otelgw_receiver_utf8_replacements", "grpc") == 2


def test_a_valid_request_goes_on_as_received() -> None:
    ing, capture, _ = ingest(OtlpLimits(attribute_value_length_limit=4096))
    body = otlpdata.traces(otlpdata.service("unit")).SerializeToString()
    push(ing, Signal.TRACES, body)
    assert capture.payloads[0].raw is body  # not even re-encoded


def test_json_lone_surrogates_and_bad_bytes_are_counted() -> None:
    decoded = decode_json(Signal.LOGS, b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{'
                                       b'"body": {"stringValue": "\\ud800 \xff"}}]}]}]}')
    record = decoded.message.resource_logs[0].scope_logs[0].log_records[0]
    assert record.body.string_value == "\ufffd \ufffd"
    assert decoded.utf8_replacements == 2


# ---------------------------------------------------------------------------- items


def test_too_many_items_is_a_permanent_error_naming_the_limit() -> None:
    body = otlpdata.traces("x", spans=11).SerializeToString()
    limit = "over the limit of 10 per request \\(max_items_per_request\\)"
    with pytest.raises(TooManyItems, match=f"holds more than 10 spans, {limit}") as err:
        decode_protobuf(Signal.TRACES, body, OtlpLimits(max_items_per_request=10))
    assert isinstance(err.value, PermanentError)
    assert decode_protobuf(Signal.TRACES, body, OtlpLimits(max_items_per_request=0)).raw is body


def test_every_occurrence_of_a_metric_data_field_counts() -> None:
    # upb builds a gauge's points even when a later sum replaces the gauge: both count
    points = b"\x0a\x00" * 30
    metric = field(1, b"m") + field(5, points) + field(7, points)  # gauge, then sum
    body = field(1, field(2, field(2, metric)))
    parsed = ExportMetricsServiceRequest.FromString(body)
    assert parsed.resource_metrics[0].scope_metrics[0].metrics[0].WhichOneof("data") == "sum"
    with pytest.raises(TooManyItems, match="more than 40 metric points"):
        decode_protobuf(Signal.METRICS, body, OtlpLimits(max_items_per_request=40))


def test_json_items_are_counted_before_they_are_built() -> None:
    doc = b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"sum": {"dataPoints": ' + \
        b"[" + b",".join([b"{}"] * 6) + b"]}}]}]}]}"
    with pytest.raises(TooManyItems, match="holds 6 metric points"):
        decode_json(Signal.METRICS, doc, OtlpLimits(max_items_per_request=5))


# ---------------------------------------------------------------------------- truncation


def kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


def test_truncation_reaches_every_attribute_collection() -> None:
    long = "x" * 20
    traces = otlpdata.traces("svc")
    rs = traces.resource_spans[0]
    rs.resource.attributes.append(kv("r", long))
    rs.scope_spans[0].scope.attributes.append(kv("s", long))
    span = rs.scope_spans[0].spans[0]
    span.attributes.extend([kv("a", long), kv("n", 12345678901234567), kv("b", b"y" * 40),
                            kv("l", [long, 1.5, [long]]), kv("m", KV([("k", long)]))])
    span.events.add(name="e").attributes.append(kv("e", long))
    span.links.add().attributes.append(kv("k", long))
    assert truncate_attributes(Signal.TRACES, traces, 8) == 8
    assert rs.resource.attributes[-1].value.string_value == "x" * 8
    values = [a.value for a in span.attributes]
    assert values[1].int_value == 12345678901234567 and values[2].bytes_value == b"y" * 40
    assert values[3].array_value.values[1].double_value == 1.5
    assert values[3].array_value.values[2].array_value.values[0].string_value == "x" * 8

    metrics = ExportMetricsServiceRequest()
    m = metrics.resource_metrics.add().scope_metrics.add().metrics.add(name="m")
    m.metadata.append(kv("meta", long))
    dp = m.histogram.data_points.add()
    dp.attributes.append(kv("a", long))
    dp.exemplars.add().filtered_attributes.append(kv("f", long))
    m.histogram.data_points.add().attributes.append(kv("short", "ok"))
    assert truncate_attributes(Signal.METRICS, metrics, 8) == 3

    logs = otlpdata.logs("svc", body=long)
    logs.resource_logs[0].scope_logs[0].log_records[0].attributes.append(kv("a", long))
    assert truncate_attributes(Signal.LOGS, logs, 8) == 1
    assert logs.resource_logs[0].scope_logs[0].log_records[0].body.string_value == long


@pytest.mark.parametrize("text, limit, kept", [
    ("é" * 10, 5, "é" * 2),        # 2-byte characters: never cut in two
    ("日本語", 7, "日本"),          # 3 bytes each
    ("a😀b", 4, "a"),              # a 4-byte character does not fit after "a"
    ("a😀b", 5, "a😀"),
    ("exact", 5, "exact"),
])
def test_truncation_cuts_bytes_at_a_character_boundary(text: str, limit: int, kept: str) -> None:
    logs = otlpdata.logs("s")
    logs.resource_logs[0].scope_logs[0].log_records[0].attributes.append(kv("a", text))
    n = truncate_attributes(Signal.LOGS, logs, limit)
    attr = logs.resource_logs[0].scope_logs[0].log_records[0].attributes[0]
    assert attr.value.string_value == kept and n == (kept != text)


def test_truncated_requests_go_on_re_encoded_and_are_counted() -> None:
    ing, capture, telemetry = ingest(OtlpLimits(attribute_value_length_limit=8))
    req = otlpdata.traces("svc")
    req.resource_spans[0].scope_spans[0].spans[0].attributes.append(kv("a", "y" * 30))
    push(ing, Signal.TRACES, req.SerializeToString())
    stored = Signal.TRACES.request_type.FromString(capture.payloads[0].raw)
    assert stored.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.string_value \
        == "y" * 8
    assert counter(telemetry, "otelgw_receiver_truncated_attribute_values", "http") == 1
