"""Per signal: the request structure ClickHouse reads and the SELECTs that flatten it into rows.

ClickHouse parses the Export*ServiceRequest itself (ProtobufSingle) into one row whose columns
are the request's repeated fields as Array(Tuple(...)); ARRAY JOIN over resource → scope → item
yields one row per span / log record / data point. Python never builds a row.
Values are the contrib exporter's (see anyvalue.py, schema.py, and tests/oracle.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporters.clickhouse.anyvalue import SharedMaps, attributes_map, attributes_type
from exporters.clickhouse.tuple_access import tuple_elements
from gateway.signals import Signal

ATTRS = attributes_type()
_SCOPE = f"scope Tuple(name String, version String, attributes {ATTRS}, dropped_attributes_count UInt32)"
_RESOURCE = f"resource Tuple(attributes {ATTRS})"


def _hex_id(x: str) -> str:
    """Lowercase hex; an absent or all-zero id is '' (TraceIDToHexOrEmptyString)."""
    return f"if(length(replaceAll({x}, '\\0', '')) = 0, '', lower(hex({x})))"


def _hex_fixed(x: str, size: int) -> str:
    """hex.EncodeToString of a fixed-size id: an absent id is `size` zero bytes."""
    return f"if(empty({x}), '{'0' * 2 * size}', lower(hex({x})))"


def _ts(x: str) -> str:
    return f"fromUnixTimestamp64Nano(reinterpretAsInt64({x}))"


@dataclass(frozen=True)
class Shared:
    """A Map(String, String) column of the KeyValue array `attrs` (with `each`: an
    Array(Map(String, String)) of the array of KeyValue arrays `attrs`), made by the one
    attributes_map instance that the Shared columns of a target share (anyvalue.SharedMaps):
    for maps made once per resource or scope, and for the few maps of events and links."""
    attrs: str
    each: bool = False


@dataclass(frozen=True)
class Derived:
    """A column computed from other target columns (by their names)."""
    expr: str


@dataclass(frozen=True)
class Target:
    table: str                      # schema table key
    array_join: str                 # ARRAY JOIN chain over the input columns
    columns: list[tuple[str, str | Shared | Derived]]  # (target column, expression)
    where: str = ""

    def select(self, source: str) -> str:
        joins = f"\n{self.array_join}" if self.array_join else ""
        where = f"\nWHERE {self.where}" if self.where else ""
        if not any(isinstance(e, Shared) for _, e in self.columns):
            columns = [(n, e.expr if isinstance(e, Derived) else e) for n, e in self.columns]
            return tuple_elements(f"SELECT\n    {_list(columns)}\nFROM {source}{joins}{where}")
        # The shared maps and the plain columns are made in a subquery, the maps are taken out
        # and the derived columns made in the query around it.
        maps = SharedMaps("_otelgw_shared_maps")
        inner: list[tuple[str, str]] = []
        outer: list[tuple[str, str]] = []
        for name, e in self.columns:
            if isinstance(e, Shared):
                outer.append((name, maps.add(e.attrs, e.each)))
            elif isinstance(e, Derived):
                outer.append((name, e.expr))
            else:
                inner.append((name, e))
                outer.append((name, f"`{name}`"))
        inner += [(maps.column, maps.expr()), *maps.lengths()]
        return tuple_elements(f"SELECT\n    {_list(outer)}\nFROM (\n  SELECT\n    "
                              f"{_list(inner)}\n  FROM {source}{joins}{where}\n)")


def _list(columns: list[tuple[str, str]]) -> str:
    return ",\n    ".join(f"{expr} AS `{name}`" for name, expr in columns)


@dataclass(frozen=True)
class Flattening:
    signal: Signal
    structure: list[tuple[str, str]]  # input columns: the request's top-level fields
    targets: list[Target]
    # A Null table between the request and the targets, filled by this Target's view; its
    # columns are typed as the target columns of the same name, plus `stage_types`.
    stage: Target | None = None
    stage_types: dict[str, str] = field(default_factory=dict)


_TRACES_STRUCT = (
    f"Array(Tuple({_RESOURCE}, schema_url String, scope_spans Array(Tuple({_SCOPE}, "
    "schema_url String, spans Array(Tuple(trace_id String, span_id String, trace_state String, "
    "parent_span_id String, flags UInt32, name String, kind Int32, "
    f"start_time_unix_nano UInt64, end_time_unix_nano UInt64, attributes {ATTRS}, "
    f"events Array(Tuple(time_unix_nano UInt64, name String, attributes {ATTRS})), "
    f"links Array(Tuple(trace_id String, span_id String, trace_state String, attributes {ATTRS})), "
    "status Tuple(message String, code Int32)))))))"
)

TRACES = Flattening(Signal.TRACES, [("resource_spans", _TRACES_STRUCT)], [Target(
    table="traces",
    array_join=("ARRAY JOIN resource_spans AS rs ARRAY JOIN rs.scope_spans AS ss "
                "ARRAY JOIN ss.spans AS s"),
    columns=[
        ("Timestamp", _ts("s.start_time_unix_nano")),
        ("TraceId", _hex_id("s.trace_id")),
        ("SpanId", _hex_id("s.span_id")),
        ("ParentSpanId", _hex_id("s.parent_span_id")),
        ("TraceState", "s.trace_state"),
        ("SpanName", "s.name"),
        ("SpanKind", "transform(s.kind, [0, 1, 2, 3, 4, 5], ['Unspecified', 'Internal', "
                     "'Server', 'Client', 'Producer', 'Consumer'], '')"),
        ("ServiceName", Derived("ResourceAttributes['service.name']")),
        ("ResourceAttributes", attributes_map("rs.resource.attributes")),
        ("ScopeName", "ss.scope.name"),
        ("ScopeVersion", "ss.scope.version"),
        ("SpanAttributes", attributes_map("s.attributes")),
        # pcommon.Timestamp is uint64: an end before the start wraps, as in the contrib exporter.
        ("Duration", "s.end_time_unix_nano - s.start_time_unix_nano"),
        ("StatusCode", "transform(s.status.code, [0, 1, 2], ['Unset', 'Ok', 'Error'], '')"),
        ("StatusMessage", "s.status.message"),
        ("Events.Timestamp", f"arrayMap(e -> {_ts('e.time_unix_nano')}, s.events)"),
        ("Events.Name", "arrayMap(e -> e.name, s.events)"),
        # events and links share one rendering: most spans have neither
        ("Events.Attributes", Shared("arrayMap(e -> e.attributes, s.events)", each=True)),
        ("Links.TraceId", f"arrayMap(l -> {_hex_id('l.trace_id')}, s.links)"),
        ("Links.SpanId", f"arrayMap(l -> {_hex_id('l.span_id')}, s.links)"),
        ("Links.TraceState", "arrayMap(l -> l.trace_state, s.links)"),
        ("Links.Attributes", Shared("arrayMap(l -> l.attributes, s.links)", each=True)),
    ],
)])

_LOGS_STRUCT = (
    f"Array(Tuple({_RESOURCE}, schema_url String, scope_logs Array(Tuple({_SCOPE}, "
    "schema_url String, log_records Array(Tuple(time_unix_nano UInt64, "
    "observed_time_unix_nano UInt64, severity_number Int32, severity_text String, "
    f"body Tuple(string_value String), attributes {ATTRS}, flags UInt32, trace_id String, "
    "span_id String))))))"
)

LOGS = Flattening(Signal.LOGS, [("resource_logs", _LOGS_STRUCT)], [Target(
    table="logs",
    array_join=("ARRAY JOIN resource_logs AS rl ARRAY JOIN rl.scope_logs AS sl "
                "ARRAY JOIN sl.log_records AS r"),
    columns=[
        ("Timestamp", _ts("if(r.time_unix_nano = 0, r.observed_time_unix_nano, r.time_unix_nano)")),
        ("TraceId", _hex_id("r.trace_id")),
        ("SpanId", _hex_id("r.span_id")),
        ("TraceFlags", "toUInt8(bitAnd(r.flags, 255))"),
        ("SeverityText", "r.severity_text"),
        ("SeverityNumber", "toUInt8(bitAnd(r.severity_number, 255))"),
        ("ServiceName", Derived("ResourceAttributes['service.name']")),
        # The contrib exporter keeps string bodies only (Body().Str()); others become "".
        ("Body", "r.body.string_value"),
        ("ResourceSchemaUrl", "rl.schema_url"),
        ("ResourceAttributes", Shared("rl.resource.attributes")),
        ("ScopeSchemaUrl", "sl.schema_url"),
        ("ScopeName", "sl.scope.name"),
        ("ScopeVersion", "sl.scope.version"),
        ("ScopeAttributes", Shared("sl.scope.attributes")),
        ("LogAttributes", attributes_map("r.attributes")),
    ],
)])

_NUMBER_VALUE = "value Enum8('none' = 0, 'as_double' = 4, 'as_int' = 6), as_double Float64, as_int Int64"
_EXEMPLAR = (f"Array(Tuple(filtered_attributes {ATTRS}, time_unix_nano UInt64, "
             "value Enum8('none' = 0, 'as_double' = 3, 'as_int' = 6), as_double Float64, "
             "as_int Int64, span_id String, trace_id String))")
_POINT_HEAD = f"attributes {ATTRS}, start_time_unix_nano UInt64, time_unix_nano UInt64, flags UInt32"
_NUMBER_POINTS = f"data_points Array(Tuple({_POINT_HEAD}, {_NUMBER_VALUE}, exemplars {_EXEMPLAR}))"
_HIST_POINTS = (f"data_points Array(Tuple({_POINT_HEAD}, count UInt64, sum Float64, "
                "bucket_counts Array(UInt64), explicit_bounds Array(Float64), "
                f"exemplars {_EXEMPLAR}, min Float64, max Float64))")
_BUCKETS = "Tuple(offset Int32, bucket_counts Array(UInt64))"
_EXP_POINTS = (f"data_points Array(Tuple({_POINT_HEAD}, count UInt64, sum Float64, scale Int32, "
               f"zero_count UInt64, positive {_BUCKETS}, negative {_BUCKETS}, "
               f"exemplars {_EXEMPLAR}, min Float64, max Float64))")
_SUMMARY_POINTS = (f"data_points Array(Tuple({_POINT_HEAD}, count UInt64, sum Float64, "
                   "quantile_values Array(Tuple(quantile Float64, value Float64))))")
_METRICS_STRUCT = (
    f"Array(Tuple({_RESOURCE}, schema_url String, scope_metrics Array(Tuple({_SCOPE}, "
    "schema_url String, metrics Array(Tuple(name String, description String, unit String, "
    f"gauge Tuple({_NUMBER_POINTS}), "
    f"sum Tuple({_NUMBER_POINTS}, aggregation_temporality Int32, is_monotonic Bool), "
    f"histogram Tuple({_HIST_POINTS}, aggregation_temporality Int32), "
    f"exponential_histogram Tuple({_EXP_POINTS}, aggregation_temporality Int32), "
    f"summary Tuple({_SUMMARY_POINTS})))))))"
)


def _number(x: str) -> str:
    return f"if({x}.value = 'as_int', toFloat64({x}.as_int), {x}.as_double)"


# A metric's points sit under one of five kinds. The stage view joins the points of all kinds in
# one pass: `k` is the point's kind (its position in _KINDS, from 1) and `i` its index in that
# kind's list. ClickHouse plans every view's SELECT on each INSERT, and the cost grows with the
# expressions over the wide request tuples, so the kinds are not spelled out more than needed.
_KINDS = ["gauge", "sum", "histogram", "exponential_histogram", "summary"]
_G, _S, _H, _E, _Q = _KINDS


def _k(kind: str) -> int:
    return _KINDS.index(kind) + 1


def _points_join() -> str:
    points = [f"m.{kind}.data_points" for kind in _KINDS]
    kinds = ", ".join(f"arrayMap(x -> toUInt8({i}), {p})" for i, p in enumerate(points, 1))
    index = ", ".join(f"arrayEnumerate({p})" for p in points)
    return ("ARRAY JOIN resource_metrics AS rm ARRAY JOIN rm.scope_metrics AS sm "
            f"ARRAY JOIN sm.metrics AS m ARRAY JOIN arrayConcat({kinds}) AS k, "
            f"arrayConcat({index}) AS i")


def _dp(kind: str) -> str:
    """The point if it is of `kind`, else that kind's default (element 0)."""
    return f"m.{kind}.data_points[if(k = {_k(kind)}, i, 0)]"


