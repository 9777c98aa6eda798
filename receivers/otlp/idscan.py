"""Proof that every trace/span id of a request has a valid length, without a Python step per item.

Reading three ids of each span through upb costs ~0.5 µs a span, the receiver's largest Python
cost per span after the parse itself. Here upb does the per-item work instead: the body is read a
second time as a "view" of the request that knows only the items' id fields (everything else
becomes unknown fields and is discarded), each scope's items are serialized again (upb writes
fields in number order, empty ids not at all), and one regular expression, run in C, accepts
exactly the encodings of items whose ids are all valid and that have no links: the length byte of
each alternative is the sum of its fields, so the match follows the real item boundaries.

A match proves the request valid. Anything else (an invalid id, a span with links, an encoding
the expression does not know) says nothing: validate.py then checks the items one by one and
names the offenders, as before.
"""

from __future__ import annotations

import itertools
import re
from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from gateway.signals import Signal

# the path from the request to the items, and each item's id fields with their valid lengths
# (0: "no id"); a span's links are kept in the view so that a span with links does not match
_ITEMS = {
    Signal.TRACES: (("resource_spans", "scope_spans", "spans"),
                    (("trace_id", 16), ("span_id", 8), ("parent_span_id", 8)), ("links",)),
    Signal.LOGS: (("resource_logs", "scope_logs", "log_records"),
                  (("trace_id", 16), ("span_id", 8)), ()),
}

_F = descriptor_pb2.FieldDescriptorProto


def _levels(signal: Signal) -> tuple[list[tuple[str, int]], Any]:
    """(name, number) of each field from the request down to the items; the item descriptor."""
    desc = signal.request_type.DESCRIPTOR
    levels = []
    for name in _ITEMS[signal][0]:
        field = desc.fields_by_name[name]
        levels.append((name, field.number))
        desc = field.message_type
    return levels, desc


def _view_file(signal: Signal) -> descriptor_pb2.FileDescriptorProto:
    """request → resources → scopes → items, with the field numbers of the OTLP messages."""
    _, ids, extra = _ITEMS[signal]
    levels, item_desc = _levels(signal)
    package = f"otelgw.idscan.{signal.value}"
    view = descriptor_pb2.FileDescriptorProto(name=f"otelgw_idscan_{signal.value}.proto",
                                              package=package, syntax="proto3")
    item = view.message_type.add(name="Item")
    for name, _ in ids:
        item.field.add(name=name, number=item_desc.fields_by_name[name].number,
                       type=_F.TYPE_BYTES, label=_F.LABEL_OPTIONAL)
    for name in extra:  # any value of it makes the item's encoding longer: no match
        item.field.add(name=name, number=item_desc.fields_by_name[name].number,
                       type=_F.TYPE_BYTES, label=_F.LABEL_REPEATED)
    child = "Item"
    for depth, (name, number) in reversed(list(enumerate(levels))):
        parent = "Request" if depth == 0 else f"Level{depth}"
        message = view.message_type.add(name=parent)
        message.field.add(name=name, number=number, type=_F.TYPE_MESSAGE,
                          label=_F.LABEL_REPEATED, type_name=f".{package}.{child}")
        child = parent
    return view


def _key(number: int) -> bytes:
    key = number << 3 | 2  # length-delimited
    assert key < 0x80, "a one-byte key"
    return bytes([key])


def _pattern(signal: Signal) -> re.Pattern[bytes]:
    """Items whose ids are all absent or of their valid lengths, one after another: the item's
    key, then one alternative per set of ids present (all of them first, the common case)."""
    levels, item_desc = _levels(signal)
    fields = [(_key(item_desc.fields_by_name[name].number), size)
              for name, size in _ITEMS[signal][1]]
    alternatives = []
    for present in itertools.product((True, False), repeat=len(fields)):
        chosen = [(key, size) for (key, size), there in zip(fields, present) if there]
        length = sum(2 + size for _, size in chosen)
        assert length < 0x80, "a one-byte length"
        alternatives.append(re.escape(bytes([length])) + b"".join(
            re.escape(key + bytes([size])) + b".{%d}" % size for key, size in chosen))
    item = re.escape(_key(levels[-1][1])) + b"(?:" + b"|".join(alternatives) + b")"
    # possessive: an item boundary, once found, is the only one (no backtracking into it)
    return re.compile(b"(?:" + item + b")*+", re.DOTALL)


@cache
def _scanner(signal: Signal) -> tuple[type[Any], re.Pattern[bytes]]:
    pool = descriptor_pool.DescriptorPool()  # a pool of its own: no clash with the real types
    view = _view_file(signal)
    pool.Add(view)
    request = message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{view.package}.Request"))
    return request, _pattern(signal)


def all_ids_valid(signal: Signal, raw: bytes) -> bool:
    """True when every item of the serialized request `raw` has ids of valid lengths (and, for
    spans, no links); False when that is not known (module doc)."""
    if signal not in _ITEMS:
        return False
    request_class, valid = _scanner(signal)
    try:
        view = request_class.FromString(raw)
    except DecodeError:
        return False
    view.DiscardUnknownFields()
    resources_name, scopes_name, _ = _ITEMS[signal][0]
    fullmatch = valid.fullmatch
    for resource in getattr(view, resources_name):
        for scope in getattr(resource, scopes_name):
            if fullmatch(scope.SerializeToString()) is None:
                return False
    return True
