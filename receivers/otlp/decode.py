"""Request bodies (decompressed by compression.py) to OTLP messages: protobuf and OTLP/JSON.

Everything a client can send ends in a message or in a PermanentError (HTTP 400 /
INVALID_ARGUMENT, with a message that says what is wrong; TooLarge: 413). Work and memory are
bounded before the expensive step: the number of items is counted on the wire before upb builds
them (limits.py), and messages nest at most 100 levels deep, upb's decoding limit.

Normalizations, where the Collector would store what it was given:
- Invalid UTF-8 in a string (protobuf strings must be UTF-8; upb refuses the whole request, the
  Collector's decoder does not check and stores the bytes): each maximal invalid sequence becomes
  U+FFFD, as Go's encoding/json does when it reads such a JSON string, and the rest of the request
  is stored (`decode_protobuf`; counted in otelgw_receiver_utf8_replacements_total). In OTLP/JSON
  invalid UTF-8 and unpaired surrogate escapes (\\ud800) are replaced the same way.
- A JSON object with a repeated key is refused (400), as protobuf's own JSON parser does; pdata
  would append repeated arrays and keep the last scalar, which no client means to send.

OTLP/JSON is read by otlpjson.py (what it accepts is written there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from gateway.errors import PermanentError
from gateway.signals import Signal, count_items
from receivers.otlp import otlpjson, wire
# the transports import the decoding of Content-Encoding from here too
from receivers.otlp.compression import MAX_MEMBERS, TooLarge, decompress  # noqa: F401
from receivers.otlp.limits import DEFAULT_LIMITS, OtlpLimits


class TooManyItems(PermanentError):
    """The request holds more items than `max_items_per_request`."""


# ---------------------------------------------------------------------------- protobuf


@dataclass
class Decoded:
    message: Any
    raw: bytes | None          # the serialized message, when it is exactly what was received
    items: int                 # spans, data points or log records in `message`
    utf8_replacements: int = 0


def _check_items(signal: Signal, n: int, limits: OtlpLimits, counted: str = "") -> None:
    """`counted`: how many were counted, when the count stopped short."""
    limit = limits.max_items_per_request
    if limit and n > limit:
        raise TooManyItems(f"the request holds {counted or n} "
                           f"{signal.item_name.replace('_', ' ')}, "
                           f"over the limit of {limit} per request (max_items_per_request); "
                           "send smaller batches")


def _precount(signal: Signal, body: bytes, limits: OtlpLimits) -> None:
    """Refuse a request with too many items before upb builds them. Every item takes at least
    two bytes, so a small body needs no look."""
    limit = limits.max_items_per_request
    if not limit or len(body) // 2 <= limit:
        return
    try:
        n = wire.count_items(signal, body, limit)
    except wire.WireError:
        return  # malformed: upb says what is wrong (and the items are counted after it)
    if n > limit:
        _check_items(signal, n, limits, f"more than {limit}")


def _parse(signal: Signal, body: bytes) -> Any:
    return signal.request_type.FromString(body)


def _decode_error(signal: Signal, exc: DecodeError) -> PermanentError:
    name = signal.request_type.DESCRIPTOR.name
    text = str(exc)
    if "MaxDepth" in text:
        text = (f"messages are nested more than {wire.MAX_DEPTH} levels deep (an AnyValue "
                "array or kvlist inside another, ~45 times over)")
    elif "bad UTF-8" in text:
        text = "a string field is not valid UTF-8"
    else:
        text = text.split("': ", 1)[-1] if text.startswith("Error parsing message") else text
    return PermanentError(f"cannot decode the body as a protobuf {name}: {text}")


def decode_protobuf(signal: Signal, body: bytes, limits: OtlpLimits = DEFAULT_LIMITS) -> Decoded:
    """Decode a protobuf Export*ServiceRequest; invalid UTF-8 in strings is replaced (module doc),
    and then `raw` is None: the received bytes are not the message any more."""
    _precount(signal, body, limits)
    try:
        message = _parse(signal, body)
        raw, replaced = body, 0
    except DecodeError as exc:
        if "bad UTF-8" not in str(exc):
            raise _decode_error(signal, exc) from None
        try:
            fixed, replaced = wire.repair_utf8(signal.request_type, body)
            message = _parse(signal, fixed)
        except (wire.WireError, DecodeError):
            raise _decode_error(signal, exc) from None
        raw = None
    # the wire count can stop short of a body upb reads differently; this one cannot
    items = count_items(signal, message)
    _check_items(signal, items, limits)
    return Decoded(message, raw, items, replaced)


def parse_protobuf(signal: Signal, body: bytes, limits: OtlpLimits = DEFAULT_LIMITS) -> Any:
    """The request in `body`, exactly: a string that is not UTF-8 is an error here, since the
    caller passes `body` on as the serialized message (decode_protobuf repairs it)."""
    _precount(signal, body, limits)
    try:
        message = _parse(signal, body)
    except DecodeError as exc:
        raise _decode_error(signal, exc) from None
    _check_items(signal, count_items(signal, message), limits)
    return message


# ---------------------------------------------------------------------------- OTLP/JSON

def decode_json(signal: Signal, body: bytes, limits: OtlpLimits = DEFAULT_LIMITS) -> Decoded:
    name = signal.request_type.DESCRIPTOR.name
    replaced = 0
    try:
        text = body.decode()
    except UnicodeDecodeError:
        text = body.decode(errors="replace")
        replaced = text.count("\ufffd") - body.count(b"\xef\xbf\xbd")
    text = text.removeprefix("\ufeff")
    try:
        doc = json.loads(text, object_pairs_hook=otlpjson.unique_keys)
    except otlpjson.RepeatedKey as exc:
        raise PermanentError(f"the JSON body repeats the key {exc.args[0]!r} in one object") \
            from None
    except ValueError as exc:
        raise PermanentError(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise PermanentError("the JSON body is nested too deeply") from None
    if not isinstance(doc, dict):
        raise PermanentError("the JSON body must be an object")
    _check_items(signal, otlpjson.count_items(signal, doc), limits)
    message = signal.request_type()
    try:
        replaced += otlpjson.parse(doc, message)
    except otlpjson.JsonError as exc:
        raise PermanentError(f"the JSON body is not a valid OTLP {name}: {exc}") from None
    return Decoded(message, None, count_items(signal, message), replaced)


def parse_json(signal: Signal, body: bytes, limits: OtlpLimits = DEFAULT_LIMITS) -> Any:
    return decode_json(signal, body, limits).message


def to_json(message: Any) -> bytes:
    return json_format.MessageToJson(message, indent=None).encode()
