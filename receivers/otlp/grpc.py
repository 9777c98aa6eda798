"""OTLP/gRPC server (grpc.aio): TraceService, MetricsService and LogsService `Export`.

Handlers take the raw request bytes (no deserializer) so the exact received bytes can travel on
to ClickHouse; gzip is handled by gRPC. Errors map as the OTLP specification says:
INVALID_ARGUMENT for undecodable data, RESOURCE_EXHAUSTED when a limit refuses it and UNAVAILABLE
when the store cannot take it, both with a google.rpc.RetryInfo saying when to retry.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from gateway.errors import PermanentError, RefusedError, RetryableError
from gateway.payload import RequestContext
from gateway.signals import Signal
from receivers.otlp.common import Ingest
from receivers.otlp.config import GrpcConfig
from receivers.otlp.decode import parse_protobuf

log = logging.getLogger(__name__)

SERVICES = {
    Signal.TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    Signal.METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
    Signal.LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
}


def _peer_ip(peer: str) -> str:
    # "ipv4:127.0.0.1:5000", "ipv6:[::1]:5000", "unix:/path"
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return ""


def _retry_details(code: int, message: str, retry_after: float) -> tuple[tuple[str, bytes], ...]:
    info = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=max(1, math.ceil(retry_after))))
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code, message=message, details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),)


class OtlpGrpcServer:
    def __init__(self, cfg: GrpcConfig, ingest: Ingest) -> None:
        self.cfg = cfg
        self.ingest = ingest
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        limit = self.cfg.max_recv_msg_size_mib * 1024 * 1024
        options = [("grpc.max_receive_message_length", limit), ("grpc.so_reuseport", 0)]
        if self.cfg.max_concurrent_streams:
            options.append(("grpc.max_concurrent_streams", self.cfg.max_concurrent_streams))
        self._server = grpc.aio.server(options=options)
        handlers = []
        for signal in self.ingest.consumers:
            method = grpc.unary_unary_rpc_method_handler(self._handler(signal))
            handlers.append(grpc.method_handlers_generic_handler(SERVICES[signal],
                                                                 {"Export": method}))
        self._server.add_generic_rpc_handlers(handlers)
        self.port = self._server.add_insecure_port(self.cfg.endpoint)
        if not self.port:
            raise OSError(f"cannot listen on {self.cfg.endpoint}")
        await self._server.start()
        log.info("receiver %s: OTLP/gRPC listening on %s (port %d)", self.ingest.id,
                 self.cfg.endpoint, self.port)

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)

    def _handler(self, signal: Signal) -> Any:
        async def export(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await self._export(signal, raw, context)

        return export

    async def _export(self, signal: Signal, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            message = parse_protobuf(signal, raw)
            response = await self.ingest.push(signal, message, raw, "grpc",
                                              self._context(context))
        except PermanentError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except RetryableError as exc:
            refused = isinstance(exc, RefusedError)
            code = grpc.StatusCode.RESOURCE_EXHAUSTED if refused else grpc.StatusCode.UNAVAILABLE
            rpc_code = code_pb2.RESOURCE_EXHAUSTED if refused else code_pb2.UNAVAILABLE
            await context.abort(code, str(exc), _retry_details(rpc_code, str(exc),
                                                                exc.retry_after or 1))
        return bytes(response.SerializeToString())

    def _context(self, context: grpc.aio.ServicerContext) -> RequestContext:
        headers: tuple[tuple[str, str], ...] = ()
        if self.cfg.include_metadata:
            headers = tuple((k.lower(), v) for k, v in (context.invocation_metadata() or ())
                            if isinstance(v, str))
        return RequestContext(client_address=_peer_ip(context.peer() or ""), headers=headers)
