"""Batches requests: byte concatenation of serialized requests, no per-item work.

Two serialized requests of the same type, concatenated, parse as one request holding both, so a
batch is the concatenation of its members' bytes. Each caller waits for the batch it joined to be
exported and gets that batch's outcome: an acknowledgement upstream means the data was taken by
the exporters (stored, or durably queued), never merely buffered here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.component import ComponentID, Consumer, Host
from gateway.payload import Payload
from gateway.signals import Signal
from gateway.split import split_request
from processors.batch.config import BatchConfig

log = logging.getLogger(__name__)


class _Batch:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.parts: list[bytes] = []
        self.items = 0
        self.done: asyncio.Future[None] = loop.create_future()


class BatchProcessor:
    def __init__(self, cid: ComponentID, cfg: BatchConfig, signal: Signal, nxt: Consumer) -> None:
        self.id = cid
        self.cfg = cfg
        self.signal = signal
        self.next = nxt
        self._batch: _Batch | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._telemetry: Any = None

    async def start(self, host: Host) -> None:
        self._telemetry = host.telemetry

    async def consume(self, payload: Payload) -> None:
        limit = self.cfg.send_batch_max_size
        if limit and payload.items > limit:
            parts = [Payload.from_message(self.signal, m)
                     for m in split_request(self.signal, payload.message, limit)]
            await asyncio.gather(*(self._add(p) for p in parts))
            return
        await self._add(payload)

    async def _add(self, payload: Payload) -> None:
        if payload.items == 0:
            return
        limit = self.cfg.send_batch_max_size
        if self._batch is not None and limit and self._batch.items + payload.items > limit:
            self._flush("size")
        if self._batch is None:
            self._batch = _Batch(asyncio.get_running_loop())
            if self.cfg.timeout > 0:
                self._timer = asyncio.get_running_loop().call_later(
                    self.cfg.timeout, self._flush, "timeout")
        batch = self._batch
        batch.parts.append(payload.raw)
        batch.items += payload.items
        if self.cfg.timeout == 0 or batch.items >= self.cfg.send_batch_size:
            self._flush("size")
        await asyncio.shield(batch.done)

    def _flush(self, trigger: str) -> None:
        batch, self._batch = self._batch, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if batch is None or not batch.items:
            return
        if self._telemetry is not None:
            labels = {"processor": str(self.id)}
            (self._telemetry.batch_size_trigger if trigger == "size"
             else self._telemetry.batch_timeout_trigger).labels(**labels).inc()
            self._telemetry.batch_send_size.labels(**labels).observe(batch.items)
        task = asyncio.get_running_loop().create_task(self._export(batch))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _export(self, batch: _Batch) -> None:
        merged = Payload(self.signal, b"".join(batch.parts), None, batch.items)
        try:
            await self.next.consume(merged)
        except Exception as exc:  # handed to every waiter of this batch
            if not batch.done.done():
                batch.done.set_exception(exc)
            batch.done.exception()  # mark retrieved: waiters may have gone (client cancelled)
        else:
            if not batch.done.done():
                batch.done.set_result(None)

    async def shutdown(self) -> None:
        self._flush("timeout")
        while self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