def _of(field: str, *kinds: str) -> str:
    """`field` of the point, which is of one of `kinds`."""
    *first, last = kinds
    branches = "".join(f"k = {_k(kind)}, {_dp(kind)}.{field}, " for kind in first)
    return f"multiIf({branches}{_dp(last)}.{field})" if first else f"{_dp(last)}.{field}"


_EXEMPLARS = _of("exemplars", _G, _S, _H, _E)  # a summary point has none

# One row per data point of any kind with every target column: a stage Null table between the
# request and the five target views, which only pick their kind's rows and columns. The costly
# part (the AnyValue rendering) is planned once per INSERT instead of once per target.
_POINTS = Target(
    table="metrics_stage",  # not a schema table: ingest.py names it
    array_join=_points_join(),
    columns=[
        ("Kind", "k"),
        ("ResourceAttributes", Shared("rm.resource.attributes")),
        ("ResourceSchemaUrl", "rm.schema_url"),
        ("ScopeName", "sm.scope.name"),
        ("ScopeVersion", "sm.scope.version"),
        ("ScopeAttributes", Shared("sm.scope.attributes")),
        ("ScopeDroppedAttrCount", "sm.scope.dropped_attributes_count"),
        ("ScopeSchemaUrl", "sm.schema_url"),
        ("ServiceName", Derived("ResourceAttributes['service.name']")),
        ("MetricName", "m.name"),
        ("MetricDescription", "m.description"),
        ("MetricUnit", "m.unit"),
        ("Attributes", attributes_map(_of("attributes", *_KINDS))),
        ("StartTimeUnix", _ts(_of("start_time_unix_nano", *_KINDS))),
        ("TimeUnix", _ts(_of("time_unix_nano", *_KINDS))),
        ("Flags", _of("flags", *_KINDS)),
        # The contrib exporter hex-encodes exemplar ids as they are ([8]byte / [16]byte): all-zero
        # stays zeros, and so does an absent id (what a Go sender writes for a zero id).
        ("Exemplars.FilteredAttributes",
         f"arrayMap(x -> {attributes_map('x.filtered_attributes')}, {_EXEMPLARS})"),
        ("Exemplars.TimeUnix", f"arrayMap(x -> {_ts('x.time_unix_nano')}, {_EXEMPLARS})"),
        ("Exemplars.Value", f"arrayMap(x -> {_number('x')}, {_EXEMPLARS})"),
        ("Exemplars.SpanId", f"arrayMap(x -> {_hex_fixed('x.span_id', 8)}, {_EXEMPLARS})"),
        ("Exemplars.TraceId", f"arrayMap(x -> {_hex_fixed('x.trace_id', 16)}, {_EXEMPLARS})"),
        ("Value", f"if(k = {_k(_G)}, {_number(_dp(_G))}, {_number(_dp(_S))})"),
        ("AggregationTemporality", f"multiIf(k = {_k(_S)}, m.sum.aggregation_temporality, "
                                   f"k = {_k(_H)}, m.histogram.aggregation_temporality, "
                                   "m.exponential_histogram.aggregation_temporality)"),
        ("IsMonotonic", "m.sum.is_monotonic"),
        ("Count", _of("count", _H, _E, _Q)),
        ("Sum", _of("sum", _H, _E, _Q)),
        ("Min", _of("min", _H, _E)),
        ("Max", _of("max", _H, _E)),
        ("BucketCounts", _of("bucket_counts", _H)),
        ("ExplicitBounds", _of("explicit_bounds", _H)),
        ("Scale", _of("scale", _E)),
        ("ZeroCount", _of("zero_count", _E)),
        ("PositiveOffset", _of("positive.offset", _E)),
        ("PositiveBucketCounts", _of("positive.bucket_counts", _E)),
        ("NegativeOffset", _of("negative.offset", _E)),
        ("NegativeBucketCounts", _of("negative.bucket_counts", _E)),
        ("ValueAtQuantiles.Quantile", f"arrayMap(x -> x.quantile, {_of('quantile_values', _Q)})"),
        ("ValueAtQuantiles.Value", f"arrayMap(x -> x.value, {_of('quantile_values', _Q)})"),
    ],
)

