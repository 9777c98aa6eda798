"""The resource processor, and both processors end to end: a real gateway with
otlp → resource → attributes → batch → clickhouse, checked by the rows in ClickHouse."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from pydantic import ValidationError

from gateway.component import ComponentID
from gateway.payload import Payload, RequestContext
from gateway.signals import Signal, resources
from loadtests import payloads as loadpayloads
from loadtests.gatewayproc import Gateway, default_config, free_port
from processors.resource.config import ResourceConfig
from processors.resource.processor import ResourceProcessor
from processors.resource.wire import replace_resources
from tests.payloads import any_value

STAMP = [{"key": "k8s.cluster.name", "value": "stamped", "action": "upsert"}]


class Sink:
    def __init__(self) -> None:
        self.payloads: list[Payload] = []

    async def consume(self, payload: Payload) -> None:
        self.payloads.append(payload)


def run(actions: list[dict[str, Any]], signal: Signal, request: Any,
        context: RequestContext | None = None) -> tuple[Payload, Any]:
    sink = Sink()
    proc = ResourceProcessor(ComponentID("resource"),
                             ResourceConfig.model_validate({"attributes": actions}), signal, sink)
    payload = Payload(signal, request.SerializeToString(), None, 1, context or RequestContext())
    asyncio.run(proc.consume(payload))
    [out] = sink.payloads
    decoded = signal.request_type.FromString(out.raw)
    assert decoded == out.message  # the bytes handed on say what the message says
    return out, decoded


def resource_attrs(signal: Signal, request: Any) -> list[dict[str, Any]]:
    return [{kv.key: kv.value for kv in r.resource.attributes} for r in resources(signal, request)]


# ------------------------------------------------------------------ unit

@pytest.mark.parametrize("signal, request_", [
    (Signal.TRACES, loadpayloads.traces(250, per_resource=50)),
    (Signal.LOGS, loadpayloads.logs(250, per_resource=50)),
    (Signal.METRICS, loadpayloads.metrics(180)),
])
def test_upsert_stamps_every_resource_and_nothing_else(signal: Signal, request_: Any) -> None:
    _, out = run(STAMP, signal, request_)
    before, after = resource_attrs(signal, request_), resource_attrs(signal, out)
    assert len(after) == len(before) > 1
    for old, new in zip(before, after):
        assert new.pop("k8s.cluster.name").string_value == "stamped"
        old.pop("k8s.cluster.name")
        assert new == old
    # below the resource nothing changed
    for a, b in zip(resources(signal, request_), resources(signal, out)):
        a.ClearField("resource")
        b.ClearField("resource")
        assert a == b


def test_insert_keeps_an_existing_value_and_the_request_bytes() -> None:
    request = loadpayloads.traces(100, per_resource=50, cluster="prod-eu-1")
    payload, out = run([{"key": "k8s.cluster.name", "value": "other", "action": "insert"},
                        {"key": "k8s.cluster.name", "value": "prod-eu-1", "action": "upsert"}],
                       Signal.TRACES, request)
    assert payload.raw == request.SerializeToString()  # nothing changed: bytes as received
    assert {a["k8s.cluster.name"].string_value
            for a in resource_attrs(Signal.TRACES, out)} == {"prod-eu-1"}


def test_from_context_and_other_actions_on_resources() -> None:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([KeyValue(key=k, value=any_value(v)) for k, v in (
        ("service.name", "api"), ("host.ip", "10.0.0.7"), ("secret", "s"),
        ("pod", "api-7d9f-x2"), ("cores", "8"))])
    actions = [
        {"key": "client.address", "from_context": "client.address", "action": "insert"},
        {"key": "tenant", "from_context": "metadata.x-tenant", "action": "insert"},
        {"key": "host.ip", "action": "hash"},
        {"key": "secret", "action": "delete"},
        {"key": "pod", "pattern": r"^(?P<deployment>[a-z]+)-", "action": "extract"},
        {"key": "cores", "action": "convert", "converted_type": "int"},
    ]
    ctx = RequestContext(client_address="2001:db8::1%eth0", headers=(("x-tenant", "acme"),))
    _, out = run(actions, Signal.TRACES, request, ctx)
    attrs = {kv.key: kv.value for kv in out.resource_spans[0].resource.attributes}
    assert attrs["client.address"].string_value == "2001:db8::1"
    assert attrs["tenant"].string_value == "acme"
    assert len(attrs["host.ip"].string_value) == 64 and "secret" not in attrs
    assert attrs["deployment"].string_value == "api"
    assert attrs["cores"].WhichOneof("value") == "int_value" and attrs["cores"].int_value == 8


def test_resource_config_validation() -> None:
    with pytest.raises(ValidationError, match='missing required field "attributes"'):
        ResourceConfig.model_validate({})
    with pytest.raises(ValidationError, match="multiple value sources"):
        ResourceConfig.model_validate({"attributes": [
            {"key": "k", "value": 1, "from_context": "client.address", "action": "upsert"}]})
    with pytest.raises(ValidationError, match="Extra inputs"):
        ResourceConfig.model_validate({"attributes": STAMP, "actions": STAMP})


# ------------------------------------------------------------------ splicing the bytes

def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(out) + bytes([n])


def _field(number: int, body: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(body)) + body


@pytest.mark.parametrize("signal, request_", [
    (Signal.TRACES, loadpayloads.traces(700, per_resource=100)),
    (Signal.LOGS, loadpayloads.logs(300, per_resource=30)),
    (Signal.METRICS, loadpayloads.metrics(450)),
])
def test_replacing_resources_equals_serializing_the_edited_message(signal: Signal,
                                                                   request_: Any) -> None:
    raw = request_.SerializeToString()
    edited = signal.request_type.FromString(raw)
    entries = resources(signal, edited)
    chosen = {0, len(entries) - 1, len(entries) // 2}
    for i in chosen:  # a longer value, a shorter one, a new attribute: lengths all change
        attrs = entries[i].resource.attributes
        attrs[0].value.string_value = "x" * 300 if i else ""
        attrs.add(key="added", value=any_value(i))
    spliced = replace_resources(raw, {i: entries[i].resource.SerializeToString()
                                      for i in chosen})
    assert spliced is not None and signal.request_type.FromString(spliced) == edited
    assert replace_resources(raw, {}) == raw


def test_replacing_a_resource_given_twice_absent_or_beside_unknown_fields() -> None:
    scope = ExportTraceServiceRequest(resource_spans=[{"scope_spans": [{"spans": [
        {"name": "kept"}]}]}]).resource_spans[0].scope_spans[0].SerializeToString()
    part = [KeyValue(key="a", value=any_value(1)).SerializeToString(),
            KeyValue(key="b", value=any_value(2)).SerializeToString()]
    unknown = _varint(99 << 3) + _varint(7)  # field 99, a varint nobody knows
    twice = (_field(1, _field(1, part[0])) + _field(2, scope) + _field(1, _field(1, part[1]))
             + unknown)
    absent = _field(2, scope)
    raw = _field(1, twice) + unknown + _field(1, absent)
    parsed = ExportTraceServiceRequest.FromString(raw)
    assert [kv.key for kv in parsed.resource_spans[0].resource.attributes] == ["a", "b"]
    new = [_field(1, KeyValue(key="c", value=any_value(3)).SerializeToString())] * 2
    spliced = replace_resources(raw, {0: new[0], 1: new[1]})
    assert spliced is not None and unknown in spliced
    out = ExportTraceServiceRequest.FromString(spliced)
    for rs in out.resource_spans:
        assert [kv.key for kv in rs.resource.attributes] == ["c"]
        assert [s.name for s in rs.scope_spans[0].spans] == ["kept"]
    assert replace_resources(raw, {2: new[0]}) is None  # no such entry
    assert replace_resources(raw[:-1], {0: new[0]}) is None  # truncated
    assert replace_resources(b"\x0b" + raw, {0: new[0]}) is None  # a group (wire type 3)


# ------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir: Path = tmp_path_factory.mktemp("resource-attributes")
    ports = {k: free_port() for k in ("grpc", "http", "query", "metrics")}
    cfg = default_config(workdir / "data", ports)
    for proto in ("grpc", "http"):
        cfg["receivers"]["otlp"]["protocols"][proto]["include_metadata"] = True
    cfg["processors"]["resource"] = {"attributes": [
        {"key": "k8s.cluster.name", "value": "e2e-cluster", "action": "upsert"},
        {"key": "client.address", "from_context": "client.address", "action": "insert"},
        {"key": "tenant", "from_context": "metadata.x-tenant", "action": "upsert"}]}
    cfg["processors"]["attributes"] = {"actions": [
        {"key": "env", "value": "prod", "action": "insert"},
        {"key": "user.email", "action": "hash"},
        {"key": "retries", "action": "convert", "converted_type": "int"}]}
    for pipeline in cfg["service"]["pipelines"].values():
        pipeline["processors"] = ["resource", "attributes", "batch"]
    gw = Gateway(workdir, cfg, ports).start()
    yield gw
    assert gw.stop() == 0, gw.logs()


def _resource(request_part: Any, service: str) -> None:
    request_part.resource.attributes.extend([
        KeyValue(key="service.name", value=any_value(service)),
        KeyValue(key="k8s.cluster.name", value=any_value("from-the-app")),
        KeyValue(key="k8s.pod.name", value=any_value(f"{service}-pod"))])


def _item_attributes(item: Any) -> None:
    item.attributes.extend([KeyValue(key="user.email", value=any_value("user@example.com")),
                            KeyValue(key="retries", value=any_value(3.9))])


def traces_request(service: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    _resource(rs, service)
    span = rs.scope_spans.add().spans.add(name="op", trace_id=uuid.uuid4().bytes,
                                          span_id=uuid.uuid4().bytes[:8],
                                          start_time_unix_nano=loadpayloads.BASE_NS,
                                          end_time_unix_nano=loadpayloads.BASE_NS + 1000)
    _item_attributes(span)
    return request


def post(gw: Gateway, path: str, request: Any, headers: dict[str, str]) -> None:
    req = urllib.request.Request(f"{gw.http_url}/v1/{path}", data=request.SerializeToString(),
                                 headers={"Content-Type": "application/x-protobuf", **headers})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200


EMAIL_SHA256 = "b4c9a289323b21a01c3e940f150eb9b8c542587f1abfd8f0e1cc1ffc5e475514"  # sha256sum


def test_traces_over_http(gateway: Gateway) -> None:
    service = f"res-http-{uuid.uuid4().hex[:6]}"
    post(gateway, "traces", traces_request(service), {"X-Tenant": "acme"})
    assert gateway.wait_count("otel_traces", 1, f"ServiceName = '{service}'") == 1
    row = gateway.rows("SELECT cluster_id, pod_name, ResourceAttributes, SpanAttributes "
                       f"FROM otel_traces WHERE ServiceName = '{service}'")[0]
    assert row["cluster_id"] == "e2e-cluster" and row["pod_name"] == f"{service}-pod"
    res = row["ResourceAttributes"]
    assert res["k8s.cluster.name"] == "e2e-cluster"
    assert res["client.address"] == "127.0.0.1" and res["tenant"] == "acme"
    assert row["SpanAttributes"] == {"env": "prod", "user.email": EMAIL_SHA256, "retries": "3"}


def test_traces_over_grpc_with_metadata(gateway: Gateway) -> None:
    service = f"res-grpc-{uuid.uuid4().hex[:6]}"
    with grpc.insecure_channel(gateway.grpc_endpoint) as channel:
        TraceServiceStub(channel).Export(traces_request(service), timeout=30,
                                         metadata=(("x-tenant", "grpc-tenant"),))
    assert gateway.wait_count("otel_traces", 1, f"ServiceName = '{service}'") == 1
    row = gateway.rows("SELECT cluster_id, ResourceAttributes FROM otel_traces "
                       f"WHERE ServiceName = '{service}'")[0]
    assert row["cluster_id"] == "e2e-cluster"
    assert row["ResourceAttributes"]["tenant"] == "grpc-tenant"
    assert row["ResourceAttributes"]["client.address"] == "127.0.0.1"


def test_logs_and_metrics(gateway: Gateway) -> None:
    service = f"res-lm-{uuid.uuid4().hex[:6]}"
    logs = ExportLogsServiceRequest()
    rl = logs.resource_logs.add()
    _resource(rl, service)
    record = rl.scope_logs.add().log_records.add(time_unix_nano=loadpayloads.BASE_NS,
                                                 severity_number=9, severity_text="INFO")
    record.body.string_value = "hello"
    _item_attributes(record)
    post(gateway, "logs", logs, {})

    metrics = ExportMetricsServiceRequest()
    rm = metrics.resource_metrics.add()
    _resource(rm, service)
    metric = rm.scope_metrics.add().metrics.add(name="queue.depth")
    point = metric.gauge.data_points.add(time_unix_nano=loadpayloads.BASE_NS, as_int=4)
    _item_attributes(point)
    post(gateway, "metrics", metrics, {"x-tenant": "m-tenant"})

    where = f"ServiceName = '{service}'"
    assert gateway.wait_count("otel_logs", 1, where) == 1
    log_row = gateway.rows(f"SELECT cluster_id, ResourceAttributes, LogAttributes FROM otel_logs "
                           f"WHERE {where}")[0]
    assert log_row["cluster_id"] == "e2e-cluster"
    assert "tenant" not in log_row["ResourceAttributes"]  # no header, no attribute
    assert log_row["LogAttributes"] == {"env": "prod", "user.email": EMAIL_SHA256,
                                        "retries": "3"}
    assert gateway.wait_count("otel_metrics_gauge", 1, where) == 1
    metric_row = gateway.rows("SELECT cluster_id, ResourceAttributes, Attributes "
                              f"FROM otel_metrics_gauge WHERE {where}")[0]
    assert metric_row["cluster_id"] == "e2e-cluster"
    assert metric_row["ResourceAttributes"]["tenant"] == "m-tenant"
    assert metric_row["Attributes"] == {"env": "prod", "user.email": EMAIL_SHA256,
                                        "retries": "3"}


# ------------------------------------------------------------------ cost (not a test)

def measure(rounds: int = 200) -> None:
    """CPU time per 1000-span request (loadtests/payloads.py, 10 resources):
    `python -m tests.processors.test_resource`."""
    import time

    from processors.attributes.config import AttributesConfig
    from processors.attributes.processor import AttributesProcessor

    raw = loadpayloads.traces(1000).SerializeToString()
    ctx = RequestContext(client_address="10.0.0.1")
    upsert = [{"key": "env", "value": "prod", "action": "upsert"}]
    cases = [
        ("resource: upsert k8s.cluster.name", ResourceProcessor, ResourceConfig,
         {"attributes": STAMP}),
        ("resource: upsert, value already there", ResourceProcessor, ResourceConfig,
         {"attributes": [{"key": "k8s.cluster.name", "value": "prod-eu-1", "action": "upsert"}]}),
        ("resource: upsert + from_context client.address", ResourceProcessor, ResourceConfig,
         {"attributes": [*STAMP, {"key": "client.address", "from_context": "client.address",
                                  "action": "upsert"}]}),
        ("attributes: upsert on every span", AttributesProcessor, AttributesConfig,
         {"actions": upsert}),
        ("attributes: upsert, include services (1 of 8)", AttributesProcessor, AttributesConfig,
         {"include": {"match_type": "strict", "services": ["cart"]}, "actions": upsert}),
        ("attributes: hash url.path + delete user_agent.original", AttributesProcessor,
         AttributesConfig, {"actions": [{"key": "url.path", "action": "hash"},
                                        {"key": "user_agent.original", "action": "delete"}]}),
    ]

    class Last:
        payload: Payload | None = None

        async def consume(self, payload: Payload) -> None:
            self.payload = payload

    loop = asyncio.new_event_loop()
    for name, proc_type, cfg_type, cfg in cases:
        sink = Last()
        proc = proc_type(ComponentID("x"), cfg_type.model_validate(cfg), Signal.TRACES, sink)
        spent = serialize = 0.0
        for _ in range(rounds):
            payload = Payload(Signal.TRACES, raw, None, 1000, ctx)
            payload.message  # noqa: B018 - parsed as the receiver does, outside the timing
            t0 = time.process_time()
            loop.run_until_complete(proc.consume(payload))
            t1 = time.process_time()
            assert sink.payload is not None
            sink.payload.raw  # noqa: B018 - what the batch processor will ask for
            serialize += time.process_time() - t1
            spent += t1 - t0
        spent, serialize = spent / rounds * 1e6, serialize / rounds * 1e6
        print(f"{name}: {spent:.0f} µs per request ({spent / 1000:.2f} µs per span); then "
              f"bytes for the batch: {serialize:.0f} µs")
    loop.close()


if __name__ == "__main__":
    measure()
