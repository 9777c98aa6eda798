"""OTLP/HTTP server (aiohttp): POST /v1/traces, /v1/metrics, /v1/logs.

Status codes as the OTLP specification says: 200 with an Export*ServiceResponse (partial_success
when items were rejected); 400 with a google.rpc.Status that says what is wrong; 413 over the body
limit, checked on the wire and again after decompression; 415 for other content types; 405 for
other methods; 429 / 503 with Retry-After when the gateway cannot take the data now. The response
uses the request's encoding (protobuf or JSON).

Before the body is read: a CORS preflight is answered; then the credentials are checked (`auth`:
401 with WWW-Authenticate) and the listener's concurrency limit (429 with Retry-After). TLS:
receivers/otlp/tls.
"""

from __future__ import annotations

import asyncio
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from google.rpc import code_pb2, status_pb2

from gateway.endpoints import split_host_port
from gateway.errors import PermanentError, RefusedError, RetryableError
from gateway.payload import RequestContext
from gateway.signals import Signal
from gateway.workers import shared_ports
from receivers.otlp.auth import RETRY_AFTER, InFlight, denied_counter, describe
from receivers.otlp.common import Ingest
from receivers.otlp.config import HttpConfig
from receivers.otlp.decode import TooLarge, decompress, to_json
from receivers.otlp.tls import ServerTls

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_PROTOBUF_TYPES = {PROTOBUF, "application/protobuf"}
# OTLP/JSON is decoded in Python, ~33 ms per 1000 spans: on the event loop that would stall every
# other connection for as long. Larger JSON bodies are decoded on a thread of their own (one:
# the work holds the GIL anyway), so the loop waits at most a GIL switch interval for its turn.
_JSON_ON_LOOP_BYTES = 32 * 1024
_json_decoder = ThreadPoolExecutor(1, thread_name_prefix="otlp-json")


