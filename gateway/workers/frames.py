"""Frames on the owner ↔ worker socket: a small JSON header and an opaque body.

    u32 header length | u32 body length | header (JSON object) | body (bytes)

The body is the serialized OTLP request of a batch, sent as it is (no re-encoding); the header
says what it is ({"op": "batch", "id": 7, "pipeline": "traces", …}).
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

_LENGTHS = struct.Struct(">II")
MAX_HEADER = 1 << 20  # a metrics snapshot is the largest header; a corrupt length stops here
MAX_BODY = 1 << 31


class FrameError(Exception):
    """The other side sent something that is not a frame."""


async def read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, or None at the end of the stream."""
    try:
        head = await reader.readexactly(_LENGTHS.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("the stream ended inside a frame") from None
        return None
    hlen, blen = _LENGTHS.unpack(head)
    if hlen > MAX_HEADER or blen > MAX_BODY:
        raise FrameError(f"frame lengths out of range ({hlen}, {blen})")
    try:
        header = json.loads(await reader.readexactly(hlen))
        body = await reader.readexactly(blen) if blen else b""
    except asyncio.IncompleteReadError:
        raise FrameError("the stream ended inside a frame") from None
    except ValueError as exc:
        raise FrameError(f"invalid frame header: {exc}") from None
    if not isinstance(header, dict):
        raise FrameError("a frame header must be a JSON object")
    return header, body


def write_frame(writer: asyncio.StreamWriter, header: dict[str, Any], body: bytes = b"") -> None:
    encoded = json.dumps(header, separators=(",", ":")).encode()
    writer.write(_LENGTHS.pack(len(encoded), len(body)) + encoded)
    if body:
        writer.write(body)
