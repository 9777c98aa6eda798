"""What both OTLP transports share: pushing a decoded request into the pipeline, counting the
outcome with the Collector's receiver metrics, and the response messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from gateway.component import ComponentID, Consumer
from gateway.errors import PermanentError, RefusedError, RetryableError
from gateway.payload import Payload, RequestContext
from gateway.signals import Signal
from gateway.telemetry import SelfTelemetry

RESPONSE = {Signal.TRACES: ExportTraceServiceResponse, Signal.METRICS: ExportMetricsServiceResponse,
            Signal.LOGS: ExportLogsServiceResponse}


@dataclass
class Ingest:
    """The receiver side of the consume contract, shared by the gRPC and HTTP servers."""

    id: ComponentID
    consumers: dict[Signal, Consumer]
    telemetry: SelfTelemetry

    async def push(self, signal: Signal, message: Any, raw: bytes | None, transport: str,
                   context: RequestContext) -> Any:
        """Push one request; returns the Export*ServiceResponse or raises a gateway error."""
        payload = Payload.from_message(signal, message, context, raw=raw)
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
        return RESPONSE[signal]()


__all__ = ["Ingest", "PermanentError", "RefusedError", "RetryableError", "RESPONSE"]
