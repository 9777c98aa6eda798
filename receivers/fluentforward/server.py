"""The forward protocol listener: TCP (or a Unix socket) for events, UDP for heartbeats.

Connections (connection.py) decode, deliver and acknowledge. A connection that sends something
that is not a forward message, a message larger than max_frame_size, or nothing for
idle_timeout is closed with a log line (the gateway's log sampler rate-limits repeats); the
messages decoded before the bad one are still delivered, and no other connection notices. One
connection beyond max_connections is closed as soon as it is accepted. Handshake (shared_key /
user auth) and TLS are not supported, as in the Collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from gateway.endpoints import split_host_port
from gateway.workers import shared_ports
from receivers.fluentforward import decode
from receivers.fluentforward.config import FluentForwardConfig, unix_path
from receivers.fluentforward.connection import READ_SIZE, Connection, Counters, Deliver

log = logging.getLogger(__name__)


class _Heartbeat(asyncio.DatagramProtocol):
    """Answers each datagram with one byte: Fluentd's out_forward sends 0x00 and waits for a
    reply (Fluentd answers 0x00, the Collector echoes the byte; so do we)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data:
            self.transport.sendto(data[:1], addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("fluentforward heartbeat: %s", exc)


class ForwardServer:
    def __init__(self, name: str, cfg: FluentForwardConfig, deliver: Deliver,
                 counters: Counters) -> None:
        self.name = name
        self.cfg = cfg
        self.deliver = deliver
        self.counters = counters
        self._server: asyncio.AbstractServer | None = None
        self._udp: list[asyncio.BaseTransport] = []
        self._conns: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.port = 0

    async def start(self) -> None:
        path = unix_path(self.cfg.endpoint)
        if path is not None:
            self._server = await asyncio.start_unix_server(self._serve, path, limit=READ_SIZE)
            log.info("receiver %s: Fluent forward listening on unix socket %s", self.name, path)
            return
        host, port = split_host_port(self.cfg.endpoint)
        shared = shared_ports() or None  # --workers: the gateway's processes share the port
        self._server = await asyncio.start_server(self._serve, host, port, limit=READ_SIZE,
                                                  reuse_port=shared)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            if self.cfg.udp_heartbeat:
                loop = asyncio.get_running_loop()
                for sock in self._server.sockets:  # the addresses TCP bound, on the same port
                    transport, _ = await loop.create_datagram_endpoint(
                        _Heartbeat, local_addr=sock.getsockname()[:2], family=sock.family,
                        reuse_port=shared)
                    self._udp.append(transport)
        except BaseException:
            await self.stop(0)
            raise
        log.info("receiver %s: Fluent forward listening on %s (port %d, UDP heartbeat %s)",
                 self.name, self.cfg.endpoint, self.port,
                 "on" if self.cfg.udp_heartbeat else "off")

    async def stop(self, grace: float = 10.0) -> None:
        """Stops accepting and reading; events already in the pipeline are still answered
        (acks out) within `grace` seconds, then the connections close."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for transport in self._udp:
            transport.close()
        tasks = list(self._conns)
        for task in tasks:
            task.cancel()  # a connection ends its deliveries before it returns
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        path = unix_path(self.cfg.endpoint)
        if path is not None and self._server is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self.name, self.cfg, self.deliver, self.counters, reader, writer)
        if len(self._conns) >= self.cfg.max_connections or self._closing:
            log.warning("receiver %s: refusing a connection from %s: max_connections (%d) "
                        "are open", self.name, conn.peer, self.cfg.max_connections)
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self.counters.opened.inc()
        try:
            await conn.run()
        except decode.MalformedFrame as exc:
            self.counters.parse_failures.inc()
            log.warning("receiver %s: closing the connection from %s: %s", self.name, conn.peer,
                        exc)
        except TimeoutError:
            log.info("receiver %s: closing the connection from %s: idle for %gs (idle_timeout)",
                     self.name, conn.peer, self.cfg.idle_timeout)
        except OSError as exc:
            log.debug("receiver %s: connection from %s: %s", self.name, conn.peer, exc)
        except asyncio.CancelledError:
            if not self._closing:
                raise
        except Exception:  # a bug must cost one connection, never the listener
            log.exception("receiver %s: closing the connection from %s after an internal error",
                          self.name, conn.peer)
        finally:
            self._conns.discard(task)
            self.counters.closed.inc()
            writer.close()
