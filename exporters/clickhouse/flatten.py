"""Per signal: the request structure ClickHouse reads and the SELECTs that flatten it into rows.

ClickHouse parses the Export*ServiceRequest itself (ProtobufSingle) into one row whose columns
are the request's repeated fields as Array(Tuple(...)); ARRAY JOIN over resource → scope → item
yields one row per span / log record / data point. Python never builds a row.
Values are the contrib exporter's (see anyvalue.py, schema.py, and tests/oracle.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from exporters.clickhouse.anyvalue import attributes_map, attributes_type
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
class Target:
    table: str                      # schema table key
    array_join: str                 # ARRAY JOIN chain over the input columns
    columns: list[tuple[str, str]]  # (target column, expression)
    where: str = ""

    def select(self, source: str) -> str:
        cols = ",\n    ".join(f"{expr} AS `{name}`" for name, expr in self.columns)
        where = f"\nWHERE {self.where}" if self.where else ""
        return f"SELECT\n    {cols}\nFROM {source}\n{self.array_join}{where}"


@dataclass(frozen=True)
class Flattening:
    signal: Signal
    structure: list[tuple[str, str]]  # input columns: the request's top-level fields
    targets: list[Target]


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
        ("ServiceName", "ResourceAttributes['service.name']"),
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
        ("Events.Attributes", f"arrayMap(e -> {attributes_map('e.attributes')}, s.events)"),
        ("Links.TraceId", f"arrayMap(l -> {_hex_id('l.trace_id')}, s.links)"),
        ("Links.SpanId", f"arrayMap(l -> {_hex_id('l.span_id')}, s.links)"),
        ("Links.TraceState", "arrayMap(l -> l.trace_state, s.links)"),
        ("Links.Attributes", f"arrayMap(l -> {attributes_map('l.attributes')}, s.links)"),
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
        ("ServiceName", "ResourceAttributes['service.name']"),
        # The contrib exporter keeps string bodies only (Body().Str()); others become "".
        ("Body", "r.body.string_value"),
        ("ResourceSchemaUrl", "rl.schema_url"),
        ("ResourceAttributes", attributes_map("rl.resource.attributes")),
        ("ScopeSchemaUrl", "sl.schema_url"),
        ("ScopeName", "sl.scope.name"),
        ("ScopeVersion", "sl.scope.version"),
        ("ScopeAttributes", attributes_map("sl.scope.attributes")),
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


def _metric_target(key: str, data: str, body: list[tuple[str, str]], exemplars: bool = True
                   ) -> Target:
    head = [
        ("ResourceAttributes", attributes_map("rm.resource.attributes")),
        ("ResourceSchemaUrl", "rm.schema_url"),
        ("ScopeName", "sm.scope.name"),
        ("ScopeVersion", "sm.scope.version"),
        ("ScopeAttributes", attributes_map("sm.scope.attributes")),
        ("ScopeDroppedAttrCount", "sm.scope.dropped_attributes_count"),
        ("ScopeSchemaUrl", "sm.schema_url"),
        ("ServiceName", "ResourceAttributes['service.name']"),
        ("MetricName", "m.name"),
        ("MetricDescription", "m.description"),
        ("MetricUnit", "m.unit"),
        ("Attributes", attributes_map("dp.attributes")),
        ("StartTimeUnix", _ts("dp.start_time_unix_nano")),
        ("TimeUnix", _ts("dp.time_unix_nano")),
        ("Flags", "dp.flags"),
    ]
    ex = [
        # The contrib exporter hex-encodes exemplar ids as they are ([8]byte / [16]byte): all-zero
        # stays zeros, and so does an absent id (what a Go sender writes for a zero id).
        ("Exemplars.FilteredAttributes",
         f"arrayMap(x -> {attributes_map('x.filtered_attributes')}, dp.exemplars)"),
        ("Exemplars.TimeUnix", f"arrayMap(x -> {_ts('x.time_unix_nano')}, dp.exemplars)"),
        ("Exemplars.Value", f"arrayMap(x -> {_number('x')}, dp.exemplars)"),
        ("Exemplars.SpanId", f"arrayMap(x -> {_hex_fixed('x.span_id', 8)}, dp.exemplars)"),
        ("Exemplars.TraceId", f"arrayMap(x -> {_hex_fixed('x.trace_id', 16)}, dp.exemplars)"),
    ] if exemplars else []
    return Target(
        table=f"metrics_{key}",
        array_join=("ARRAY JOIN resource_metrics AS rm ARRAY JOIN rm.scope_metrics AS sm "
                    f"ARRAY JOIN sm.metrics AS m ARRAY JOIN m.{data}.data_points AS dp"),
        columns=head + body + ex,
    )


_MINMAX = [("Min", "dp.min"), ("Max", "dp.max")]

METRICS = Flattening(Signal.METRICS, [("resource_metrics", _METRICS_STRUCT)], [
    _metric_target("gauge", "gauge", [("Value", _number("dp"))]),
    _metric_target("sum", "sum", [
        ("Value", _number("dp")), ("AggregationTemporality", "m.sum.aggregation_temporality"),
        ("IsMonotonic", "m.sum.is_monotonic")]),
    _metric_target("histogram", "histogram", [
        ("Count", "dp.count"), ("Sum", "dp.sum"), ("BucketCounts", "dp.bucket_counts"),
        ("ExplicitBounds", "dp.explicit_bounds"), *_MINMAX,
        ("AggregationTemporality", "m.histogram.aggregation_temporality")]),
    _metric_target("exponential_histogram", "exponential_histogram", [
        ("Count", "dp.count"), ("Sum", "dp.sum"), ("Scale", "dp.scale"),
        ("ZeroCount", "dp.zero_count"), ("PositiveOffset", "dp.positive.offset"),
        ("PositiveBucketCounts", "dp.positive.bucket_counts"),
        ("NegativeOffset", "dp.negative.offset"),
        ("NegativeBucketCounts", "dp.negative.bucket_counts"), *_MINMAX,
        ("AggregationTemporality", "m.exponential_histogram.aggregation_temporality")]),
    _metric_target("summary", "summary", [
        ("Count", "dp.count"), ("Sum", "dp.sum"),
        ("ValueAtQuantiles.Quantile", "arrayMap(q -> q.quantile, dp.quantile_values)"),
        ("ValueAtQuantiles.Value", "arrayMap(q -> q.value, dp.quantile_values)")],
        exemplars=False),
])

FLATTENINGS = {f.signal: f for f in (TRACES, LOGS, METRICS)}
