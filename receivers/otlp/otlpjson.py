"""OTLP/JSON into protobuf messages, from the json.loads() tree straight into upb.

OTLP/JSON is protobuf's JSON mapping with OTLP's changes: trace and span ids are hex, enums are
integers, unknown fields are ignored. protobuf's json_format.ParseDict is not used: it costs
~200 µs per span, and it takes some garbage silently (a string where a message belongs becomes
an empty message, invalid base64 empty bytes). What this accepts:

    object keys     lowerCamelCase JSON names or the proto field names (not both for one
                    field); unknown keys and null values are skipped; two members of one oneof
                    are an error
    messages        objects; repeated fields: arrays
    integers        JSON numbers with an integral value, or decimal strings ("-12"), in range
    floats          numbers, or "NaN", "Infinity", "-Infinity", or a number in a string
    bool / string   true/false / strings (an unpaired surrogate escape becomes U+FFFD)
    bytes           base64, standard or URL-safe alphabet, padding optional; the trace_id,
                    span_id and parent_span_id fields are hex (OTLP), of 16 / 8 bytes or empty
    enums           integers in the int32 range (open enums) or the value's name

Anything else raises JsonError naming the JSON path ($.resourceSpans[0].scopeSpans[0]…).
Messages nest at most MAX_DEPTH levels, as upb decodes them, so the result serializes to bytes
that every later stage can parse again.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from google.protobuf import descriptor as d

from gateway.signals import Signal
from receivers.otlp.wire import MAX_DEPTH


class JsonError(ValueError):
    """The JSON document is not a valid OTLP message."""


_MESSAGE, _INT, _FLOAT, _BOOL, _STRING, _BYTES, _ENUM, _ID = range(8)
_T = d.FieldDescriptor
_KIND = {_T.TYPE_DOUBLE: _FLOAT, _T.TYPE_FLOAT: _FLOAT, _T.TYPE_BOOL: _BOOL,
         _T.TYPE_STRING: _STRING, _T.TYPE_BYTES: _BYTES, _T.TYPE_ENUM: _ENUM,
         _T.TYPE_MESSAGE: _MESSAGE}
_RANGE = {**{t: (-(1 << 31), (1 << 31) - 1) for t in (_T.TYPE_INT32, _T.TYPE_SINT32,
                                                      _T.TYPE_SFIXED32, _T.TYPE_ENUM)},
          **{t: (0, (1 << 32) - 1) for t in (_T.TYPE_UINT32, _T.TYPE_FIXED32)},
          **{t: (-(1 << 63), (1 << 63) - 1) for t in (_T.TYPE_INT64, _T.TYPE_SINT64,
                                                      _T.TYPE_SFIXED64)},
          **{t: (0, (1 << 64) - 1) for t in (_T.TYPE_UINT64, _T.TYPE_FIXED64)}}
_TYPE_NAMES = {getattr(_T, n): n[5:].lower() for n in dir(_T) if n.startswith("TYPE_")}
_ID_BYTES = {"trace_id": 16, "span_id": 8, "parent_span_id": 8}
_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_SURROGATE = re.compile("[\ud800-\udfff]")
_URLSAFE = str.maketrans("-_", "+/")


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    kind: int
    repeated: bool
    type_name: str
    lo: int = 0
    hi: int = 0
    message: Any = None  # descriptor of a message field
    enum: Any = None     # descriptor of an enum field
    id_bytes: int = 0
    oneof: str = ""      # a real oneof (not a proto3 `optional`)
    alias: str = ""      # the field's other spelling (JSON name / proto name), if it has one


@cache
def _fields(desc: Any) -> dict[str, _Field]:
    out: dict[str, _Field] = {}
    for f in desc.fields:
        kind = _KIND.get(f.type, _INT)
        id_bytes = _ID_BYTES.get(f.name, 0) if kind == _BYTES else 0
        oneof = f.containing_oneof
        lo, hi = _RANGE.get(f.type, (0, 0))
        type_name = (f.message_type.name if f.message_type else f.enum_type.name
                     if f.enum_type else _TYPE_NAMES[f.type])
        common = dict(name=f.name, kind=_ID if id_bytes else kind, repeated=f.is_repeated,
                      type_name=type_name, lo=lo, hi=hi, message=f.message_type,
                      enum=f.enum_type, id_bytes=id_bytes,
                      oneof=oneof.name if oneof is not None and not oneof.name.startswith("_")
                      else "")
        if f.json_name == f.name:
            out[f.name] = _Field(**common)
        else:
            out[f.name] = _Field(**common, alias=f.json_name)
            out[f.json_name] = _Field(**common, alias=f.name)
    return out


def _where(path: tuple[Any, ...]) -> str:
    parts = []
    while path:
        path, key = path
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "$" + "".join(reversed(parts))


def _fail(path: tuple[Any, ...], what: str) -> JsonError:
    return JsonError(f"{_where(path)}: {what}")


def _kind_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


class Decoder:
    """Fills one message from one JSON document; `replaced` counts strings given U+FFFD."""

    def __init__(self) -> None:
        self.replaced = 0

    def message(self, obj: Any, msg: Any, path: tuple[Any, ...] = (), depth: int = 0) -> None:
        if type(obj) is not dict:
            raise _fail(path, f"an object is expected for a {msg.DESCRIPTOR.name}, "
                              f"not {_kind_name(obj)}")
        if depth >= MAX_DEPTH:
            raise _fail(path, f"messages are nested more than {MAX_DEPTH} levels deep")
        msg.SetInParent()  # `{}` is a present, empty message
        fields = _fields(msg.DESCRIPTOR)
        oneofs: dict[str, str] | None = None
        for key, value in obj.items():
            f = fields.get(key)
            if f is None or value is None:
                continue  # unknown fields are ignored, as OTLP requires
            here = (path, key)
            if f.alias and obj.get(f.alias) is not None:
                raise _fail(path, f"{key!r} and {f.alias!r} name the same field")
            if f.oneof:
                oneofs = oneofs if oneofs is not None else {}
                other = oneofs.setdefault(f.oneof, key)
                if other != key:
                    raise _fail(path, f"{other!r} and {key!r} are both set, but only one "
                                      f"member of the oneof {f.oneof!r} may be")
            if f.repeated:
                if type(value) is not list:
                    raise _fail(here, f"an array is expected, not {_kind_name(value)}")
                target = getattr(msg, f.name)
                if f.kind == _MESSAGE:
                    for i, item in enumerate(value):
                        self.message(item, target.add(), (here, i), depth + 1)
                else:
                    target.extend([self.scalar(f, v, (here, i)) for i, v in enumerate(value)])
            elif f.kind == _MESSAGE:
                self.message(value, getattr(msg, f.name), here, depth + 1)
            elif f.kind == _STRING and type(value) is str:
                self.set(msg, f, value, here)  # the most common field: no detour
            else:
                self.set(msg, f, self.scalar(f, value, here), here)

    def set(self, msg: Any, f: _Field, value: Any, path: tuple[Any, ...]) -> None:
        try:
            setattr(msg, f.name, value)
        except UnicodeEncodeError:  # an unpaired surrogate: no text, cannot be UTF-8
            setattr(msg, f.name, _SURROGATE.sub("\ufffd", value))
            self.replaced += 1

    def scalar(self, f: _Field, value: Any, path: tuple[Any, ...]) -> Any:
        kind, t = f.kind, type(value)
        if kind == _STRING:
            if t is str:
                if f.repeated and _SURROGATE.search(value):
                    self.replaced += 1
                    return _SURROGATE.sub("\ufffd", value)
                return value
        elif kind == _INT or kind == _ENUM:
            n = _integer(value, t)
            if n is None and kind == _ENUM and t is str:
                number = f.enum.values_by_name.get(value)
                if number is None:
                    raise _fail(path, f"{value!r} is not a {f.enum.name} value")
                return number.number
            if n is not None:
                if not f.lo <= n <= f.hi:
                    raise _fail(path, f"{n} is out of range for a {f.type_name}")
                return n
        elif kind == _FLOAT:
            if t is float or t is int:
                return float(value)
            if t is str:
                special = _SPECIAL.get(value)
                if special is not None:
                    return special
                if _NUMBER.fullmatch(value):
                    return float(value)
        elif kind == _BOOL:
            if t is bool:
                return value
        elif kind == _ID:
            if t is str:
                return _hex_id(value, f.id_bytes, path)
        elif kind == _BYTES:
            if t is str:
                return _base64(value, path)
        raise _fail(path, f"{_kind_name(value)} ({_short(value)}) is not a valid {f.type_name}")


def _integer(value: Any, t: type) -> int | None:
    if t is int:
        return int(value)
    if t is float and value.is_integer():
        return int(value)
    if t is str and _INTEGER.fullmatch(value):
        return int(value)
    return None


def _hex_id(value: str, size: int, path: tuple[Any, ...]) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise _fail(path, f"{_short(value)} is not a hex id") from None
    if raw and len(raw) != size:
        raise _fail(path, f"{_short(value)} is not a valid id: {2 * size} hex digits expected")
    return raw


def _base64(value: str, path: tuple[Any, ...]) -> bytes:
    try:
        return base64.b64decode(value.translate(_URLSAFE) + "=" * (-len(value) % 4),
                                validate=True)
    except (binascii.Error, ValueError):
        raise _fail(path, f"{_short(value)} is not base64") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class RepeatedKey(ValueError):
    """A JSON object names one key twice (the key is args[0])."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads' object_pairs_hook: a repeated key is an error (RepeatedKey), as protobuf's
    own JSON parser says, instead of the last value silently winning."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RepeatedKey(key)
            seen.add(key)
    return obj


