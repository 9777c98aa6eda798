"""The `.proto` text ClickHouse reads OTLP requests with, generated from the installed descriptors.

ClickHouse's ProtobufSingle format needs the message schema as text. It is rendered at start-up
from the descriptors `opentelemetry-proto` carries, so it never drifts from the message classes
the receivers parse with, and it travels with each INSERT (`format_schema_source='string'`), so
the same SQL works on chDB and on a ClickHouse server.

AnyValue is recursive and ClickHouse columns are not, so the common.v1 value types are unrolled
to `ANY_VALUE_DEPTH` levels (AnyValue, AnyValue1, …). At the last level the nested array/kvlist
is declared `bytes` (wire-compatible with a message), so deeper values still parse and are
rendered from their raw bytes instead of being lost (see sql.py).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor as d

from gateway.signals import Signal

ANY_VALUE_DEPTH = 2
_LEVELLED = {"AnyValue", "ArrayValue", "KeyValueList", "KeyValue"}
_COMMON = "opentelemetry.proto.common.v1."

_SCALAR = {
    d.FieldDescriptor.TYPE_DOUBLE: "double", d.FieldDescriptor.TYPE_FLOAT: "float",
    d.FieldDescriptor.TYPE_INT64: "int64", d.FieldDescriptor.TYPE_UINT64: "uint64",
    d.FieldDescriptor.TYPE_INT32: "int32", d.FieldDescriptor.TYPE_FIXED64: "fixed64",
    d.FieldDescriptor.TYPE_FIXED32: "fixed32", d.FieldDescriptor.TYPE_BOOL: "bool",
    d.FieldDescriptor.TYPE_STRING: "string", d.FieldDescriptor.TYPE_BYTES: "bytes",
    d.FieldDescriptor.TYPE_UINT32: "uint32", d.FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    d.FieldDescriptor.TYPE_SFIXED64: "sfixed64", d.FieldDescriptor.TYPE_SINT32: "sint32",
    d.FieldDescriptor.TYPE_SINT64: "sint64",
}


def _levelled(md: Any) -> bool:
    return md.full_name.startswith(_COMMON) and md.name in _LEVELLED


def _name(md: Any, level: int) -> str:
    return f"{md.name}{level}" if _levelled(md) and level else md.name


class _Renderer:
    def __init__(self) -> None:
        self.messages: dict[str, str] = {}
        self.enums: dict[str, str] = {}

    def message(self, md: Any, level: int) -> str:
        name = _name(md, level)
        if name in self.messages:
            return name
        self.messages[name] = ""  # reserve: recursion stops here
        lines, oneofs_done = [], set()
        for f in md.fields:
            oneof = f.containing_oneof
            if oneof is not None and not oneof.name.startswith("_"):
                if oneof.name in oneofs_done:
                    continue
                oneofs_done.add(oneof.name)
                inner = " ".join(self.field(x, md, level) for x in oneof.fields)
                lines.append(f"oneof {oneof.name} {{ {inner} }}")
            else:
                lines.append(self.field(f, md, level))
        self.messages[name] = f"message {name} {{ {' '.join(lines)} }}"
        return name

    def field(self, f: Any, owner: Any, level: int) -> str:
        repeated = "repeated " if f.is_repeated else ""
        if f.message_type is not None:
            child = f.message_type
            child_level = level
            if _levelled(owner) and owner.name in ("ArrayValue", "KeyValueList"):
                child_level = level + 1  # one AnyValue level deeper
            if _levelled(owner) and owner.name == "AnyValue" and child_level + 1 >= ANY_VALUE_DEPTH \
                    and child.name in ("ArrayValue", "KeyValueList"):
                type_name = "bytes"  # the last level: keep the raw bytes of deeper values
            else:
                type_name = self.message(child, child_level)
        elif f.enum_type is not None:
            e = f.enum_type
            self.enums.setdefault(e.name, "enum {} {{ {} }}".format(
                e.name, " ".join(f"{v.name} = {v.number};" for v in e.values)))
            type_name = e.name
        else:
            type_name = _SCALAR[f.type]
        return f"{repeated}{type_name} {f.name} = {f.number};"


@cache
def schema_text(signal: Signal) -> str:
    """The `.proto` text whose top message is the signal's Export*ServiceRequest."""
    r = _Renderer()
    r.message(signal.request_type.DESCRIPTOR, 0)
    return "\n".join(['syntax = "proto3";', *r.enums.values(), *r.messages.values()])


def message_name(signal: Signal) -> str:
    return str(signal.request_type.DESCRIPTOR.name)
