"""Request bodies to OTLP messages: decompression with limits, protobuf and OTLP/JSON decoding.

OTLP/JSON differs from protobuf's canonical JSON mapping in one way that matters here: trace and
span ids are hex strings, not base64. Everything else (lowerCamelCase or original field names,
int64 as strings or numbers, enums as integers) protobuf's json_format accepts as is; unknown
fields are ignored as the OTLP specification requires.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import zstandard
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from gateway.errors import PermanentError
from gateway.signals import Signal


class TooLarge(Exception):
    """The body (or what it decompresses to) is over the limit."""


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Decode a Content-Encoding, refusing (TooLarge) output over `limit` before producing it all.

    Several gzip members or zstd frames in a row are one body (as Go's readers read them);
    a truncated stream or bytes after the last member are an error, never a silently shorter body.
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    try:
        if encoding in ("gzip", "x-gzip"):
            return _zlib(body, zlib.MAX_WBITS | 16, limit, several=True)
        if encoding == "deflate":
            # RFC 9110 deflate is the zlib format; some clients send raw deflate: tell by the header
            zlib_header = (len(body) >= 2 and body[0] & 0x0F == 8
                           and (body[0] << 8 | body[1]) % 31 == 0)
            return _zlib(body, zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS, limit,
                         several=False)
        if encoding == "zstd":
            return _zstd(body, limit)
    except (zlib.error, zstandard.ZstdError, EOFError) as exc:
        raise PermanentError(f"cannot decompress the {encoding} body: {exc}") from None
    raise PermanentError(f"unsupported Content-Encoding {encoding!r} "
                         "(supported: gzip, deflate, zstd, identity)")


def _zlib(body: bytes, wbits: int, limit: int, several: bool) -> bytes:
    out = bytearray()
    data = memoryview(body)
    while True:
        d = zlib.decompressobj(wbits)
        out += d.decompress(data, limit + 1 - len(out))
        if len(out) > limit or d.unconsumed_tail:
            raise TooLarge
        if not d.eof:
            raise zlib.error("the compressed stream is truncated")
        rest = d.unused_data
        if not rest:
            return bytes(out)
        if not several:
            raise zlib.error(f"{len(rest)} unexpected bytes after the end of the stream")
        data = memoryview(rest)


# zstd expands at most ~32768x (a 4-byte RLE block stands for 128 KiB), so feeding the
# input in slices of limit/32768 bytes bounds what one call can produce to about the limit.
_ZSTD_RATIO = 1 << 15


def _zstd(body: bytes, limit: int) -> bytes:
    if not body:
        raise zstandard.ZstdError("the body is empty")
    out = bytearray()
    data = memoryview(body)
    step = max(64, min(1 << 16, limit // _ZSTD_RATIO))
    pos = 0
    while pos < len(data):  # one frame per round
        d = zstandard.ZstdDecompressor().decompressobj()
        while pos < len(data) and not d.eof:
            out += d.decompress(data[pos:pos + step])
            pos += step
            if len(out) > limit:
                raise TooLarge
        if not d.eof:
            raise zstandard.ZstdError("the compressed stream is truncated")
        pos = min(pos, len(data)) - len(d.unused_data)  # the next frame starts there
    return bytes(out)


def parse_protobuf(signal: Signal, body: bytes) -> Any:
    try:
        return signal.request_type.FromString(body)
    except DecodeError as exc:
        raise PermanentError(f"cannot decode the body as a protobuf "
                             f"{signal.request_type.DESCRIPTOR.name}: {exc}") from None


# OTLP/JSON id fields and their length in bytes (an empty string means "no id")
_ID_BYTES = {"traceId": 16, "trace_id": 16, "spanId": 8, "span_id": 8,
             "parentSpanId": 8, "parent_span_id": 8}


def _hex_ids(obj: Any, path: str) -> None:
    """Rewrite OTLP/JSON hex ids to the base64 protobuf's JSON mapping expects, in place."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            size = _ID_BYTES.get(key)
            if size is not None and isinstance(value, str):
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raise PermanentError(f"{path}.{key}: {value!r} is not a hex id") from None
                if raw and len(raw) != size:
                    raise PermanentError(f"{path}.{key}: {value!r} is not a valid id: "
                                         f"{2 * size} hex digits expected") from None
                obj[key] = base64.b64encode(raw).decode()
            elif isinstance(value, (dict, list)):
                _hex_ids(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            _hex_ids(value, f"{path}[{i}]")


def parse_json(signal: Signal, body: bytes) -> Any:
    name = signal.request_type.DESCRIPTOR.name
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PermanentError(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise PermanentError("the JSON body is nested too deeply") from None
    if not isinstance(doc, dict):
        raise PermanentError("the JSON body must be an object")
    message = signal.request_type()
    try:
        _hex_ids(doc, "$")
        json_format.ParseDict(doc, message, ignore_unknown_fields=True)
    except RecursionError:
        raise PermanentError(f"the JSON body is nested too deeply for an OTLP {name}") from None
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise PermanentError(f"the JSON body is not a valid OTLP {name}: {exc}") from None
    return message


def to_json(message: Any) -> bytes:
    return json_format.MessageToJson(message, indent=None).encode()