_ITEM_KEYS = {
    Signal.TRACES: (("resourceSpans", "resource_spans"), ("scopeSpans", "scope_spans"),
                    ("spans",)),
    Signal.LOGS: (("resourceLogs", "resource_logs"), ("scopeLogs", "scope_logs"),
                  ("logRecords", "log_records")),
    Signal.METRICS: (("resourceMetrics", "resource_metrics"), ("scopeMetrics", "scope_metrics"),
                     ("metrics",), ("gauge", "sum", "histogram", "exponentialHistogram",
                                    "exponential_histogram", "summary"),
                     ("dataPoints", "data_points")),
}


def count_items(signal: Signal, doc: Any) -> int:
    """Items in a json.loads() OTLP/JSON document, before any message is built."""
    return _count(doc, _ITEM_KEYS[signal])


def _count(node: Any, levels: tuple[tuple[str, ...], ...]) -> int:
    # what is not an array or object here is refused later, by the decoder
    keys, rest = levels[0], levels[1:]
    n = 0
    for key in keys:
        value = node.get(key) if isinstance(node, dict) else None
        children = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
        n += len(children) if not rest else sum(_count(c, rest) for c in children)
    return n


def parse(doc: Any, message: Any) -> int:
    """Fill `message` from the decoded JSON `doc`; the number of strings given U+FFFD."""
    decoder = Decoder()
    decoder.message(doc, message)
    return decoder.replaced
