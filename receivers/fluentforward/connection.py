"""One forward connection: read, decode, hand to the pipeline, acknowledge in order.

Each read's complete messages become one request. Up to PIPELINE_DEPTH requests of a connection
may be in the pipeline at once (a batch processor holds each for its timeout, so waiting for
one before reading the next would cap a connection at one read per batch); beyond that nothing
is read, and the sender is slowed down by TCP. Acks go out in message order, each once the
request holding its message was taken. After a refusal no further ack is sent and the
connection is closed, so the client resends what was not acknowledged.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from receivers.fluentforward import decode
from receivers.fluentforward.config import FluentForwardConfig
from receivers.fluentforward.convert import LogsBuilder

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
PIPELINE_DEPTH = 8
# Acks are tiny; a client that lets this much pile up unread is not reading them at all.
MAX_UNSENT_ACKS = 1024 * 1024

Deliver = Callable[[LogsBuilder, str], Awaitable[bool]]
"""Pushes a read's events into the pipeline; True when taken (acks go out), False if not."""


def ack(chunk: str) -> bytes:
    """{"ack": chunk}, the response a chunk option asks for."""
    try:
        return msgpack.packb({"ack": chunk})
    except UnicodeEncodeError:  # invalid UTF-8 kept as surrogate escapes: the same str bytes
        raw = chunk.encode("utf-8", "surrogateescape")
        return msgpack.packb({"ack": raw}, use_bin_type=False)


@dataclass
class Counters:
    """The Collector's fluentforward self-metrics (children already labelled)."""

    opened: Any
    closed: Any
    events_parsed: Any
    parse_failures: Any
    records_generated: Any


@dataclass(slots=True)
class _Pending:
    delivery: asyncio.Future[bool] | None  # None: nothing to store, only acks
    chunks: list[str]


class Connection:
    def __init__(self, name: str, cfg: FluentForwardConfig, deliver: Deliver, counters: Counters,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.name, self.cfg, self.deliver, self.counters = name, cfg, deliver, counters
        self.reader, self.writer = reader, writer
        self.ip, self.peer = _peer(writer)
        self._pending: collections.deque[_Pending] = collections.deque()
        self._refused = False

    async def run(self) -> None:
        """Serves until EOF or a refusal; raises MalformedFrame, TimeoutError (idle) or a socket
        error. Cancelled (at shutdown), it stops reading. Either way it ends only once every
        delivery it started has ended and their acks are written."""
        unpacker = decode.unpacker(self.cfg.max_frame_size)
        try:
            while not self._refused:
                if len(self._pending) >= PIPELINE_DEPTH:  # read no more until the oldest ends
                    head = self._pending[0].delivery
                    if head is not None:
                        await asyncio.wait([head])
                    self._settle()
                    continue
                data = await self._read()
                if data is None:
                    continue
                if not data:
                    return
                try:
                    unpacker.feed(data)
                except msgpack.BufferFull:
                    raise decode.MalformedFrame(f"a message exceeds max_frame_size "
                                                f"({self.cfg.max_frame_size} bytes)") from None
                builder, chunks, error = self._decode(unpacker)
                self._submit(builder, chunks)
                if error is not None:
                    raise error
        finally:
            waiting = [p.delivery for p in self._pending if p.delivery is not None]
            if waiting:  # in the pipeline already: their outcome decides their acks
                await asyncio.wait(waiting)
            self._settle()

    async def _read(self) -> bytes | None:
        """The next bytes; b"" at EOF; None when idle_timeout passed while deliveries of this
        connection are still in the pipeline (the client is waiting for us, not idle)."""
        try:
            async with asyncio.timeout(self.cfg.idle_timeout or None):
                return await self.reader.read(READ_SIZE)
        except TimeoutError:
            if self._pending:
                return None
            raise

    def _decode(self, unpacker: msgpack.Unpacker
                ) -> tuple[LogsBuilder, list[str], decode.MalformedFrame | None]:
        """Every message the buffered bytes complete, as one request; the messages before a
        malformed one are kept, and the error is returned to be raised after their delivery."""
        builder = LogsBuilder(time.time_ns())
        chunks: list[str] = []
        events = 0
        error = None
        try:
            for message in unpacker:
                frame = decode.parse(message, self.cfg.max_decompressed_size)
                if frame is None:
                    continue
                try:
                    builder.add(frame.tag, frame.entries)
                except decode.MalformedFrame as exc:
                    raise decode.MalformedFrame(
                        f"{frame.mode} message with tag {frame.tag!r}: {exc}") from None
                events += 1
                if frame.chunk is not None:
                    chunks.append(frame.chunk)
        except decode.MalformedFrame as exc:
            error = exc
        except (ValueError, msgpack.UnpackException) as exc:
            reason = str(exc) or type(exc).__name__
            error = decode.MalformedFrame(f"cannot decode msgpack: {reason}")
        self.counters.events_parsed.inc(events)
        self.counters.records_generated.inc(builder.count)
        return builder, chunks, error

    def _submit(self, builder: LogsBuilder, chunks: list[str]) -> None:
        if not builder.count and not chunks:
            return
        delivery = None
        if builder.count:
            delivery = asyncio.ensure_future(self.deliver(builder, self.ip))
            delivery.add_done_callback(lambda _: self._settle())
        self._pending.append(_Pending(delivery, chunks))
        self._settle()

    def _settle(self) -> None:
        """Acks for the finished head of the queue, in order; a refusal closes the connection
        (the read sees EOF) and no later ack goes out."""
        writer = self.writer
        while self._pending:
            head = self._pending[0]
            delivery = head.delivery
            if delivery is not None and not delivery.done():
                return
            self._pending.popleft()
            taken = delivery is None or (not delivery.cancelled() and delivery.exception() is None
                                         and delivery.result())
            if not taken and not self._refused:
                self._refused = True
                writer.close()
            if head.chunks and not self._refused and not writer.is_closing():
                writer.write(b"".join(map(ack, head.chunks)))
                if writer.transport.get_write_buffer_size() > MAX_UNSENT_ACKS:
                    log.warning("receiver %s: closing the connection from %s: it does not read "
                                "its acks", self.name, self.peer)
                    writer.transport.abort()


def _peer(writer: asyncio.StreamWriter) -> tuple[str, str]:
    """(client IP — what k8sattributes associates pods by —, its name for log lines)."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        ip = str(peer[0])
        if ip.startswith("::ffff:") and "." in ip:  # IPv4 on a dual-stack socket: the pod IP
            ip = ip[len("::ffff:"):]
        return ip, (f"[{ip}]:{peer[1]}" if ":" in ip else f"{ip}:{peer[1]}")
    return "", "a unix socket client"
