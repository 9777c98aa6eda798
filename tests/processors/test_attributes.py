"""The attributes processor and its action engine (shared with the resource processor), held to
the Collector's behaviour (contrib v0.129: internal/coreinternal/attraction, internal/filter)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from pydantic import ValidationError

from exporters.clickhouse.protoschema import ANY_VALUE_DEPTH
from gateway.component import ComponentID
from gateway.config.loader import load_config_text
from gateway.errors import ConfigError
from gateway.payload import Payload, RequestContext
from gateway.signals import Signal
from processors.attributes.actions import AttrProc, apply
from processors.attributes.convert import parse_float
from processors.attributes.config import AttributesConfig
from processors.attributes.processor import AttributesProcessor
from processors.attributes.values import as_string, format_f
from tests import oracle
from tests.payloads import EDGE_VALUES, KV, any_value

INT64_MIN = -(2**63)


# ------------------------------------------------------------------ helpers

def plain(v: AnyValue) -> tuple[str, Any]:
    """(kind, Python value) of an AnyValue, so a test states the type it expects."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return "array", [plain(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return "map", [(kv.key, plain(kv.value)) for kv in v.kvlist_value.values]
    if kind is None:
        return "empty", None
    return kind.removesuffix("_value"), getattr(v, kind)


def run(actions: list[dict[str, Any]], attrs: list[tuple[str, Any]],
        context: RequestContext | None = None) -> tuple[bool, list[tuple[str, tuple[str, Any]]]]:
    """Apply actions to an attribute list: (changed, [(key, (kind, value))])."""
    cfg = AttributesConfig.model_validate({"actions": actions})
    proc = AttrProc([a.spec() for a in cfg.actions])
    span = Span(attributes=[KeyValue(key=k, value=any_value(v)) for k, v in attrs])
    changed = apply(proc.bind(context or RequestContext()), span.attributes)
    return changed, [(kv.key, plain(kv.value)) for kv in span.attributes]


