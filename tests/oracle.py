"""Reference rows: what the contrib ClickHouse exporter v0.129.0 writes for an OTLP request.

Plain Python, one function per rule, written from /tmp/research/contrib_ddl.md section 4 (pdata
`AsString`, Go `float64AsString`, `json.Marshal`, the per-signal column tables), so it can be read
against that text line by line. It shares no code with the SQL in exporters/clickhouse/; the tests
compare the two field by field.

Rows are dicts keyed by column name in table order (`SELECT *` order, Nested columns as separate
`Events.Name`-style keys), with values in the shape ClickHouse's JSONEachRow gives them under
`JSON_SETTINGS` (the one place that shape is fixed; `parse_row` reads it):
    String, Map keys/values      str; a Map is a dict, keys in stored (sorted) order
    DateTime64(9) / DateTime     'YYYY-MM-DD HH:MM:SS.fffffffff' / 'YYYY-MM-DD HH:MM:SS' in UTC
    integer types (UInt64 too)   int
    Float64                      float; NaN / ±Inf as the strings '[-]nan' / 'inf' / '-inf'
    Bool                         bool

One documented normalization of otelgw is reproduced here (see exporters/clickhouse/anyvalue.py):
an array/kvlist nested deeper than protoschema.ANY_VALUE_DEPTH renders as a JSON string holding the
base64 of its protobuf bytes instead of as JSON.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

from exporters.clickhouse.protoschema import ANY_VALUE_DEPTH

Row = dict[str, Any]

# Output settings the tests read rows with: 64-bit integers as numbers, non-finite floats as
# distinguishable strings (the default writes all three as null), DateTimes in UTC.
JSON_SETTINGS = ("output_format_json_quote_64bit_integers = 0, "
                 "output_format_json_quote_denormals = 1, session_timezone = 'UTC'")


def parse_row(line: str | bytes) -> Row:
    # ClickHouse writes Float64 -0 as `-0`, which json would read as the int 0.
    return dict(json.loads(line, parse_int=lambda s: -0.0 if s == "-0" else int(s)))


# ---------------------------------------------------------- scalars as ClickHouse prints them

def ts(nanos: int) -> str:
    """DateTime64(9) text of pcommon.Timestamp(nanos).AsTime() (UTC)."""
    secs, frac = divmod(nanos, 10**9)
    return f"{dt.datetime.fromtimestamp(secs, dt.UTC):%Y-%m-%d %H:%M:%S}.{frac:09d}"


def ts_seconds(nanos: int) -> str:
    """DateTime text of toDateTime(DateTime64): truncated to the second."""
    return f"{dt.datetime.fromtimestamp(nanos // 10**9, dt.UTC):%Y-%m-%d %H:%M:%S}"


def f64(x: float) -> float | str:
    if math.isnan(x):  # the stored NaN keeps its sign bit, and ClickHouse prints it
        return "-nan" if math.copysign(1, x) < 0 else "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def hex_or_empty(b: bytes) -> str:
    """traceutil.TraceIDToHexOrEmptyString / SpanIDToHexOrEmptyString: all-zero (or absent) → ''."""
    return b.hex() if any(b) else ""


# ---------------------------------------------------------- Go formatting

def go_float(f: float) -> str:
    """Go's float64AsString (pdata) == encoding/json's float encoding, plus the NaN/Inf text."""
    if math.isnan(f) or math.isinf(f):
        g = "NaN" if math.isnan(f) else ("+Inf" if f > 0 else "-Inf")
        return f"json: unsupported value: {g}"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    # repr gives the shortest round-trip digits, as strconv's precision -1 does.
    sign, digits, exp = Decimal(repr(abs(f))).normalize().as_tuple()
    ds = "".join(map(str, digits))
    point = len(ds) + int(exp)  # the value is 0.<ds> × 10^point
    out = "-" if f < 0 else ""
    if abs(f) < 1e-6 or abs(f) >= 1e21:
        e = point - 1
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        # strconv writes at least two exponent digits; Go then turns e-07 into e-7 (not e+21).
        return f"{out}{mant}e{'-' if e < 0 else '+'}{abs(e):02d}".replace("e-0", "e-")
    if point <= 0:
        return f"{out}0.{'0' * -point}{ds}"
    if point >= len(ds):
        return f"{out}{ds}{'0' * (point - len(ds))}"
    return f"{out}{ds[:point]}.{ds[point:]}"


_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_json_string(s: str) -> str:
    """encoding/json string with HTML escaping (json.Marshal's default); Go ≥ 1.22 writes \\b \\f.

    Protobuf strings are valid UTF-8 here (the receiver rejects others), so no \\ufffd case."""
    out = []
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ord(ch) < 0x20 or ch in "<>&":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


class Unsupported(Exception):
    """json.Marshal fails (NaN/±Inf); AsString then returns ''."""


class RawJSON(str):
    """An already-encoded JSON value (the deep-nesting normalization)."""


def go_json(v: Any) -> str:
    """json.Marshal of a pcommon AsRaw() value: nil, bool, int64, float64, string, []any,
    map[string]any (keys sorted bytewise)."""
    if isinstance(v, RawJSON):
        return str(v)
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise Unsupported(v)
        return go_float(v)
    if isinstance(v, str):
        return go_json_string(v)
    if isinstance(v, list):
        return "[" + ",".join(go_json(x) for x in v) + "]"
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: k.encode())
        return "{" + ",".join(go_json_string(k) + ":" + go_json(v[k]) for k in keys) + "}"
    raise TypeError(type(v))


# ---------------------------------------------------------- AnyValue

def as_raw(v: Any, level: int) -> Any:
    """pcommon Value.AsRaw() of an AnyValue `level` containers below the attribute value."""
    kind = v.WhichOneof("value")
    if kind in ("array_value", "kvlist_value") and level + 1 >= ANY_VALUE_DEPTH:
        # otelgw normalization: too deep to unroll; base64 of the inner message's bytes.
        return RawJSON('"' + base64.b64encode(getattr(v, kind).SerializeToString()).decode() + '"')
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bytes_value":
        # ByteSlice.AsRaw() of an empty slice is nil → null.
        return base64.b64encode(v.bytes_value).decode() if v.bytes_value else None
    if kind == "array_value":
        return [as_raw(x, level + 1) for x in v.array_value.values]
    if kind == "kvlist_value":
        out: dict[str, Any] = {}
        for kv in v.kvlist_value.values:  # a repeated key: the last one wins (Go map)
            out[kv.key] = as_raw(kv.value, level + 1)
        return out
    return None  # empty, and kinds pdata v1.35 does not know (string_value_strindex)


def as_string(v: Any) -> str:
    """pcommon Value.AsString()."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return str(v.string_value)
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        return go_float(v.double_value)
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if kind in ("array_value", "kvlist_value"):
        try:
            return go_json(as_raw(v, 0))
        except Unsupported:
            return ""
    return ""


def attributes(kvs: Any) -> dict[str, str]:
    """AttributesToMap: AsString values, keys sorted (clickhouse-go's ordered map)."""
    return {kv.key: as_string(kv.value) for kv in sorted(kvs, key=lambda kv: kv.key.encode())}


def service_name(resource: Any) -> str:
    for kv in resource.attributes:
        if kv.key == "service.name":
            return as_string(kv.value)
    return ""


# ---------------------------------------------------------- traces

SPAN_KINDS = {0: "Unspecified", 1: "Internal", 2: "Server", 3: "Client", 4: "Producer",
              5: "Consumer"}
STATUS_CODES = {0: "Unset", 1: "Ok", 2: "Error"}


def trace_rows(req: Any) -> list[Row]:
    rows = []
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                rows.append({
                    "Timestamp": ts(s.start_time_unix_nano),
                    "TraceId": hex_or_empty(s.trace_id),
                    "SpanId": hex_or_empty(s.span_id),
                    "ParentSpanId": hex_or_empty(s.parent_span_id),
                    "TraceState": s.trace_state,
                    "SpanName": s.name,
                    "SpanKind": SPAN_KINDS.get(s.kind, ""),
                    "ServiceName": service_name(rs.resource),
                    "ResourceAttributes": attributes(rs.resource.attributes),
                    "ScopeName": ss.scope.name,
                    "ScopeVersion": ss.scope.version,
                    "SpanAttributes": attributes(s.attributes),
                    # uint64 arithmetic: an end before the start wraps around
                    "Duration": (s.end_time_unix_nano - s.start_time_unix_nano) % 2**64,
                    "StatusCode": STATUS_CODES.get(s.status.code, ""),
                    "StatusMessage": s.status.message,
                    "Events.Timestamp": [ts(e.time_unix_nano) for e in s.events],
                    "Events.Name": [e.name for e in s.events],
                    "Events.Attributes": [attributes(e.attributes) for e in s.events],
                    "Links.TraceId": [hex_or_empty(lk.trace_id) for lk in s.links],
                    "Links.SpanId": [hex_or_empty(lk.span_id) for lk in s.links],
                    "Links.TraceState": [lk.trace_state for lk in s.links],
                    "Links.Attributes": [attributes(lk.attributes) for lk in s.links],
                })
    return rows


# ---------------------------------------------------------- logs

def log_rows(req: Any) -> list[Row]:
    rows = []
    for rl in req.resource_logs:
        for sl in rl.scope_logs:
            for r in sl.log_records:
                t = r.time_unix_nano or r.observed_time_unix_nano
                rows.append({
                    "Timestamp": ts(t),
                    "TimestampTime": ts_seconds(t),
                    "TraceId": hex_or_empty(r.trace_id),
                    "SpanId": hex_or_empty(r.span_id),
                    "TraceFlags": r.flags & 0xFF,                 # uint8(r.Flags())
                    "SeverityText": r.severity_text,
                    "SeverityNumber": r.severity_number & 0xFF,   # uint8(r.SeverityNumber())
                    "ServiceName": service_name(rl.resource),
                    # Body().Str(): only a string body is kept, anything else is ''
                    "Body": r.body.string_value if r.body.WhichOneof("value") == "string_value"
                    else "",
                    "ResourceSchemaUrl": rl.schema_url,
                    "ResourceAttributes": attributes(rl.resource.attributes),
                    "ScopeSchemaUrl": sl.schema_url,
                    "ScopeName": sl.scope.name,
                    "ScopeVersion": sl.scope.version,
                    "ScopeAttributes": attributes(sl.scope.attributes),
                    "LogAttributes": attributes(r.attributes),
                })
    return rows


# ---------------------------------------------------------- metrics

METRIC_TABLES = {"gauge": "otel_metrics_gauge", "sum": "otel_metrics_sum",
                 "histogram": "otel_metrics_histogram",
                 "exponential_histogram": "otel_metrics_exponential_histogram",
                 "summary": "otel_metrics_summary"}


def _number(p: Any) -> float | str:
    """getValue: double, float64(int), or 0 when unset."""
    kind = p.WhichOneof("value")
    return f64(p.as_double if kind == "as_double" else float(p.as_int) if kind == "as_int"
               else 0.0)


def _exemplars(dp: Any) -> Row:
    xs = dp.exemplars
    return {
        "Exemplars.FilteredAttributes": [attributes(x.filtered_attributes) for x in xs],
        "Exemplars.TimeUnix": [ts(x.time_unix_nano) for x in xs],
        "Exemplars.Value": [_number(x) for x in xs],
        # plain hex.EncodeToString of the fixed-size id: an all-zero or absent id is zeros
        "Exemplars.SpanId": [(x.span_id or bytes(8)).hex() for x in xs],
        "Exemplars.TraceId": [(x.trace_id or bytes(16)).hex() for x in xs],
    }


def _metric_body(kind: str, data: Any, dp: Any) -> Row:
    if kind == "gauge":
        return {"Value": _number(dp), "Flags": dp.flags, **_exemplars(dp)}
    if kind == "sum":
        return {"Value": _number(dp), "Flags": dp.flags, **_exemplars(dp),
                "AggregationTemporality": data.aggregation_temporality,
                "IsMonotonic": data.is_monotonic}
    # Sum/Min/Max: HasSum/HasMin/HasMax are not checked, so unset is 0.
    if kind == "histogram":
        return {"Count": dp.count, "Sum": f64(dp.sum), "BucketCounts": list(dp.bucket_counts),
                "ExplicitBounds": [f64(b) for b in dp.explicit_bounds], **_exemplars(dp),
                "Flags": dp.flags, "Min": f64(dp.min), "Max": f64(dp.max),
                "AggregationTemporality": data.aggregation_temporality}
    if kind == "exponential_histogram":
        return {"Count": dp.count, "Sum": f64(dp.sum), "Scale": dp.scale,
                "ZeroCount": dp.zero_count, "PositiveOffset": dp.positive.offset,
                "PositiveBucketCounts": list(dp.positive.bucket_counts),
                "NegativeOffset": dp.negative.offset,
                "NegativeBucketCounts": list(dp.negative.bucket_counts), **_exemplars(dp),
                "Flags": dp.flags, "Min": f64(dp.min), "Max": f64(dp.max),
                "AggregationTemporality": data.aggregation_temporality}
    assert kind == "summary"
    return {"Count": dp.count, "Sum": f64(dp.sum),
            "ValueAtQuantiles.Quantile": [f64(q.quantile) for q in dp.quantile_values],
            "ValueAtQuantiles.Value": [f64(q.value) for q in dp.quantile_values],
            "Flags": dp.flags}


def metric_rows(req: Any) -> dict[str, list[Row]]:
    """Rows per table name (all five tables present, possibly empty)."""
    out: dict[str, list[Row]] = {t: [] for t in METRIC_TABLES.values()}
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind not in METRIC_TABLES:
                    raise ValueError(f"metric {m.name!r}: type {kind} (contrib fails the batch)")
                data = getattr(m, kind)
                for dp in data.data_points:
                    out[METRIC_TABLES[kind]].append({
                        "ResourceAttributes": attributes(rm.resource.attributes),
                        "ResourceSchemaUrl": rm.schema_url,
                        "ScopeName": sm.scope.name,
                        "ScopeVersion": sm.scope.version,
                        "ScopeAttributes": attributes(sm.scope.attributes),
                        "ScopeDroppedAttrCount": sm.scope.dropped_attributes_count,
                        "ScopeSchemaUrl": sm.schema_url,
                        "ServiceName": service_name(rm.resource),
                        "MetricName": m.name,
                        "MetricDescription": m.description,
                        "MetricUnit": m.unit,
                        "Attributes": attributes(dp.attributes),
                        "StartTimeUnix": ts(dp.start_time_unix_nano),
                        "TimeUnix": ts(dp.time_unix_nano),
                        **_metric_body(kind, data, dp),
                    })
    return out
