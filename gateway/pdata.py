"""The text pdata makes of an OTLP AnyValue: pcommon Value.AsString() of pdata v1.35 (Collector
v0.129.0), and the Go float formats it and the Collector's components are built on.

AsString is the text every component that turns a value into a string writes: the attributes
processor's `convert`, filter matches, Prometheus label values, ClickHouse Map(String, String)
columns. Its rules, which each differ from what Python's str/json would write:

- a double is float64AsString: encoding/json's number text (shortest round-trip digits, plain
  decimals for 1e-6 <= |f| < 1e21 and for zero, otherwise an exponent without zero padding:
  `1e-7`, `1e+21`); NaN and ±Inf, which JSON cannot hold, become the text of the error
  json.Marshal would have returned: `json: unsupported value: NaN` / `+Inf` / `-Inf`.
- bytes are standard base64 with padding.
- a slice or map is json.Marshal(AsRaw()): map keys sorted, a repeated key keeps its last value,
  bytes as base64 strings, empty bytes and empty values as null, strings HTML-escaped (`<`, `>`,
  `&`, U+2028 and U+2029 as \\uXXXX, as json.Marshal does by default). A NaN or ±Inf anywhere
  inside makes json.Marshal fail; AsString drops the error and returns "".
- Empty gives "", as does string_value_strindex (profiles only), which pdata v1.35's protobuf
  does not know, so it reads the value as Empty (null inside a slice or map).
"""

from __future__ import annotations

import base64
import math
from json.encoder import encode_basestring

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

# encode_basestring (C) writes the escapes Go >= 1.22 writes (\" \\ \b \f \n \r \t, other control
# characters as lowercase \u00xx) but not json.Marshal's HTML-safe ones.
_HTML_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                            "\u2028": "\\u2028", "\u2029": "\\u2029"})


# ------------------------------------------------------------------ Go float text

def shortest_digits(f: float) -> tuple[str, int]:
    """The digits strconv writes for precision -1 (the shortest that read back as f; Python's
    repr picks the same ones) and the decimal point's place: |f| = 0.<digits> × 10^point.
    f must be finite and not zero."""
    mantissa, _, exp = repr(abs(f)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + int(exp or 0) - (len(whole) + len(frac) - len(digits))
    return digits.rstrip("0"), point


def _plain(digits: str, point: int) -> str:
    if point <= 0:
        return f"0.{'0' * -point}{digits}"
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return f"{digits[:point]}.{digits[point:]}"


def _nonfinite(f: float) -> str:
    """strconv's text for NaN and ±Inf (every format writes the same)."""
    return "NaN" if math.isnan(f) else ("+Inf" if f > 0 else "-Inf")


def format_f(f: float) -> str:
    """strconv.FormatFloat(f, 'f', -1, 64): never an exponent."""
    if not math.isfinite(f):
        return _nonfinite(f)
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    return sign + ("0" if f == 0 else _plain(*shortest_digits(f)))


def format_double(f: float) -> str:
    """pdata's float64AsString: the AsString of a double, and its text inside JSON."""
    if not math.isfinite(f):
        return f"json: unsupported value: {_nonfinite(f)}"
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    if f == 0:
        return sign + "0"
    digits, point = shortest_digits(f)
    if 1e-6 <= abs(f) < 1e21:
        return sign + _plain(digits, point)
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exp = point - 1
    return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp)}"


# ------------------------------------------------------------------ AsString

class _Unsupported(Exception):
    """A NaN or ±Inf inside a slice or map: json.Marshal fails."""


def _quote(s: str) -> str:
    return encode_basestring(s).translate(_HTML_SAFE)


def _json(v: AnyValue) -> str:
    """json.Marshal(v.AsRaw())."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return _quote(v.string_value)
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        if not math.isfinite(v.double_value):
            raise _Unsupported
        return format_double(v.double_value)
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind == "bytes_value":
        # ByteSlice.AsRaw() of an empty slice is a nil []byte, which json.Marshal writes as null.
        return f'"{base64.b64encode(v.bytes_value).decode()}"' if v.bytes_value else "null"
    if kind == "array_value":
        return "[" + ",".join(map(_json, v.array_value.values)) + "]"
    if kind == "kvlist_value":
        last = {kv.key: kv.value for kv in v.kvlist_value.values}  # AsRaw: a Go map
        # Go sorts the keys by their UTF-8 bytes; code point order (str's) is the same order.
        return "{" + ",".join(f"{_quote(k)}:{_json(last[k])}" for k in sorted(last)) + "}"
    return "null"


def as_string(v: AnyValue) -> str:
    """pcommon Value.AsString()."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        return format_double(v.double_value)
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if kind == "array_value" or kind == "kvlist_value":
        try:
            return _json(v)
        except _Unsupported:
            return ""
    return ""
