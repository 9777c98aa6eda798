"""Bounds on one OTLP request, beyond the transports' byte limits.

The Collector's OTLP receiver has neither option: it bounds a request only by its size in bytes
(`max_request_body_size`, `max_recv_msg_size_mib`). Bytes alone do not bound the work: a 20 MiB
body can hold ten million empty spans (two bytes each), which a protobuf decoder turns into
~1.7 GB of messages and ClickHouse into ten million rows. So the item count is checked on the
wire, before the body is decoded.

Attribute truncation follows the transform processor's `truncate_all(attributes, limit)`: the
limit is in bytes of UTF-8, a value is cut at a character boundary (so it may end up a little
shorter), non-string values are left alone. As the SDKs' attribute limits do, strings inside
array and kvlist values are truncated too. It applies to every attribute collection of a
request: resource, scope, span, span event and link, log record, metric metadata, data point
and exemplar; names and log bodies are no attributes and are kept. It is off by default, as in
the Collector and the SDKs (what reaches ClickHouse is bounded by the request size anyway).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from gateway.config.types import ComponentConfig
from gateway.signals import Signal, resources


class OtlpLimits(ComponentConfig):
    max_items_per_request: int = Field(
        500_000, ge=0,
        description="Most spans, metric data points or log records one request may hold; a "
                    "request with more is refused whole (HTTP 400 / gRPC INVALID_ARGUMENT) "
                    "before it is decoded, and the client should send smaller batches "
                    "(0: no limit).")
    attribute_value_length_limit: int = Field(
        0, ge=0,
        description="Longest attribute string value kept, in bytes of UTF-8; longer values are "
                    "cut at a character boundary, as the transform processor's truncate_all "
                    "does, and counted in otelgw_receiver_truncated_attribute_values_total "
                    "(0: no limit).")


DEFAULT_LIMITS = OtlpLimits()


# ------------------------------------------------------------------------------ truncation

def _truncate_values(kvs: Any, limit: int) -> int:
    n = 0
    for kv in kvs:
        n += _truncate_value(kv.value, limit)
    return n


def _truncate_value(v: Any, limit: int) -> int:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        s = v.string_value
        if len(s) * 4 <= limit:  # no character takes more than 4 bytes
            return 0
        data = s.encode()
        if len(data) <= limit:
            return 0
        # a character cut in two at the end is dropped whole: "ignore" only meets it there
        v.string_value = data[:limit].decode(errors="ignore")
        return 1
    if kind == "array_value":
        return sum(_truncate_value(x, limit) for x in v.array_value.values)
    if kind == "kvlist_value":
        return _truncate_values(v.kvlist_value.values, limit)
    return 0


def _big(message: Any, limit: int) -> bool:
    """Only a message longer than the limit can hold a value longer than it: whole resources,
    scopes and items are passed over by one C call each."""
    return bool(message.ByteSize() > limit)


def _item_attributes(signal: Signal, item: Any, limit: int) -> Iterator[Any]:
    """The attribute collections of one span / log record / metric (of its big data points)."""
    yield item.attributes if signal is not Signal.METRICS else item.metadata
    if signal is Signal.TRACES:
        yield from (e.attributes for e in item.events)
        yield from (link.attributes for link in item.links)
    elif signal is Signal.METRICS:
        kind = item.WhichOneof("data")
        for dp in getattr(item, kind).data_points if kind else ():
            if not _big(dp, limit):
                continue
            yield dp.attributes
            yield from (x.filtered_attributes for x in getattr(dp, "exemplars", ()))


_SCOPES = {Signal.TRACES: ("scope_spans", "spans"), Signal.LOGS: ("scope_logs", "log_records"),
           Signal.METRICS: ("scope_metrics", "metrics")}


def truncate_attributes(signal: Signal, request: Any, limit: int) -> int:
    """Cut attribute string values to `limit` bytes in place (module doc); how many were cut."""
    if not limit:
        return 0
    scopes_field, items_field = _SCOPES[signal]
    n = 0
    for rx in resources(signal, request):
        if not _big(rx, limit):
            continue
        n += _truncate_values(rx.resource.attributes, limit)
        for sx in getattr(rx, scopes_field):
            if not _big(sx, limit):
                continue
            n += _truncate_values(sx.scope.attributes, limit)
            for item in getattr(sx, items_field):
                if _big(item, limit):
                    n += sum(_truncate_values(kvs, limit)
                             for kvs in _item_attributes(signal, item, limit))
    return n