class OtlpHttpServer:
    def __init__(self, cfg: HttpConfig, ingest: Ingest, authenticator: Any = None) -> None:
        self.cfg = cfg
        self.ingest = ingest
        self.authenticator = authenticator
        self.inflight = InFlight(cfg.max_concurrent_requests)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._denied = denied_counter(ingest.telemetry)

    async def start(self) -> None:
        app = web.Application(client_max_size=self.cfg.max_request_body_size)
        paths = {Signal.TRACES: self.cfg.traces_url_path, Signal.METRICS: self.cfg.metrics_url_path,
                 Signal.LOGS: self.cfg.logs_url_path}
        for signal in self.ingest.consumers:
            app.router.add_route("*", paths[signal], self._handler(signal))
        # auto_decompress off: decompress() decodes the body itself, with the size limit
        # applied to its output and truncated streams refused (aiohttp would decode gzip,
        # deflate and zstd itself, and the body would be decompressed twice)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     auto_decompress=False)
        await self._runner.setup()
        host, port = split_host_port(self.cfg.endpoint)
        context = None
        if self.cfg.tls is not None:
            where = f"receivers::{self.ingest.id}::protocols::http::tls"
            context = ServerTls(self.cfg.tls, where).ssl_context(["http/1.1"])
        site = web.TCPSite(self._runner, host, port, reuse_address=True, ssl_context=context,
                           reuse_port=shared_ports() or None)  # --workers: one port, N processes
        await site.start()
        server = site._server  # noqa: SLF001 - the bound port when 0 was asked for
        self.port = server.sockets[0].getsockname()[1] if server and server.sockets else port
        log.info("receiver %s: OTLP/HTTP listening on %s:%d (%s; %s)", self.ingest.id, host,
                 self.port, ", ".join(paths[s] for s in self.ingest.consumers),
                 describe(self.cfg.tls, self.cfg.auth))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _handler(self, signal: Signal) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(signal, request)

        return handle

    async def _handle(self, signal: Signal, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS" and self.cfg.cors is not None:
            return self._preflight(request)
        if self.authenticator is not None:
            refused = self._authenticate(request)
            if refused is not None:
                return refused
        if not self.inflight.try_acquire():
            self._denied.labels(str(self.ingest.id), "http", "concurrency_limit").inc()
            resp = self._status(429, code_pb2.RESOURCE_EXHAUSTED,
                                f"too many concurrent requests on this listener (limit "
                                f"{self.inflight.limit}); retry later", _is_json(request))
            resp.headers["Retry-After"] = str(RETRY_AFTER)
            resp.headers.update(self._cors(request))
            return resp
        try:
            return await self._serve(signal, request)
        finally:
            self.inflight.release()

    def _authenticate(self, request: web.Request) -> web.Response | None:
        """None when the request may go on, else the 401 to answer."""
        assert self.authenticator is not None
        headers: Any = request.headers
        params = self.cfg.auth.request_params if self.cfg.auth is not None else []
        if params:
            headers = {}
            for k, v in request.headers.items():
                headers.setdefault(k.lower(), v)  # the first of repeated headers, as Go's Get
            headers.update((p.lower(), request.query[p]) for p in params if p in request.query)
        try:
            self.authenticator.authenticate(headers)
            return None
        except PermissionError as exc:
            self._denied.labels(str(self.ingest.id), "http", "unauthenticated").inc()
            resp = self._status(401, code_pb2.UNAUTHENTICATED, str(exc), _is_json(request))
            resp.headers["WWW-Authenticate"] = getattr(self.authenticator, "challenge", "Bearer")
            resp.headers.update(self._cors(request))  # a browser client may read the refusal
            return resp

    async def _serve(self, signal: Signal, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405, text="405 method not allowed, supported: [POST]",
                                headers={"Allow": "POST"})
        ctype = request.content_type.lower()
        if ctype not in _PROTOBUF_TYPES and ctype != JSON:
            return web.Response(status=415, text=f"415 unsupported media type {ctype!r}, "
                                f"supported: [{JSON}, {PROTOBUF}]")
        as_json = ctype == JSON
        limit = self.cfg.max_request_body_size
        if request.content_length is not None and request.content_length > limit:
            return self._status(413, code_pb2.INVALID_ARGUMENT,
                                f"request body of {request.content_length} bytes is over the "
                                f"limit of {limit} bytes", as_json)
        try:
            body = await _read_body(request, limit)
            body = decompress(body, request.headers.get("Content-Encoding", ""), limit)
            if as_json and len(body) > _JSON_ON_LOOP_BYTES:
                decoded = await asyncio.get_running_loop().run_in_executor(
                    _json_decoder, self.ingest.decode, signal, body, True, "http")
            else:
                decoded = self.ingest.decode(signal, body, as_json, "http")
            response = await self.ingest.push(signal, decoded, "http", self._context(request))
        except web.HTTPRequestEntityTooLarge:
            return self._status(413, code_pb2.INVALID_ARGUMENT,
                                f"request body is over the limit of {limit} bytes", as_json)
        except ConnectionError:  # the client left before its body was in: no one to answer
            log.debug("receiver %s: client closed the connection mid-body", self.ingest.id)
            return web.Response(status=400, text="the request body was cut short")
        except TooLarge:
            return self._status(413, code_pb2.INVALID_ARGUMENT,
                                f"decompressed body is over the limit of {limit} bytes", as_json)
        except PermanentError as exc:
            return self._status(400, code_pb2.INVALID_ARGUMENT, str(exc), as_json)
        except RetryableError as exc:
            http_status = 429 if isinstance(exc, RefusedError) else 503
            grpc_code = code_pb2.RESOURCE_EXHAUSTED if http_status == 429 else code_pb2.UNAVAILABLE
            resp = self._status(http_status, grpc_code, str(exc), as_json)
            resp.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after or 1)))
            return resp
        body_out = to_json(response) if as_json else response.SerializeToString()
        return web.Response(body=body_out, content_type=JSON if as_json else PROTOBUF,
                            headers=self._cors(request))

    def _context(self, request: web.Request) -> RequestContext:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        headers: tuple[tuple[str, str], ...] = ()
        if self.cfg.include_metadata:
            headers = tuple((k.lower(), v) for k, v in request.headers.items())
        return RequestContext(client_address=peer[0] if peer else "", headers=headers)

    def _status(self, http_status: int, code: int, message: str, as_json: bool) -> web.Response:
        status = status_pb2.Status(code=code, message=message)
        if as_json:
            return web.Response(status=http_status, body=to_json(status), content_type=JSON)
        return web.Response(status=http_status, body=status.SerializeToString(),
                            content_type=PROTOBUF)

    def _cors(self, request: web.Request) -> dict[str, str]:
        cors = self.cfg.cors
        origin = request.headers.get("Origin")
        if cors is None or not origin:
            return {}
        if "*" in cors.allowed_origins or origin in cors.allowed_origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return {}

    def _preflight(self, request: web.Request) -> web.Response:
        headers = self._cors(request)
        if not headers:
            return web.Response(status=403)
        assert self.cfg.cors is not None
        headers["Access-Control-Allow-Methods"] = "POST"
        allowed = ["Content-Type", "Content-Encoding", *self.cfg.cors.allowed_headers]
        headers["Access-Control-Allow-Headers"] = ", ".join(allowed)
        if self.cfg.cors.max_age:
            headers["Access-Control-Max-Age"] = str(self.cfg.cors.max_age)
        return web.Response(status=204, headers=headers)


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, as request.read() reads it, without its two copies (into a growing
    bytearray, then into bytes): for a body of a few hundred KiB each copy touches fresh pages,
    ~0.1 ms of the event loop per request; one chunk is passed on as it is."""
    content = request.content
    if hasattr(content, "set_read_chunk_size"):  # aiohttp >= 3.14; as read() does
        content.set_read_chunk_size(limit)
    chunks = []
    size = 0
    while chunk := await content.readany():
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _is_json(request: web.Request) -> bool:
    return request.content_type.lower() == JSON
