"""AnyValue helpers with pdata's semantics: a config value to AnyValue (pcommon FromRaw), the
text a regexp filter matches, and equality (the filter's strict match). AsString and the Go float
formats live in gateway/pdata.py, shared with the other components that write values as text.
"""

from __future__ import annotations

import datetime
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from gateway.pdata import as_string, format_f

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1


def from_raw(raw: Any, path: str = "value") -> AnyValue:
    """pcommon Value.FromRaw of a YAML value: str, int, float, bool, bytes, list, mapping."""
    out = AnyValue()
    _fill(out, raw, path)
    return out


def _fill(out: AnyValue, raw: Any, path: str) -> None:
    if raw is None:
        return  # an empty value, as FromRaw(nil) gives inside a list or map
    if isinstance(raw, bool):
        out.bool_value = raw
    elif isinstance(raw, int):
        if raw > _UINT64_MAX or raw < _INT64_MIN:
            raise ValueError(f"{path}: integer {raw} does not fit in 64 bits")
        # FromRaw stores a uint64 as int64 (two's complement), as Go's conversion does.
        out.int_value = raw - (1 << 64) if raw > _INT64_MAX else raw
    elif isinstance(raw, float):
        out.double_value = raw
    elif isinstance(raw, str):
        out.string_value = raw
    elif isinstance(raw, (bytes, bytearray)):
        out.bytes_value = bytes(raw)
    elif isinstance(raw, datetime.datetime):
        # go-yaml keeps a timestamp as its text for an `any` field; PyYAML has parsed it.
        raise ValueError(f"{path}: a timestamp must be quoted to be used as a string")
    elif isinstance(raw, datetime.date):
        out.string_value = raw.isoformat()
    elif isinstance(raw, (list, tuple)):
        arr = out.array_value
        arr.SetInParent()  # an empty list is still an array
        for i, item in enumerate(raw):
            _fill(arr.values.add(), item, f"{path}[{i}]")
    elif isinstance(raw, dict):
        kvl = out.kvlist_value
        kvl.SetInParent()
        for key, item in raw.items():
            kv = kvl.values.add()
            kv.key = str(key)
            _fill(kv.value, item, f"{path}.{key}")
    else:
        raise ValueError(f"{path}: unsupported value type {type(raw).__name__}")


_MATCHED_AS_TEXT = frozenset({"string_value", "bool_value", "int_value"})


def match_string(value: AnyValue) -> str | None:
    """The text a regexp attribute filter matches: strings, bools, doubles ('f' format) and
    ints; None for other kinds, which never match."""
    kind = value.WhichOneof("value")
    if kind == "double_value":  # not AsString's text: 1e21 matches as 1000000000000000000000
        return format_f(value.double_value)
    if kind in _MATCHED_AS_TEXT:
        return as_string(value)
    return None


def equal(a: AnyValue, b: AnyValue) -> bool:
    """The strict filter's comparison: same kind and value; maps compare as sets of entries."""
    kind = a.WhichOneof("value")
    if kind != b.WhichOneof("value"):
        return False
    if kind == "kvlist_value":
        x = {kv.key: kv.value for kv in a.kvlist_value.values}
        y = {kv.key: kv.value for kv in b.kvlist_value.values}
        return x.keys() == y.keys() and all(equal(x[k], y[k]) for k in x)
    if kind == "array_value":
        xs, ys = a.array_value.values, b.array_value.values
        return len(xs) == len(ys) and all(equal(x, y) for x, y in zip(xs, ys))
    if kind is None:
        return True
    return bool(getattr(a, kind) == getattr(b, kind))
