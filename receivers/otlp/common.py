"""What both OTLP transports share: decoding a request body within the limits, pushing the
message into the pipeline, counting the outcome with the Collector's receiver metrics, and the
response messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client import Counter

from gateway.component import ComponentID, Consumer
from gateway.errors import PermanentError, RetryableError
from gateway.payload import Payload, RequestContext
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry
from receivers.otlp.decode import Decoded, decode_json, decode_protobuf
from receivers.otlp.limits import DEFAULT_LIMITS, OtlpLimits, truncate_attributes
from receivers.otlp.validate import reject_invalid

RESPONSE = {Signal.TRACES: ExportTraceServiceResponse, Signal.METRICS: ExportMetricsServiceResponse,
            Signal.LOGS: ExportLogsServiceResponse}
_REJECTED = {Signal.TRACES: "rejected_spans", Signal.METRICS: "rejected_data_points",
             Signal.LOGS: "rejected_log_records"}
_LABELS = ["receiver", "transport"]


@dataclass
class Ingest:
    """The receiver side of the consume contract, shared by the gRPC and HTTP servers."""

    id: ComponentID
    consumers: dict[Signal, Consumer]
    telemetry: SelfTelemetry
    limits: OtlpLimits = field(default=DEFAULT_LIMITS)

    def __post_init__(self) -> None:
        t = self.telemetry
        self._utf8 = t.metric(Counter, "otelgw_receiver_utf8_replacements",
                              "Invalid UTF-8 sequences in received strings, replaced with U+FFFD.",
                              _LABELS)
        self._truncated = t.metric(Counter, "otelgw_receiver_truncated_attribute_values",
                                   "Attribute values cut to attribute_value_length_limit.",
                                   _LABELS)

    def decode(self, signal: Signal, body: bytes, as_json: bool, transport: str) -> Decoded:
        """The message of a decompressed request body, for push(); its raw is None when the
        message is not the received bytes. Raises PermanentError (TooLarge, TooManyItems)."""
        decoded = (decode_json if as_json else decode_protobuf)(signal, body, self.limits)
        if decoded.utf8_replacements:
            self._utf8.labels(str(self.id), transport).inc(decoded.utf8_replacements)
        return decoded

    async def push(self, signal: Signal, decoded: Decoded, transport: str,
                   context: RequestContext) -> Any:
        """Push one request; returns the Export*ServiceResponse or raises a gateway error.

        Invalid items are dropped here and reported in partial_success; the rest go on."""
        message, raw = decoded.message, decoded.raw
        rejected, problem = reject_invalid(signal, message, raw)
        if problem:
            raw = None  # the message changed: serialize it again
        if self._truncate(signal, message, raw, transport):
            raw = None
        # `rejected` counts the spans / log records removed (0 for metrics: an untyped metric
        # holds no points), so the count stays exact without counting again
        items = decoded.items - rejected
        payload = Payload.from_message(signal, message, context, raw=raw, items=items)
        labels = {"receiver": str(self.id), "transport": transport}
        item = signal.item_name
        try:
            await self.consumers[signal].consume(payload)
        except RetryableError:
            # refused by a limit, or the store is unavailable: the client keeps the data
            self.telemetry.receiver_refused[item].labels(**labels).inc(payload.items)
            raise
        except PermanentError:
            self.telemetry.receiver_failed[item].labels(**labels).inc(payload.items)
            raise
        except Exception as exc:  # a bug downstream must not look like bad input
            self.telemetry.receiver_refused[item].labels(**labels).inc(payload.items)
            raise RetryableError(f"internal error: {type(exc).__name__}: {exc}") from exc
        self.telemetry.receiver_accepted[item].labels(**labels).inc(payload.items)
        response = RESPONSE[signal]()
        if problem:
            self.telemetry.receiver_failed[item].labels(**labels).inc(rejected)
            partial = response.partial_success
            setattr(partial, _REJECTED[signal], rejected)
            partial.error_message = problem
        return response

    def _truncate(self, signal: Signal, message: Any, raw: bytes | None, transport: str) -> int:
        limit = self.limits.attribute_value_length_limit
        if not limit or (raw is not None and len(raw) <= limit):
            return 0  # no value can be longer than the whole request
        n = truncate_attributes(signal, message, limit)
        if n:
            self._truncated.labels(str(self.id), transport).inc(n)
        return n
