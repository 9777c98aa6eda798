"""Byte- and tree-level mutations of valid inputs, as hypothesis strategies: what a fuzzer does
to a corpus (flip bits, overwrite, insert, delete, duplicate, truncate, splice)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# bytes that mean something to the parsers: varint continuation, lengths, tags, quotes, UTF-8
_INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
                b"\x0a", b"\x12", b"\x1a", b"\x0b", b"\x0c", b'"', b"{", b"}", b"[", b"]",
                b",", b":", b"\\", b"\\u", b"\xc3", b"\xed\xa0\x80", b"\xf0\x9f", b"\n",
                b" ", b"#", b"=", b"NaN", b"-1", b"1e999"]


@st.composite
def mutated(draw: Any, base: bytes, max_steps: int = 6) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, max_steps))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "dup", "truncate",
                                   "interesting"]))
        pos = draw(st.integers(0, max(0, len(data) - 1))) if data else 0
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == "dup" and data:
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[pos:]
        else:
            data[pos:pos] = draw(st.sampled_from(_INTERESTING))
    return bytes(data)


def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Any JSON value, with keys that are OTLP/JSON field names half of the time."""
    keys = st.one_of(st.sampled_from(OTLP_KEYS), st.text(max_size=6))
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                        st.sampled_from(["NaN", "Infinity", "-Infinity", "0x10", "1e3", "-0",
                                         "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174",
                                         "\ud800", "AAEC", "%%%", " 1", "18446744073709551616"]))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
        max_leaves=max_leaves)


OTLP_KEYS = [
    "resourceSpans", "resourceLogs", "resourceMetrics", "resource", "attributes", "key", "value",
    "stringValue", "intValue", "doubleValue", "boolValue", "bytesValue", "arrayValue",
    "kvlistValue", "values", "scopeSpans", "scopeLogs", "scopeMetrics", "scope", "name",
    "version", "spans", "traceId", "spanId", "parentSpanId", "traceState", "flags", "kind",
    "startTimeUnixNano", "endTimeUnixNano", "events", "links", "status", "code", "message",
    "logRecords", "timeUnixNano", "observedTimeUnixNano", "severityNumber", "severityText",
    "body", "metrics", "gauge", "sum", "histogram", "exponentialHistogram", "summary",
    "dataPoints", "asDouble", "asInt", "exemplars", "bucketCounts", "explicitBounds",
    "aggregationTemporality", "isMonotonic", "count", "positive", "negative", "offset",
    "quantileValues", "quantile", "schemaUrl", "droppedAttributesCount", "resource_spans",
    "scope_spans", "trace_id", "span_id", "data_points", "as_int",
]
