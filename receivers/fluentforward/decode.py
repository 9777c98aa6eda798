"""Forward protocol v1 messages, as read off a connection by a streaming msgpack Unpacker.

    Message                  [tag, time, record, option?]
    Forward                  [tag, [[time, record], ...], option?]
    PackedForward            [tag, bin|str: msgpack stream of [time, record], option?]
    CompressedPackedForward  PackedForward with option compressed: "gzip" (concatenated members)

The mode is told by the second element, as the specification requires. `time` is an integer
(seconds) or EventTime (ext type 0: big-endian uint32 seconds, uint32 nanoseconds); Fluent Bit
also writes floats and, since 2.1 with retain_metadata_in_forward_mode, `[time, metadata]`,
which are accepted too (the metadata is dropped, as Fluentd and the Collector have no place for
it). A msgpack nil on its own is Fluentd's TCP heartbeat and carries nothing.

Anything else is a `MalformedFrame`: the connection cannot be resynchronised after it, so the
caller closes it.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgpack

_EVENT_TIME = struct.Struct(">II")
_MAX_SECONDS = (2**64 - 1) // 1_000_000_000  # time_unix_nano is a uint64


class MalformedFrame(ValueError):
    """The bytes are not a forward protocol message (or exceed a configured limit)."""


class EventTime:
    """The EventTime extension (type 0), as nanoseconds since the epoch."""

    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __str__(self) -> str:  # as a record value: RFC 3339 with nanoseconds
        seconds, nanos = divmod(self.ns, 1_000_000_000)
        stamp = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{stamp}.{nanos:09d}Z"


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0:
        if len(data) != 8:
            raise MalformedFrame(f"EventTime must hold 8 bytes, got {len(data)}")
        seconds, nanos = _EVENT_TIME.unpack(data)
        return EventTime(seconds * 1_000_000_000 + nanos)
    return msgpack.ExtType(code, data)


def unpacker(max_size: int) -> msgpack.Unpacker:
    """A streaming Unpacker holding at most `max_size` buffered bytes (one message).

    Strings keep invalid UTF-8 as surrogate escapes so that a PackedForward stream sent as a
    str (Fluentd v0.12) can be turned back into its exact bytes; text going into OTLP is
    repaired later (see convert.text)."""
    return msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", ext_hook=_ext_hook,
                            max_buffer_size=max_size, timestamp=0)


def time_ns(value: Any) -> int:
    """A forward `time` as Unix nanoseconds."""
    kind = type(value)
    if kind is EventTime:
        ns = value.ns
    elif kind is int:
        if not 0 <= value <= _MAX_SECONDS:
            raise MalformedFrame(f"time {value} is out of range")
        ns = value * 1_000_000_000
    elif kind is float:
        if not (math.isfinite(value) and 0 <= value <= _MAX_SECONDS):
            raise MalformedFrame(f"time {value} is out of range")
        seconds = int(value)
        ns = seconds * 1_000_000_000 + round((value - seconds) * 1e9)
    elif kind is list and len(value) == 2 and type(value[1]) is dict:  # Fluent Bit [time, meta]
        return time_ns(value[0])
    elif kind is msgpack.Timestamp:
        ns = value.to_unix_nano()
        if ns < 0:
            raise MalformedFrame(f"time {value} is before 1970")
    else:
        raise MalformedFrame(f"time must be an integer or EventTime, got {describe(value)}")
    return ns


def describe(value: Any) -> str:
    """A short, safe name of what was found, for error messages."""
    kind = type(value)
    if kind is msgpack.ExtType:
        return f"ext type {value.code}"
    if kind in (list, dict, str, bytes):
        return f"{kind.__name__} of {len(value)}"
    return kind.__name__ if value is not None else "nil"


_TIMES = (int, float, EventTime, msgpack.Timestamp)


@dataclass(slots=True)
class Frame:
    """One forward message: its events share the tag; `chunk` asks for an ack."""

    mode: str  # the specification's name of the carrier mode
    tag: str
    entries: Iterable[Any]  # [time, record] pairs, checked while they are converted
    chunk: str | None


def parse(message: Any, max_decompressed: int) -> Frame | None:
    """The frame a decoded msgpack object stands for; None for a heartbeat."""
    if message is None:
        return None
    if type(message) is not list or not 2 <= len(message) <= 4:
        raise MalformedFrame("a forward message is an array [tag, entries or time, ...] of "
                             f"2 to 4 elements, got {describe(message)}")
    tag = message[0]
    if type(tag) is not str:
        if type(tag) is not bytes:
            raise MalformedFrame(f"tag must be a string, got {describe(tag)}")
        tag = tag.decode("utf-8", "surrogateescape")
    second = message[1]
    kind = type(second)
    if kind in _TIMES or (kind is list and _metadata_time(second)):
        if len(message) < 3:
            raise MalformedFrame("a Message is [tag, time, record, option?]; the record is missing")
        chunk, _ = _option(message[3] if len(message) == 4 else None)
        return Frame("Message", tag, ((second, message[2]),), chunk)
    if kind is not list and kind is not bytes and kind is not str:
        raise MalformedFrame("cannot tell the mode: the second element must be a time, an array "
                             f"or a binary, got {describe(second)}")
    if len(message) > 3:
        raise MalformedFrame("a Forward or PackedForward message has at most 3 elements")
    chunk, compressed = _option(message[2] if len(message) == 3 else None)
    if kind is list:
        return Frame("Forward", tag, second, chunk)
    raw = second if kind is bytes else second.encode("utf-8", "surrogateescape")
    if compressed is not None:
        return Frame("CompressedPackedForward", tag,
                     packed_entries(_gunzip(raw, max_decompressed)), chunk)
    return Frame("PackedForward", tag, packed_entries(raw), chunk)


def _metadata_time(value: list[Any]) -> bool:
    """Fluent Bit's [time, metadata]; a Forward message's entries are arrays, never times."""
    return len(value) == 2 and type(value[0]) in _TIMES and type(value[1]) is dict


def _option(option: Any) -> tuple[str | None, str | None]:
    """(chunk, compression) from an option map; `size` is advisory and not checked."""
    if option is None:
        return None, None
    if type(option) is not dict:
        raise MalformedFrame(f"option must be a map, got {describe(option)}")
    chunk = option.get("chunk")
    if chunk is not None and type(chunk) is not str:
        raise MalformedFrame(f"option chunk must be a string, got {describe(chunk)}")
    compressed = option.get("compressed")
    if compressed in (None, "text"):
        return chunk, None
    if compressed != "gzip":
        raise MalformedFrame(f"unsupported compression {compressed!r} (only gzip is)")
    return chunk, compressed


def _gunzip(data: bytes, limit: int) -> bytes:
    """Concatenated gzip members (Fluentd compresses each event on its own), at most `limit`
    bytes once inflated."""
    out: list[bytes] = []
    total = 0
    while data:
        inflater = zlib.decompressobj(wbits=31)
        try:
            part = inflater.decompress(data, limit - total + 1)
        except zlib.error as exc:
            raise MalformedFrame(f"invalid gzip entries: {exc}") from None
        total += len(part)
        if total > limit:
            raise MalformedFrame(f"entries inflate beyond max_decompressed_size ({limit} bytes)")
        if not inflater.eof:
            raise MalformedFrame("truncated gzip entries")
        out.append(part)
        data = inflater.unused_data
    return b"".join(out)


def packed_entries(data: bytes) -> Iterator[Any]:
    """The [time, record] pairs of a packed msgpack stream; the whole stream must decode."""
    stream = unpacker(max(len(data), 1))
    stream.feed(data)
    end = 0  # where the last whole entry ended: the Unpacker consumes a partial one silently
    try:
        for entry in stream:
            end = stream.tell()
            yield entry
    except MalformedFrame:
        raise
    except (ValueError, msgpack.UnpackException) as exc:
        raise MalformedFrame(f"invalid packed entries: {exc or type(exc).__name__}") from None
    if end != len(data):
        raise MalformedFrame(f"packed entries end in a truncated event "
                             f"({len(data) - end} bytes left over)")