_HEAD = ["ResourceAttributes", "ResourceSchemaUrl", "ScopeName", "ScopeVersion",
         "ScopeAttributes", "ScopeDroppedAttrCount", "ScopeSchemaUrl", "ServiceName",
         "MetricName", "MetricDescription", "MetricUnit", "Attributes", "StartTimeUnix",
         "TimeUnix", "Flags"]
_EXEMPLAR_COLUMNS = ["Exemplars.FilteredAttributes", "Exemplars.TimeUnix", "Exemplars.Value",
                     "Exemplars.SpanId", "Exemplars.TraceId"]
_MINMAX_TEMP = ["Min", "Max", "AggregationTemporality"]


def _metric_target(kind: str, *body: str) -> Target:
    return Target(table=f"metrics_{kind}", array_join="",
                  columns=[(c, f"`{c}`") for c in (*_HEAD, *body)], where=f"Kind = {_k(kind)}")


METRICS = Flattening(Signal.METRICS, [("resource_metrics", _METRICS_STRUCT)], [
    _metric_target(_G, "Value", *_EXEMPLAR_COLUMNS),
    _metric_target(_S, "Value", "AggregationTemporality", "IsMonotonic", *_EXEMPLAR_COLUMNS),
    _metric_target(_H, "Count", "Sum", "BucketCounts", "ExplicitBounds", *_MINMAX_TEMP,
                   *_EXEMPLAR_COLUMNS),
    _metric_target(_E, "Count", "Sum", "Scale", "ZeroCount", "PositiveOffset",
                   "PositiveBucketCounts", "NegativeOffset", "NegativeBucketCounts",
                   *_MINMAX_TEMP, *_EXEMPLAR_COLUMNS),
    _metric_target(_Q, "Count", "Sum", "ValueAtQuantiles.Quantile", "ValueAtQuantiles.Value"),
], stage=_POINTS, stage_types={"Kind": "UInt8"})

FLATTENINGS = {f.signal: f for f in (TRACES, LOGS, METRICS)}
