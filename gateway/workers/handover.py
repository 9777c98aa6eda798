"""Handing processed batches from a worker to the owner, and the answer back.

Worker side: `OwnerLink` is the worker's one connection to the owner; `HandoverExporter` ends
each of the worker's pipelines and consumes by sending the batch and waiting for the reply, so
the worker's client is answered with the owner's outcome. Owner side: `HandoverServer` accepts
the workers' connections, feeds each batch to the named exporters of its pipeline and replies
ok / refused / retryable / permanent; the same connection carries the workers' metric snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Callable
from typing import Any

from gateway.component import ComponentID, Consumer
from gateway.errors import PermanentError, RefusedError, RetryableError
from gateway.payload import Payload
from gateway.signals import Signal
from gateway.workers.frames import FrameError, read_frame, write_frame

log = logging.getLogger(__name__)

_OWNER_GONE = "the gateway's owner process is not reachable; retry"


def reply_for(exc: BaseException | None) -> dict[str, Any]:
    """An outcome as a reply header (the worker raises the same kind of error)."""
    if exc is None:
        return {"status": "ok"}
    if isinstance(exc, RefusedError):
        return {"status": "refused", "message": str(exc), "retry_after": exc.retry_after}
    if isinstance(exc, RetryableError):
        return {"status": "retryable", "message": str(exc), "retry_after": exc.retry_after}
    if isinstance(exc, PermanentError):
        return {"status": "permanent", "message": str(exc)}
    return {"status": "retryable", "message": f"internal error: {type(exc).__name__}: {exc}",
            "retry_after": None}


def raise_reply(reply: dict[str, Any]) -> None:
    status = reply.get("status")
    if status == "ok":
        return
    message = str(reply.get("message", ""))
    if status == "permanent":
        raise PermanentError(message)
    if status == "refused":
        raise RefusedError(message, retry_after=reply.get("retry_after"))
    raise RetryableError(message, retry_after=reply.get("retry_after"))


class OwnerLink:
    """A worker's connection to the owner; requests are multiplexed by id."""

    def __init__(self, path: str, worker: int, on_lost: Callable[[], None]) -> None:
        self.path = path
        self.worker = worker
        self._on_lost = on_lost
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._lost = False

    async def connect(self) -> None:
        reader, self._writer = await asyncio.open_unix_connection(self.path)
        write_frame(self._writer, {"op": "hello", "worker": self.worker, "pid": os.getpid()})
        await self._writer.drain()
        self._reader_task = asyncio.create_task(self._read(reader))

    async def ready(self) -> None:
        await self._send({"op": "ready"})

    async def send_metrics(self, families: list[Any]) -> None:
        await self._send({"op": "metrics", "families": families})

    async def handover(self, pipeline: str, exporters: list[str], payload: Payload) -> None:
        if self._lost or self._writer is None:
            raise RetryableError(_OWNER_GONE, retry_after=1.0)
        rid = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            header = {"op": "batch", "id": rid, "pipeline": pipeline, "exporters": exporters,
                      "signal": payload.signal.value, "items": payload.items}
            write_frame(self._writer, header, payload.raw)
            await self._writer.drain()
            reply = await future
        except (ConnectionError, OSError):
            raise RetryableError(_OWNER_GONE, retry_after=1.0) from None
        finally:
            self._pending.pop(rid, None)
        raise_reply(reply)

    async def _send(self, header: dict[str, Any]) -> None:
        if self._lost or self._writer is None:
            return
        try:
            write_frame(self._writer, header)
            await self._writer.drain()
        except (ConnectionError, OSError):
            self._lose()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while (frame := await read_frame(reader)) is not None:
                header, _ = frame
                future = self._pending.get(header.get("id", 0))
                if future is not None and not future.done():
                    future.set_result(header)
        except (FrameError, ConnectionError, OSError) as exc:
            log.error("worker %d: the connection to the owner broke: %s", self.worker, exc)
        self._lose()

    def _lose(self) -> None:
        if self._lost:
            return
        self._lost = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RetryableError(_OWNER_GONE, retry_after=1.0))
        self._on_lost()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task


class HandoverExporter:
    """The end of a worker's pipeline: the batch goes on in the owner, to `exporters`."""

    def __init__(self, cid: ComponentID, pipeline: str, exporters: list[str],
                 link: OwnerLink) -> None:
        self.id = cid
        self.pipeline = pipeline
        self.exporters = exporters
        self.link = link

    async def start(self, host: Any) -> None:
        pass

    async def shutdown(self) -> None:
        pass  # the batches before it flushed into consume(), which waits for its replies

    async def consume(self, payload: Payload) -> None:
        await self.link.handover(self.pipeline, self.exporters, payload)


Route = Callable[[str, tuple[str, ...]], Consumer]


class HandoverServer:
    """The owner's end: one connection per worker process."""

    def __init__(self, path: str, route: Route,
                 on_event: Callable[[int, str, dict[str, Any]], None],
                 counted: Callable[[int, Signal, int], None]) -> None:
        self.path = path
        self._route = route
        self._on_event = on_event
        self._counted = counted
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, self.path)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        """Batches being handed over are answered; then a worker still connected (it did not
        drain in time) sees the connection close."""
        if self._server is not None:
            self._server.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)
        for writer in self._writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        worker = 0
        self._writers.add(writer)
        try:
            first = await read_frame(reader)
            if first is None or first[0].get("op") != "hello":
                raise FrameError("a worker must say hello first")
            worker = int(first[0]["worker"])
            self._on_event(worker, "hello", first[0])
            while (frame := await read_frame(reader)) is not None:
                header, body = frame
                if header.get("op") == "batch":
                    task = asyncio.create_task(self._batch(worker, header, body, writer))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                else:
                    self._on_event(worker, str(header.get("op")), header)
        except (FrameError, ConnectionError, OSError, KeyError, ValueError) as exc:
            log.error("worker %d: closing its handover connection: %s", worker, exc)
        finally:
            self._writers.discard(writer)
            self._on_event(worker, "closed", {})
            writer.close()

    async def _batch(self, worker: int, header: dict[str, Any], body: bytes,
                     writer: asyncio.StreamWriter) -> None:
        error: BaseException | None = None
        try:
            signal = Signal(header["signal"])
            consumer = self._route(header["pipeline"], tuple(header["exporters"]))
            await consumer.consume(Payload(signal, body, None, int(header["items"])))
            self._counted(worker, signal, int(header["items"]))
        except Exception as exc:  # every outcome goes back to the worker's client
            error = exc
            if not isinstance(exc, (RetryableError, PermanentError)):
                log.exception("worker %d: handing over a batch failed", worker)
        if writer.is_closing():
            return  # the worker is gone; its client did not get an answer and retries
        write_frame(writer, {"id": header.get("id"), **reply_for(error)})
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
