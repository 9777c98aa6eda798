"""AnyValue helpers with pdata's semantics: a config value to AnyValue (pcommon FromRaw), a value
to text (AsString, and the filter's string form), and equality (the filter's strict match).

The attributes and resource processors must produce what the Collector would, down to how a
double becomes text when converted or matched, so the Go formatting rules are spelled out here.
"""

from __future__ import annotations

import base64
import datetime
import math
from decimal import Decimal
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

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


def kind_name(value: AnyValue) -> str:
    """pcommon's ValueType name, for error messages."""
    return {"string_value": "Str", "bool_value": "Bool", "int_value": "Int",
            "double_value": "Double", "bytes_value": "Bytes", "array_value": "Slice",
            "kvlist_value": "Map"}.get(value.WhichOneof("value") or "", "Empty")


# ------------------------------------------------------------------ Go float formatting

def _digits(f: float) -> tuple[str, int]:
    """Shortest round-trip digits of |f| (as strconv's precision -1) and the decimal point's
    position: |f| = 0.<digits> × 10^point."""
    _, digits, exp = Decimal(repr(abs(f))).normalize().as_tuple()
    ds = "".join(map(str, digits))
    return ds, len(ds) + int(exp)


def _fixed(ds: str, point: int) -> str:
    if point <= 0:
        return f"0.{'0' * -point}{ds}"
    if point >= len(ds):
        return ds + "0" * (point - len(ds))
    return f"{ds[:point]}.{ds[point:]}"


def format_f(f: float) -> str:
    """strconv.FormatFloat(f, 'f', -1, 64): no exponent, shortest digits."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    if f == 0:
        return sign + "0"
    return sign + _fixed(*_digits(f))


def format_double(f: float) -> str:
    """pcommon AsString of a double: encoding/json's float text (ES6 style), and its error text
    for NaN and ±Inf, which JSON cannot hold."""
    if math.isnan(f) or math.isinf(f):
        g = "NaN" if math.isnan(f) else ("+Inf" if f > 0 else "-Inf")
        return f"json: unsupported value: {g}"
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    if f == 0:
        return sign + "0"
    ds, point = _digits(f)
    if abs(f) < 1e-6 or abs(f) >= 1e21:
        e = point - 1
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{sign}{mant}e{'-' if e < 0 else '+'}{abs(e)}"
    return sign + _fixed(ds, point)


# ------------------------------------------------------------------ AsString

_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                 "\t": "\\t", "\u2028": "\\u2028", "\u2029": "\\u2029"}


class _NotJSON(Exception):
    """A NaN or ±Inf inside a map or slice: json.Marshal fails and AsString gives ""."""


def _json_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _JSON_ESCAPES:
            out.append(_JSON_ESCAPES[ch])
        elif ord(ch) < 0x20 or ch in "<>&":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _json(value: AnyValue) -> str:
    """json.Marshal(value.AsRaw()): map keys sorted, a repeated key's last value kept."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return _json_string(value.string_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        f = value.double_value
        if math.isnan(f) or math.isinf(f):
            raise _NotJSON
        return format_double(f)
    if kind == "bytes_value":
        return f'"{base64.b64encode(value.bytes_value).decode()}"' if value.bytes_value else "null"
    if kind == "array_value":
        return "[" + ",".join(_json(v) for v in value.array_value.values) + "]"
    if kind == "kvlist_value":
        last = {kv.key: kv.value for kv in value.kvlist_value.values}
        keys = sorted(last, key=lambda k: k.encode())
        return "{" + ",".join(f"{_json_string(k)}:{_json(last[k])}" for k in keys) + "}"
    return "null"


def as_string(value: AnyValue) -> str:
    """pcommon Value.AsString()."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return format_double(value.double_value)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind in ("array_value", "kvlist_value"):
        try:
            return _json(value)
        except _NotJSON:
            return ""
    return ""


def match_string(value: AnyValue) -> str | None:
    """The text a regexp attribute filter matches: strings, bools, doubles ('f' format) and
    ints; None for other kinds, which never match."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return format_f(value.double_value)
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
