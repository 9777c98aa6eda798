"""Request bodies to OTLP messages: decompression with limits, protobuf and OTLP/JSON decoding.

OTLP/JSON differs from protobuf's canonical JSON mapping in one way that matters here: trace and
span ids are hex strings, not base64. Everything else (lowerCamelCase or original field names,
int64 as strings or numbers, enums as integers) protobuf's json_format accepts as is; unknown
fields are ignored as the OTLP specification requires.
"""

from __future__ import annotations

import base64
import io
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
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    try:
        if encoding in ("gzip", "x-gzip"):
            return _zlib(body, zlib.MAX_WBITS | 16, limit)
        if encoding == "deflate":
            try:
                return _zlib(body, zlib.MAX_WBITS, limit)
            except zlib.error:
                return _zlib(body, -zlib.MAX_WBITS, limit)  # raw deflate, as some clients send
        if encoding == "zstd":
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body))
            out = reader.read(limit + 1)
            if len(out) > limit:
                raise TooLarge
            return out
    except (zlib.error, zstandard.ZstdError, EOFError) as exc:
        raise PermanentError(f"cannot decompress the {encoding} body: {exc}") from None
    raise PermanentError(f"unsupported Content-Encoding {encoding!r} "
                         "(supported: gzip, deflate, zstd, identity)")


def _zlib(body: bytes, wbits: int, limit: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = d.decompress(body, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise TooLarge
    out += d.flush()
    if len(out) > limit:
        raise TooLarge
    if not d.eof:
        raise zlib.error("the compressed stream is truncated")
    return out


def parse_protobuf(signal: Signal, body: bytes) -> Any:
    try:
        return signal.request_type.FromString(body)
    except DecodeError as exc:
        raise PermanentError(f"cannot decode the body as a protobuf "
                             f"{signal.request_type.DESCRIPTOR.name}: {exc}") from None


_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids(obj: Any, path: str) -> None:
    """Rewrite OTLP/JSON hex ids to the base64 protobuf's JSON mapping expects, in place."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    obj[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise PermanentError(f"{path}.{key}: {value!r} is not a hex id") from None
            elif isinstance(value, (dict, list)):
                _hex_ids(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            _hex_ids(value, f"{path}[{i}]")


def parse_json(signal: Signal, body: bytes) -> Any:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PermanentError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PermanentError("the JSON body must be an object")
    _hex_ids(doc, "$")
    message = signal.request_type()
    try:
        json_format.ParseDict(doc, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise PermanentError(f"the JSON body is not a valid OTLP "
                             f"{signal.request_type.DESCRIPTOR.name}: {exc}") from None
    return message


def to_json(message: Any) -> bytes:
    return json_format.MessageToJson(message, indent=None).encode()
