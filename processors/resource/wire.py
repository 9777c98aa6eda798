"""Replace the Resource of some ResourceSpans / ResourceMetrics / ResourceLogs entries inside a
serialized Export*ServiceRequest, copying every other byte as received.

Serializing a whole 1000-span request again costs ~20 times more than editing its resources; a
resource-level edit only has to re-encode the few small Resource messages and splice them in.
All three request types keep their resource entries in field 1, and each entry its Resource in
field 1, so one walker serves every signal.
"""

from __future__ import annotations

from collections.abc import Iterator

_RESOURCE_TAG = b"\x0a"  # field 1, length-delimited


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, start of the field, start of its value, end) for each field
    in buf[start:end]; ValueError for groups or a field running past the end."""
    pos = start
    while pos < end:
        field_start = pos
        tag, pos = _varint(buf, pos)
        wire = tag & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
            value_start = pos
        elif wire == 1:
            value_start, pos = pos, pos + 8
        elif wire == 2:
            length, value_start = _varint(buf, pos)
            pos = value_start + length
        elif wire == 5:
            value_start, pos = pos, pos + 4
        else:
            raise ValueError(f"wire type {wire} is not handled")
        if pos > end:
            raise ValueError("field runs past the end of its message")
        yield tag >> 3, wire, field_start, value_start, pos
    if pos != end:
        raise ValueError("message ends inside a field")


def _entry(buf: bytes, view: memoryview, start: int, end: int,
           resource: bytes) -> list[bytes | memoryview]:
    """One resource entry's body with its Resource (every occurrence of field 1, which a
    parser would merge) replaced by `resource`, placed first; the other fields are views of
    `buf`, adjacent ones as one, so the final join is the only copy."""
    parts: list[bytes | memoryview] = [_RESOURCE_TAG, _encode_varint(len(resource)), resource]
    keep_from = keep_to = -1
    for number, _, field_start, _, field_end in _fields(buf, start, end):
        if number == 1:
            continue
        if field_start != keep_to:
            if keep_to > keep_from:
                parts.append(view[keep_from:keep_to])
            keep_from = field_start
        keep_to = field_end
    if keep_to > keep_from:
        parts.append(view[keep_from:keep_to])
    return parts


def replace_resources(raw: bytes, resources: dict[int, bytes]) -> bytes | None:
    """`raw` with the Resource of entry i replaced by the serialized `resources[i]`; None when
    the bytes are not a request this can walk (the caller serializes the message instead)."""
    view = memoryview(raw)
    out: list[bytes | memoryview] = []
    copied = index = 0
    try:
        for number, wire, field_start, value_start, field_end in _fields(raw, 0, len(raw)):
            if number != 1:
                continue
            if wire != 2:
                return None
            if index in resources:
                parts = _entry(raw, view, value_start, field_end, resources[index])
                out += [view[copied:field_start], _RESOURCE_TAG,
                        _encode_varint(sum(map(len, parts))), *parts]
                copied = field_end
            index += 1
    except (ValueError, IndexError):
        return None
    if index <= max(resources, default=-1):
        return None
    out.append(view[copied:])
    return b"".join(out)
