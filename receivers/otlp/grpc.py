"""OTLP/gRPC server (grpc.aio): TraceService, MetricsService and LogsService `Export`.

Handlers take the raw request bytes (no deserializer) so the exact received bytes can travel on
to ClickHouse; gzip is handled by gRPC. Errors map as the OTLP specification says:
INVALID_ARGUMENT for undecodable data, RESOURCE_EXHAUSTED when a limit refuses it and UNAVAILABLE
when the store cannot take it, both with a google.rpc.RetryInfo saying when to retry.

Credentials (`auth`) and the listener's concurrency limit are checked by an interceptor, before
the request message is read: a refused call is answered by a client-streaming handler that never
reads its stream (a unary handler would first receive the whole message). TLS: receivers/otlp/tls.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from gateway.errors import PermanentError, RefusedError, RetryableError
from gateway.payload import RequestContext
from gateway.signals import Signal
from gateway.workers import shared_ports
from receivers.otlp.auth import RETRY_AFTER, InFlight, denied_counter, describe
from receivers.otlp.common import Ingest
from receivers.otlp.config import GrpcConfig
from receivers.otlp.tls import ServerTls

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
    # the Go exporters read the status details; the Python SDK reads the RetryInfo trailer
    return (("grpc-status-details-bin", status.SerializeToString()),
            ("google.rpc.retryinfo-bin", info.SerializeToString()))


def _refusal(code: grpc.StatusCode, message: str,
             trailers: tuple[tuple[str, bytes], ...] = ()) -> grpc.RpcMethodHandler:
    async def refuse(_requests: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message, trailers)

    return grpc.stream_unary_rpc_method_handler(refuse)


class _Gate(grpc.aio.ServerInterceptor):
    """Credentials, then the listener's concurrency limit, before anything is read."""

    def __init__(self, server: OtlpGrpcServer) -> None:
        self.auth = server.authenticator
        self.inflight = server.inflight
        self.denied = server.denied

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        if self.auth is not None:
            metadata = details.invocation_metadata or ()  # type: ignore[attr-defined]
            headers = {k.lower(): v for k, v in metadata if isinstance(v, str)}
            try:
                self.auth.authenticate(headers)
            except PermissionError as exc:
                self.denied("unauthenticated")
                return _refusal(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if self.inflight.limit:
            task = asyncio.current_task()  # grpc.aio runs each call in a task of its own
            if not self.inflight.try_acquire():
                self.denied("concurrency_limit")
                message = (f"too many concurrent requests on this listener (limit "
                           f"{self.inflight.limit}); retry later")
                return _refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, message, _retry_details(
                    code_pb2.RESOURCE_EXHAUSTED, message, RETRY_AFTER))
            if task is not None:
                task.add_done_callback(self.inflight.release)
            else:  # pragma: no cover - not how grpc.aio calls interceptors
                self.inflight.release()
        return await continuation(details)


class OtlpGrpcServer:
    def __init__(self, cfg: GrpcConfig, ingest: Ingest, authenticator: Any = None) -> None:
        self.cfg = cfg
        self.ingest = ingest
        self.authenticator = authenticator
        self.inflight = InFlight(cfg.max_concurrent_requests)
        self._server: grpc.aio.Server | None = None
        self.port = 0
        self._denied = denied_counter(ingest.telemetry)

    def denied(self, reason: str) -> None:
        self._denied.labels(str(self.ingest.id), "grpc", reason).inc()

    async def start(self) -> None:
        limit = self.cfg.max_recv_msg_size_mib * 1024 * 1024
        # gRPC sets SO_REUSEPORT by default, which would let a second gateway bind our port
        # without an error; only the processes of one gateway (--workers) share it
        options = [("grpc.max_receive_message_length", limit),
                   ("grpc.so_reuseport", 1 if shared_ports() else 0)]
        if self.cfg.max_concurrent_streams:
            options.append(("grpc.max_concurrent_streams", self.cfg.max_concurrent_streams))
        credentials = None
        if self.cfg.tls is not None:
            where = f"receivers::{self.ingest.id}::protocols::grpc::tls"
            credentials = ServerTls(self.cfg.tls, where).grpc_credentials()
            if self.cfg.tls.max_version == "1.2":
                log.warning("%s::max_version: not enforced: grpc.aio negotiates TLS 1.3 with "
                            "clients that offer it", where)
        gated = self.authenticator is not None or self.inflight.limit
        self._server = grpc.aio.server(options=options,
                                       interceptors=[_Gate(self)] if gated else None)
        handlers = []
        for signal in self.ingest.consumers:
            method = grpc.unary_unary_rpc_method_handler(self._handler(signal))
            handlers.append(grpc.method_handlers_generic_handler(SERVICES[signal],
                                                                 {"Export": method}))
        self._server.add_generic_rpc_handlers(handlers)
        try:  # grpcio answers a port in use with 0 or, since 1.5x, RuntimeError
            if credentials is None:
                self.port = self._server.add_insecure_port(self.cfg.endpoint)
            else:
                self.port = self._server.add_secure_port(self.cfg.endpoint, credentials)
        except RuntimeError:
            self.port = 0
        if not self.port:
            raise OSError(f"cannot listen on {self.cfg.endpoint}: the port is in use (another "
                          "gateway?) or the address is not one of this host's")
        await self._server.start()
        log.info("receiver %s: OTLP/gRPC listening on %s (port %d, %s)", self.ingest.id,
                 self.cfg.endpoint, self.port, describe(self.cfg.tls, self.cfg.auth))

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)

    def _handler(self, signal: Signal) -> Any:
        async def export(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await self._export(signal, raw, context)

        return export

    async def _export(self, signal: Signal, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            decoded = self.ingest.decode(signal, raw, False, "grpc")
            response = await self.ingest.push(signal, decoded, "grpc", self._context(context))
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