def invalid(config: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as err:
        AttributesConfig.model_validate(config)
    return str(err.value)


class Sink:
    def __init__(self) -> None:
        self.payloads: list[Payload] = []

    async def consume(self, payload: Payload) -> None:
        self.payloads.append(payload)


def process(config: dict[str, Any], signal: Signal, request: Any,
            context: RequestContext | None = None) -> tuple[Payload, Any]:
    """Run one request through an attributes processor; (payload handed on, its message)."""
    sink = Sink()
    proc = AttributesProcessor(ComponentID("attributes"), AttributesConfig.model_validate(config),
                               signal, sink)
    raw = request.SerializeToString()
    payload = Payload(signal, raw, None, 1, context or RequestContext())
    asyncio.run(proc.consume(payload))
    assert sink.payloads == [payload]
    return payload, signal.request_type.FromString(payload.raw)


# ------------------------------------------------------------------ insert / update / upsert

@pytest.mark.parametrize("value, expected", [
    ("prod", ("string", "prod")),
    (2245, ("int", 2245)),
    (0.5, ("double", 0.5)),
    (True, ("bool", True)),
    ("", ("string", "")),
    ([1, "a"], ("array", [("int", 1), ("string", "a")])),
    ({"zone": "a", "n": 2}, ("map", [("zone", ("string", "a")), ("n", ("int", 2))])),
])
def test_insert_keeps_the_yaml_type_of_value(value: Any, expected: tuple[str, Any]) -> None:
    changed, attrs = run([{"key": "new", "value": value, "action": "insert"}], [("a", "x")])
    assert changed and attrs == [("a", ("string", "x")), ("new", expected)]


def test_insert_does_not_touch_an_existing_key() -> None:
    assert run([{"key": "a", "value": 1, "action": "insert"}], [("a", "x")]) == (
        False, [("a", ("string", "x"))])


def test_update_changes_only_an_existing_key_and_its_type() -> None:
    actions = [{"key": "a", "value": 7, "action": "update"},
               {"key": "missing", "value": 1, "action": "update"}]
    assert run(actions, [("a", "x")]) == (True, [("a", ("int", 7))])
    assert run(actions, [("b", "x")]) == (False, [("b", ("string", "x"))])


def test_upsert_inserts_or_updates_and_reports_no_change_for_the_same_value() -> None:
    action = [{"key": "k8s.cluster.name", "value": "eu-1", "action": "UPSERT"}]  # any case
    assert run(action, [("a", 1)]) == (True, [("a", ("int", 1)),
                                              ("k8s.cluster.name", ("string", "eu-1"))])
    assert run(action, [("k8s.cluster.name", "old")]) == (
        True, [("k8s.cluster.name", ("string", "eu-1"))])
    assert run(action, [("k8s.cluster.name", "eu-1")]) == (
        False, [("k8s.cluster.name", ("string", "eu-1"))])


def test_from_attribute_copies_the_value_with_its_type() -> None:
    attrs = [("status", 200), ("copy", "old")]
    assert run([{"key": "copy", "from_attribute": "status", "action": "update"}], attrs)[1] == [
        ("status", ("int", 200)), ("copy", ("int", 200))]
    assert run([{"key": "new", "from_attribute": "status", "action": "insert"}], attrs)[1] == [
        *[(k, plain(any_value(v))) for k, v in attrs], ("new", ("int", 200))]
    # insert where the key exists, or any setter whose source is missing: nothing happens
    assert run([{"key": "copy", "from_attribute": "status", "action": "insert"}], attrs)[0] is False
    assert run([{"key": "x", "from_attribute": "absent", "action": "upsert"}], attrs)[0] is False


def test_from_context_client_address_and_metadata() -> None:
    ctx = RequestContext(client_address="::ffff:10.1.2.3",
                         headers=(("x-tenant", "acme"), ("x-team", "a"), ("x-team", "b")))
    actions = [{"key": "client", "from_context": "client.address", "action": "insert"},
               {"key": "tenant", "from_context": "metadata.X-Tenant", "action": "insert"},
               {"key": "team", "from_context": "metadata.x-team", "action": "insert"},
               {"key": "bare", "from_context": "x-tenant", "action": "insert"},
               {"key": "absent", "from_context": "metadata.x-none", "action": "insert"}]
    changed, attrs = run(actions, [], ctx)
    # Go's net.IP prints an IPv4-mapped address as IPv4; header names are case-insensitive;
    # several values are joined with ';'; a key without prefix is a metadata key; a missing
    # one does nothing.
    assert changed and attrs == [("client", ("string", "10.1.2.3")),
                                 ("tenant", ("string", "acme")), ("team", ("string", "a;b")),
                                 ("bare", ("string", "acme"))]


def test_from_context_client_address_is_set_even_when_unknown() -> None:
    # clientutil.Address gives "" without a peer (e.g. after the batch processor), and the
    # Collector sets that "" rather than skipping.
    assert run([{"key": "c", "from_context": "client.address", "action": "upsert"}], [])[1] == [
        ("c", ("string", ""))]


# ------------------------------------------------------------------ delete / hash

def test_delete_by_key_and_by_pattern() -> None:
    attrs = [("keep", 1), ("password", "s"), ("db.password", "s"), ("token", "t")]
    assert run([{"key": "password", "action": "delete"}], attrs)[1] == [
        ("keep", ("int", 1)), ("db.password", ("string", "s")), ("token", ("string", "t"))]
    # the pattern is searched anywhere in the key (Go's MatchString), not anchored
    assert run([{"pattern": "pass|tok", "action": "delete"}], attrs)[1] == [("keep", ("int", 1))]
    assert run([{"key": "token", "pattern": "^db\\.", "action": "delete"}], attrs)[1] == [
        ("keep", ("int", 1)), ("password", ("string", "s"))]
    assert run([{"key": "absent", "action": "delete"}], attrs)[0] is False


SHA256 = {  # computed with sha256sum over the bytes the Collector hashes
    "foo": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    True: "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a",
    False: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    1234: "1af2444c165b8d6156651aa4f8dc49e6302f690473e80304fdfdb73baa9140c7",  # int64 LE
    1.5: "e163f8cb0f7067a7fc78ca859a77f849aea3214f38fb75b884e4a16be725c905",  # float64 LE
}


@pytest.mark.parametrize("value", list(SHA256))
def test_hash_is_sha256_hex_of_the_collector_bytes(value: Any) -> None:
    assert run([{"key": "v", "action": "hash"}], [("v", value)])[1] == [
        ("v", ("string", SHA256[value]))]


@pytest.mark.parametrize("value", [b"\x01", [1], KV([("a", 1)]), None, ""])
def test_hash_of_other_kinds_and_of_empty_is_the_empty_string(value: Any) -> None:
    assert run([{"key": "v", "action": "hash"}], [("v", value)])[1] == [("v", ("string", ""))]


def test_hash_by_pattern_and_the_key_matched_twice() -> None:
    attrs = [("user.email", "foo"), ("user.id", 1234), ("other", "foo")]
    assert run([{"pattern": "^user\\.", "action": "hash"}], attrs)[1] == [
        ("user.email", ("string", SHA256["foo"])), ("user.id", ("string", SHA256[1234])),
        ("other", ("string", "foo"))]
    # upstream hashes `key`, then every key the pattern matches: a key that is both is hashed
    # twice
    twice = run([{"key": "other", "pattern": "^other$", "action": "hash"}], attrs)[1][2][1][1]
    assert twice != SHA256["foo"] and len(twice) == 64
    assert twice == run([{"key": "other", "action": "hash"}],
                        [("other", SHA256["foo"])])[1][0][1][1]


# ------------------------------------------------------------------ extract

def test_extract_named_groups_into_string_attributes() -> None:
    action = [{"key": "http.url", "action": "extract",
               "pattern": r"^/api/(?P<version>v\d+)/(?<resource>\w+)(?:/(?P<id>\d+))?"}]
    changed, attrs = run(action, [("http.url", "/api/v2/orders"), ("version", 1)])
    # Go 1.22's (?<name>) is accepted too; a group that did not take part gives "";
    # an existing attribute is overwritten (and becomes a string); the source stays.
    assert changed and attrs == [("http.url", ("string", "/api/v2/orders")),
                                 ("version", ("string", "v2")),
                                 ("resource", ("string", "orders")), ("id", ("string", ""))]


def test_extract_does_nothing_without_a_match_or_on_a_non_string() -> None:
    action = [{"key": "u", "action": "extract", "pattern": r"^(?P<a>\d+)$"}]
    assert run(action, [("u", "12x")]) == (False, [("u", ("string", "12x"))])
    assert run(action, [("u", 12)]) == (False, [("u", ("int", 12))])
    assert run(action, [("u", "12\n")])[0] is False  # Go's $ is the end of the text


def test_extract_uses_go_group_names() -> None:
    # Go takes names Python's re does not: one starting with a digit, one used twice (the
    # later group writes last, even when it did not take part).
    action = [{"key": "u", "action": "extract", "pattern": r"(?P<1st>\d+)-(?P<x>a)|(?P<x>b)"}]
    assert run(action, [("u", "7-a")])[1] == [("u", ("string", "7-a")), ("1st", ("string", "7")),
                                              ("x", ("string", ""))]
    assert run(action, [("u", "b")])[1] == [("u", ("string", "b")), ("1st", ("string", "")),
                                            ("x", ("string", "b"))]


# ------------------------------------------------------------------ convert

@pytest.mark.parametrize("value, to, expected", [
    ("123", "int", ("int", 123)), ("-5", "int", ("int", -5)), ("+7", "int", ("int", 7)),
    ("12.5", "int", ("string", "12.5")), ("1_000", "int", ("string", "1_000")),
    (" 1", "int", ("string", " 1")), ("9223372036854775808", "int",
                                      ("string", "9223372036854775808")),
    (3.9, "int", ("int", 3)), (-3.9, "int", ("int", -3)), (float("nan"), "int",
                                                           ("int", INT64_MIN)),
    (1e300, "int", ("int", INT64_MIN)), (True, "int", ("int", 1)), (False, "int", ("int", 0)),
    (b"x", "int", ("bytes", b"x")), (7, "int", ("int", 7)),
    ("1.5e3", "double", ("double", 1500.0)), ("0x1p-2", "double", ("double", 0.25)),
    ("1_000.5", "double", ("double", 1000.5)), ("-Inf", "double", ("double", -math.inf)),
    ("1e400", "double", ("string", "1e400")), ("1.5 ", "double", ("string", "1.5 ")),
    ("abc", "double", ("string", "abc")), (3, "double", ("double", 3.0)),
    (True, "double", ("double", 1.0)), ([1], "double", ("array", [("int", 1)])),
    (1e21, "string", ("string", "1e+21")), (1.0, "string", ("string", "1")),
    (0.1, "string", ("string", "0.1")), (1e-7, "string", ("string", "1e-7")),
    (-0.0, "string", ("string", "-0")), (42, "string", ("string", "42")),
    (True, "string", ("string", "true")), (b"hi", "string", ("string", "aGk=")),
    ({"b": 1, "a": [1.5, None]}, "string", ("string", '{"a":[1.5,null],"b":1}')),
    (None, "string", ("string", "")), ("s", "string", ("string", "s")),
])
def test_convert(value: Any, to: str, expected: tuple[str, Any]) -> None:
    changed, attrs = run([{"key": "v", "action": "convert", "converted_type": to}], [("v", value)])
    kind, got = attrs[0][1]
    if isinstance(got, float) and math.isnan(got):
        assert kind == expected[0] and math.isnan(expected[1])
    else:
        assert (kind, got) == expected
    assert changed == (expected != plain(any_value(value)))


def _depth(value: Any) -> int:
    if isinstance(value, KV):
        return 1 + max((_depth(v) for _, v in value), default=0)
    if isinstance(value, (list, dict)):
        items = value.values() if isinstance(value, dict) else value
        return 1 + max((_depth(v) for v in items), default=0)
    return 0


def test_convert_to_string_is_pdata_asstring_for_every_edge_value() -> None:
    """tests/oracle.as_string is the reference the exporter's text columns are checked with
    (except for values nested deeper than the exporter unrolls, which it renders its own way)."""
    checked = 0
    for value in EDGE_VALUES:
        if _depth(value) < ANY_VALUE_DEPTH:
            v = any_value(value)
            assert as_string(v) == oracle.as_string(v), value
            checked += 1
    assert checked > 50


def test_parse_float_follows_strconv() -> None:
    assert parse_float("Infinity") == math.inf and math.isnan(parse_float("NaN") or 0)
    for bad in ("+nan", "infin", "1__0", "_1", "1_", "0x1", "1e", "", ".", "٣"):
        assert parse_float(bad) is None, bad
    assert parse_float(".5") == 0.5 and parse_float("5.") == 5.0


def test_format_f_is_strconv_f_minus_one() -> None:
    assert [format_f(x) for x in (1e21, 1e-7, 100.0, -0.0, 0.5, math.inf)] == [
        "1000000000000000000000", "0.0000001", "100", "-0", "0.5", "+Inf"]


def test_actions_run_in_order() -> None:
    actions = [{"key": "email", "from_attribute": "user", "action": "insert"},
               {"key": "email", "action": "hash"}, {"key": "user", "action": "delete"}]
    assert run(actions, [("user", "foo")])[1] == [("email", ("string", SHA256["foo"]))]


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize("action, message", [
    ({"value": 1, "action": "insert"}, 'missing required field "key"'),
    ({"action": "delete"}, 'at least one of "key" and "pattern" have to be used'),
    ({"key": "k", "action": "hash", "value": 1}, 'action "hash" does not use "value" or '
                                                 '"from_attribute"'),
    ({"key": "k", "action": "upsert"}, 'either field "value", "from_attribute" or '
                                       '"from_context"'),
    ({"key": "k", "action": "insert", "value": 1, "from_attribute": "x"},
     "multiple value sources"),
    ({"key": "k", "action": "update", "value": 1, "pattern": "x"},
     'action "update" does not use the "pattern" field'),
    ({"key": "k", "action": "upsert", "value": 1, "converted_type": "int"},
     'action "upsert" does not use the "converted_type" field'),
    ({"key": "k", "action": "delete", "pattern": "("}, 'field "pattern" has invalid pattern'),
    ({"key": "k", "action": "extract"}, 'missing required field "pattern" for action "extract"'),
    ({"key": "k", "action": "extract", "pattern": ".*$"}, "no named matcher groups"),
    ({"key": "k", "action": "extract", "pattern": "(a)"}, "at least one unnamed"),
    ({"key": "k", "action": "extract", "pattern": "(?P<a>x)(b)"}, "at least one unnamed"),
    ({"key": "k", "action": "extract", "pattern": "(?P<a>x)", "value": 1},
     'action "extract" does not use a value source'),
    ({"key": "k", "action": "extract", "pattern": r"(?P<a>x)\1"}, "backreferences"),
    ({"key": "k", "action": "convert"}, 'missing required field "converted_type"'),
    ({"key": "k", "action": "convert", "converted_type": "bool"},
     'invalid value "bool" in field "converted_type"'),
    ({"key": "k", "action": "convert", "converted_type": "int", "pattern": "x"},
     'action "convert" does not use value sources or "pattern"'),
    ({"key": "k", "action": "rename"}, "unsupported action 'rename'"),
    ({"key": "k"}, "unsupported action ''"),
    ({"key": "k", "action": "upsert", "from_context": "auth.subject"},
     "server authenticator, which otelgw does not have"),
    ({"key": "k", "action": "upsert", "default_value": "x", "value": 1}, "Extra inputs"),
])
def test_action_validation(action: dict[str, Any], message: str) -> None:
    assert message in invalid({"actions": [action]})


def test_config_needs_actions_and_reports_the_path() -> None:
    assert 'missing required field "actions"' in invalid({})
    yaml_text = """
receivers: {otlp: {protocols: {http: {}}}}
processors:
  attributes/bad:
    actions: [{value: 1, action: insert}, {key: k, action: convert, converted_type: x}]
exporters: {clickhouse: {}}
service: {pipelines: {traces: {receivers: [otlp], processors: [attributes/bad],
                              exporters: [clickhouse]}}}
"""
    with pytest.raises(ConfigError) as err:
        load_config_text(yaml_text)
    problems = "\n".join(err.value.problems)
    assert 'processors::attributes/bad::actions::0: missing required field "key"' in problems
    assert 'processors::attributes/bad::actions::1: invalid value "x"' in problems


@pytest.mark.parametrize("props, message", [
    ({"services": ["a"]}, "unrecognized match_type: ''"),
    ({"match_type": "glob", "services": ["a"]}, "unrecognized match_type: 'glob'"),
    ({"match_type": "strict", "attributes": [{"value": 1}]}, "can't have empty key"),
    ({"match_type": "regexp", "attributes": [{"key": "k", "value": 200}]},
     'match_type=regexp for "k" only supports Str, but found Int'),
    ({"match_type": "regexp", "span_names": ["(?=x)"]}, "invalid or unsupported Perl syntax"),
])
def test_match_properties_validation(props: dict[str, Any], message: str) -> None:
    assert message in invalid({"include": props, "actions": [
        {"key": "k", "value": 1, "action": "insert"}]})


@pytest.mark.parametrize("signal, props, message", [
    (Signal.TRACES, {"match_type": "strict", "log_bodies": ["x"]},
     "log_bodies should not be specified for trace spans"),
    (Signal.TRACES, {"match_type": "strict", "metric_names": ["x"]},
     "metric_names should not be specified for trace spans"),
    (Signal.TRACES, {"match_type": "strict"}, 'at least one of "services"'),
    (Signal.TRACES, {"match_type": "strict", "span_kinds": ["server"]},
     "must match one of the standard span kinds"),
    (Signal.LOGS, {"match_type": "strict", "services": ["x"]},
     "services, span_names, span_kinds and metric_names are not valid for log records"),
    (Signal.LOGS, {"match_type": "strict"}, 'at least one of "attributes"'),
    (Signal.METRICS, {"match_type": "strict", "attributes": [{"key": "k"}]},
     "are not valid for metrics"),
    (Signal.METRICS, {"match_type": "strict"}, 'at least one of "metric_names" or "resources"'),
])
def test_properties_that_do_not_apply_to_the_signal(signal: Signal, props: dict[str, Any],
                                                    message: str) -> None:
    cfg = AttributesConfig.model_validate({"exclude": props, "actions": [
        {"key": "k", "value": 1, "action": "insert"}]})
    with pytest.raises(ConfigError) as err:
        AttributesProcessor(ComponentID("attributes", "x"), cfg, signal, Sink())
    assert message in str(err.value) and "processors::attributes/x::exclude" in str(err.value)


# ------------------------------------------------------------------ include / exclude: spans

ACTION = [{"key": "matched", "value": True, "action": "insert"}]


def traces() -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    for service, scope, version in (("cart", "lib.a", "1.0"), ("shop", "lib.b", "2.0")):
        rs = req.resource_spans.add()
        rs.resource.attributes.extend([KeyValue(key="service.name", value=any_value(service)),
                                       KeyValue(key="env", value=any_value("prod"))])
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = scope, version
        for name, kind, status in (("GET /cart", 2, 200), ("SELECT", 3, 500), ("noattrs", 1, None)):
            span = ss.spans.add(name=f"{service} {name}", kind=kind)
            if status is not None:
                span.attributes.extend([KeyValue(key="http.status_code",
                                                 value=any_value(status))])
    return req


def matched_spans(config: dict[str, Any]) -> list[str]:
    _, out = process({**config, "actions": ACTION}, Signal.TRACES, traces())
    return [s.name for rs in out.resource_spans for ss in rs.scope_spans for s in ss.spans
            if any(kv.key == "matched" for kv in s.attributes)]


ALL_SPANS = ["cart GET /cart", "cart SELECT", "cart noattrs",
             "shop GET /cart", "shop SELECT", "shop noattrs"]


@pytest.mark.parametrize("config, expected", [
    ({}, ALL_SPANS),
    ({"include": {"match_type": "strict", "services": ["cart"]}}, ALL_SPANS[:3]),
    ({"include": {"match_type": "regexp", "services": ["ar"]}}, ALL_SPANS[:3]),  # unanchored
    ({"include": {"match_type": "regexp", "span_names": ["GET"]}},
     ["cart GET /cart", "shop GET /cart"]),
    ({"include": {"match_type": "strict", "span_kinds": ["SPAN_KIND_CLIENT"]}},
     ["cart SELECT", "shop SELECT"]),
    # strict attribute values compare with their type: the int 500 matches, "500" would not
    ({"include": {"match_type": "strict", "attributes": [{"key": "http.status_code",
                                                           "value": 500}]}},
     ["cart SELECT", "shop SELECT"]),
    ({"include": {"match_type": "strict", "attributes": [{"key": "http.status_code",
                                                           "value": "500"}]}}, []),
    ({"include": {"match_type": "regexp", "attributes": [{"key": "http.status_code",
                                                           "value": "^5"}]}},
     ["cart SELECT", "shop SELECT"]),
    ({"include": {"match_type": "strict", "attributes": [{"key": "http.status_code"}]}},
     ["cart GET /cart", "cart SELECT", "shop GET /cart", "shop SELECT"]),
    ({"include": {"match_type": "strict", "resources": [{"key": "service.name",
                                                          "value": "shop"}]}}, ALL_SPANS[3:]),
    ({"include": {"match_type": "strict", "libraries": [{"name": "lib.b"}]}}, ALL_SPANS[3:]),
    ({"include": {"match_type": "strict", "libraries": [{"name": "lib.b", "version": "1.0"}]}},
     []),
    ({"exclude": {"match_type": "strict", "services": ["cart"]}}, ALL_SPANS[3:]),
    ({"exclude": {"match_type": "strict", "span_names": ["shop SELECT"]}},
     [s for s in ALL_SPANS if s != "shop SELECT"]),
    # include first, then exclude
    ({"include": {"match_type": "strict", "services": ["shop"]},
      "exclude": {"match_type": "regexp", "span_names": ["noattrs$"]}},
     ["shop GET /cart", "shop SELECT"]),
    # every property given must match
    ({"include": {"match_type": "strict", "services": ["cart"],
                  "span_kinds": ["SPAN_KIND_SERVER"]}}, ["cart GET /cart"]),
])
def test_span_include_exclude(config: dict[str, Any], expected: list[str]) -> None:
    assert matched_spans(config) == expected


def test_regexp_cache_gives_the_same_answers() -> None:
    config = {"include": {"match_type": "regexp", "span_names": ["SELECT$"],
                          "regexp": {"cacheenabled": True, "cachemaxnumentries": 1}}}
    assert matched_spans(config) == ["cart SELECT", "shop SELECT"]


# ------------------------------------------------------------------ include / exclude: logs

def logs() -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(KeyValue(key="service.name", value=any_value("api")))
    sl = rl.scope_logs.add()
    for body, sev, text in (("GET /health ok", 9, "INFO"), ("disk full", 17, "ERROR"),
                            (None, 0, ""), (12, 13, "WARN")):
        record = sl.log_records.add(severity_number=sev, severity_text=text)
        if body is not None:
            record.body.CopyFrom(any_value(body))
        record.attributes.append(KeyValue(key="n", value=any_value(sev)))
    return req


def matched_logs(config: dict[str, Any]) -> list[int]:
    _, out = process({**config, "actions": ACTION}, Signal.LOGS, logs())
    records = out.resource_logs[0].scope_logs[0].log_records
    return [r.severity_number for r in records if any(kv.key == "matched" for kv in r.attributes)]


@pytest.mark.parametrize("config, expected", [
    ({}, [9, 17, 0, 13]),
    ({"include": {"match_type": "regexp", "log_bodies": ["^GET"]}}, [9]),
    ({"include": {"match_type": "strict", "log_bodies": ["12"]}}, [13]),  # body as text
    ({"include": {"match_type": "strict", "log_severity_texts": ["ERROR", "WARN"]}}, [17, 13]),
    ({"include": {"log_severity_number": {"min": 13}}}, [17, 13]),
    ({"include": {"log_severity_number": {"min": 13, "match_undefined": True}}}, [17, 0, 13]),
    ({"exclude": {"match_type": "strict", "attributes": [{"key": "n", "value": 9}]}},
     [17, 0, 13]),
    ({"include": {"match_type": "strict", "resources": [{"key": "service.name",
                                                          "value": "web"}]}}, []),
])
def test_log_include_exclude(config: dict[str, Any], expected: list[int]) -> None:
    assert matched_logs(config) == expected


# ------------------------------------------------------------------ metrics

def metrics() -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    sm = req.resource_metrics.add().scope_metrics.add()
    for kind in ("gauge", "sum", "histogram", "exponential_histogram", "summary"):
        metric = sm.metrics.add(name=f"m.{kind}")
        for i in range(2):
            point = getattr(metric, kind).data_points.add()
            point.attributes.append(KeyValue(key="i", value=any_value(i)))
    return req


def points_with(out: ExportMetricsServiceRequest, key: str) -> dict[str, int]:
    found = {}
    for metric in out.resource_metrics[0].scope_metrics[0].metrics:
        data = getattr(metric, metric.WhichOneof("data"))
        found[metric.name] = sum(any(kv.key == key for kv in p.attributes)
                                 for p in data.data_points)
    return found


def test_metrics_every_point_kind_and_metric_names() -> None:
    _, out = process({"actions": ACTION}, Signal.METRICS, metrics())
    assert set(points_with(out, "matched").values()) == {2}
    _, out = process({"include": {"match_type": "regexp", "metric_names": ["histogram$"]},
                      "actions": ACTION}, Signal.METRICS, metrics())
    assert points_with(out, "matched") == {"m.gauge": 0, "m.sum": 0, "m.histogram": 2,
                                           "m.exponential_histogram": 2, "m.summary": 0}


def test_metrics_resources_filter_has_no_effect_as_upstream() -> None:
    # contrib v0.129's filtermetric builds only a name matcher: `resources` is ignored.
    _, out = process({"include": {"match_type": "strict", "resources": [
        {"key": "service.name", "value": "nowhere"}]}, "actions": ACTION}, Signal.METRICS,
        metrics())
    assert set(points_with(out, "matched").values()) == {2}


# ------------------------------------------------------------------ the request's bytes

def test_unchanged_request_keeps_its_received_bytes() -> None:
    payload, _ = process({"actions": [{"key": "absent", "value": 1, "action": "update"}]},
                         Signal.TRACES, traces())
    assert payload._raw is not None  # handed on as received, not serialized again
    assert payload.raw == traces().SerializeToString()


def test_changed_request_is_serialized_again() -> None:
    payload, out = process({"actions": [{"key": "env", "from_context": "metadata.x-env",
                                         "action": "upsert"}]}, Signal.TRACES, traces(),
                           RequestContext(headers=(("x-env", "stage"),)))
    assert payload._raw is None or payload.raw != traces().SerializeToString()
    assert {as_string(kv.value) for rs in out.resource_spans for ss in rs.scope_spans
            for s in ss.spans for kv in s.attributes if kv.key == "env"} == {"stage"}
