"""Value changes with the Collector's exact results: `convert` (pdata AsString, Go's int64()
of a double, strconv.ParseInt / ParseFloat of a string) and the `hash` action's SHA-256."""

from __future__ import annotations

import hashlib
import logging
import math
import re
import struct

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from gateway.pdata import as_string

log = logging.getLogger(__name__)

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def sha256_text(value: AnyValue) -> str:
    """Hex SHA-256 of the value's bytes as the Collector hashes them (string as UTF-8, bool as
    one byte, int and double as 8 little-endian bytes); "" for other kinds and, as in v0.129
    (whose hasher skips empty input), for the empty string."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        data = value.string_value.encode()
    elif kind == "bool_value":
        data = b"\x01" if value.bool_value else b"\x00"
    elif kind == "int_value":
        data = struct.pack("<q", value.int_value)
    elif kind == "double_value":
        data = struct.pack("<d", value.double_value)
    else:
        return ""
    return hashlib.sha256(data).hexdigest() if data else ""


def to_string(value: AnyValue, key: str = "") -> bool:
    """Each to_* converts in place and says whether the value changed; a value Go cannot
    convert stays as it is (logged at debug level, as upstream)."""
    if value.WhichOneof("value") == "string_value":
        return False
    value.string_value = as_string(value)
    return True


def to_int(value: AnyValue, key: str = "") -> bool:
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return False
    if kind == "double_value":
        value.int_value = go_int64(value.double_value)
    elif kind == "bool_value":
        value.int_value = int(value.bool_value)
    elif kind == "string_value" and (n := parse_int(value.string_value)) is not None:
        value.int_value = n
    else:
        log.debug("attribute %r: cannot convert %s to int", key, kind or "an empty value")
        return False
    return True


def to_double(value: AnyValue, key: str = "") -> bool:
    kind = value.WhichOneof("value")
    if kind == "double_value":
        return False
    if kind == "int_value":
        value.double_value = float(value.int_value)
    elif kind == "bool_value":
        value.double_value = float(value.bool_value)
    elif kind == "string_value" and (f := parse_float(value.string_value)) is not None:
        value.double_value = f
    else:
        log.debug("attribute %r: cannot convert %s to double", key, kind or "an empty value")
        return False
    return True


def go_int64(f: float) -> int:
    """Go's int64(f) on amd64: truncation; NaN and out-of-range give the minimum int64."""
    if math.isnan(f) or math.isinf(f):
        return _INT64_MIN
    n = int(f)
    return n if _INT64_MIN <= n <= _INT64_MAX else _INT64_MIN


_GO_INT = re.compile(r"[+-]?[0-9]+")
_DIGITS = r"[0-9](?:_?[0-9])*"
_HEX = r"[0-9a-fA-F](?:_?[0-9a-fA-F])*"
_GO_FLOAT = re.compile(
    rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?")
_GO_HEX_FLOAT = re.compile(
    rf"[+-]?0[xX](?:{_HEX}(?:\.(?:{_HEX})?)?|\.{_HEX})[pP][+-]?{_DIGITS}")
_GO_SPECIAL = re.compile(r"[+-]?(?:inf|infinity)|nan", re.IGNORECASE)


def parse_int(text: str) -> int | None:
    """strconv.ParseInt(text, 10, 64); None where Go returns an error."""
    if not _GO_INT.fullmatch(text):
        return None
    n = int(text)
    return n if _INT64_MIN <= n <= _INT64_MAX else None


def parse_float(text: str) -> float | None:
    """strconv.ParseFloat(text, 64); None where Go returns an error (syntax, or out of range)."""
    if _GO_SPECIAL.fullmatch(text):
        return float(text)
    if _GO_FLOAT.fullmatch(text):
        f = float(text.replace("_", ""))
    elif _GO_HEX_FLOAT.fullmatch(text):
        sign = -1.0 if text.startswith("-") else 1.0
        try:
            f = sign * float.fromhex(text.lstrip("+-").replace("_", ""))
        except OverflowError:
            return None
    else:
        return None
    return None if math.isinf(f) else f
