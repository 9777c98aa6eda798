"""The ClickHouse exporter: hands each batch's serialized OTLP request to ClickHouse.

consume(payload) returns once ClickHouse has stored the batch, so an acknowledgement upstream
means the data is in the tables. Transient failures are retried with backoff inside the
`retry_on_failure` budget, then surface as RetryableError (the client retries); ClickHouse
refusing the data itself surfaces as PermanentError.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from exporters.clickhouse import schema
from exporters.clickhouse.config import ClickHouseConfig
from exporters.clickhouse.engines import Engine, EngineError
from exporters.clickhouse.ingest import IngestPlan, plan, schema_ddl
from gateway.component import ComponentID, Host
from gateway.errors import PermanentError, RetryableError
from gateway.payload import Payload
from gateway.signals import Signal

log = logging.getLogger(__name__)


def schema_options(cfg: ClickHouseConfig) -> schema.SchemaOptions:
    return schema.SchemaOptions(database=cfg.database, cluster=cfg.cluster_name,
                                engine=cfg.table_engine.sql(), ttl_seconds=cfg.ttl,
                                table_names=cfg.table_names())


def open_engine(cfg: ClickHouseConfig) -> Engine:
    if cfg.endpoint:
        from exporters.clickhouse.engines.server import ServerEngine

        return ServerEngine(cfg.endpoint, cfg.username, cfg.password.get_secret_value(),
                            cfg.database, cfg.compress, cfg.timeout, cfg.connection_params)
    from exporters.clickhouse.engines.embedded import EmbeddedEngine

    return EmbeddedEngine(cfg.path, insert_connections=cfg.sending_queue.num_consumers)


class ClickHouseExporter:
    def __init__(self, cid: ComponentID, cfg: ClickHouseConfig) -> None:
        self.id = cid
        self.cfg = cfg
        self.options = schema_options(cfg)
        self.engine: Engine | None = None
        self.plans: dict[Signal, IngestPlan] = {s: plan(s, self.options) for s in Signal}
        self._slots = asyncio.Semaphore(cfg.sending_queue.num_consumers)
        self._query_server: Any = None
        self._telemetry: Any = None
        self._stopping = False

    async def start(self, host: Host) -> None:
        self._telemetry = host.telemetry
        self.engine = await asyncio.to_thread(open_engine, self.cfg)
        # the endpoint may carry credentials (http://user:password@host:8123): never logged
        where = getattr(self.engine, "endpoint", "") or f"embedded store at {self.cfg.path}"
        if self.cfg.create_schema:
            try:
                for stmt in schema_ddl(self.options):
                    await asyncio.to_thread(self.engine.command, stmt)
            except BaseException:
                engine, self.engine = self.engine, None
                await asyncio.to_thread(engine.close)
                raise
        elif self.cfg.endpoint:
            where += " (connects on the first insert: create_schema is false)"
        log.info("exporter %s writes to %s (database %s)", self.id, where, self.cfg.database)
        if self.cfg.query_endpoint.enabled:
            from exporters.clickhouse.query_http import QueryServer

            self._query_server = QueryServer(self.engine, self.cfg.query_endpoint,
                                             self.cfg.database)
            await self._query_server.start()

    async def shutdown(self) -> None:
        self._stopping = True
        if self._query_server is not None:
            await self._query_server.stop()
        if self.engine is not None:
            # wait for inserts in flight before closing the store
            for _ in range(self.cfg.sending_queue.num_consumers):
                await self._slots.acquire()
            await asyncio.to_thread(self.engine.close)
            self.engine = None

    async def consume(self, payload: Payload) -> None:
        if payload.items == 0:
            return
        data = payload.raw
        item = payload.signal.item_name
        labels = {"exporter": str(self.id)}
        try:
            await self._insert_with_retry(payload.signal, data)
        except Exception:
            self._telemetry.exporter_send_failed[item].labels(**labels).inc(payload.items)
            raise
        self._telemetry.exporter_sent[item].labels(**labels).inc(payload.items)

    async def _insert_with_retry(self, signal: Signal, data: bytes) -> None:
        retry = self.cfg.retry_on_failure
        started = time.monotonic()
        interval = retry.initial_interval
        while True:
            try:
                await self._insert(signal, data)
                return
            except EngineError as exc:
                if not exc.retryable:
                    raise PermanentError(f"ClickHouse rejected the {signal.value}: {exc}") from None
                elapsed = time.monotonic() - started
                budget = retry.max_elapsed_time or float("inf")
                if not retry.enabled or self._stopping or elapsed + interval > budget:
                    raise RetryableError(f"ClickHouse insert failed: {exc}",
                                         retry_after=interval) from None
                wait = interval * (1 + retry.randomization_factor * (2 * random.random() - 1))
                log.warning("insert of %s failed, retrying in %.1fs: %s", signal.value, wait, exc)
                await asyncio.sleep(wait)
                interval = min(interval * retry.multiplier, retry.max_interval)

    async def _insert(self, signal: Signal, data: bytes) -> None:
        if self.engine is None:
            raise EngineError("exporter is not started", retryable=True)
        p = self.plans[signal]
        async with self._slots:
            started = time.perf_counter()
            await asyncio.to_thread(self.engine.insert, p.insert_sql, data, "ProtobufSingle",
                                    p.settings)
        t = self._telemetry
        t.insert_duration.labels(str(self.id), signal.value).observe(time.perf_counter() - started)
        t.insert_bytes.labels(str(self.id), signal.value).inc(len(data))
