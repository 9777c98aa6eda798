"""The ClickHouse exporter: hands each batch's serialized OTLP request to ClickHouse.

With `sending_queue` on (the default) consume() returns once the batch is in the exporter's
write-ahead log on disk (gateway/queue): consumers insert it, retry transient failures and drop
it from the log only once ClickHouse stored it; a batch ClickHouse refuses as invalid goes to the
dead-letter directory. With the queue off consume() returns once ClickHouse has stored the batch:
transient failures are retried inside the `retry_on_failure` budget, then surface as
RetryableError (the client retries); ClickHouse refusing the data itself surfaces as
PermanentError.

Every INSERT carries an `insert_deduplication_token`: the batch's id, the same for every attempt
(kept in the log across restarts), and the tables keep a deduplication window
(schema.DEDUP_WINDOW), so a retry of an insert that did land (a timeout, a crash before the log
recorded it) is stored once. With `sending_queue::batch` the queue merges queued batches into
one INSERT (an INSERT has a large fixed cost: ClickHouse plans the flattening views on each);
the merged INSERT's token is kept in the log with its members, so it too is the same for every
attempt, before and after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from exporters.clickhouse import k8sevents, schema
from exporters.clickhouse.config import ClickHouseConfig
from exporters.clickhouse.engines import INPUT_CODES, Engine, EngineError, code_of
from exporters.clickhouse.ingest import EMBEDDED_INSERT_SETTINGS, IngestPlan, plan, schema_ddl
from gateway.component import ComponentID, Host
from gateway.errors import ConfigError, PermanentError, RetryableError
from gateway.payload import Payload
from gateway.queue.backoff import Backoff
from gateway.queue.durable import Batch, DurableQueue
from gateway.signals import Signal

log = logging.getLogger(__name__)


def open_engine(cfg: ClickHouseConfig) -> Engine:
    if cfg.endpoint:
        from exporters.clickhouse.engines.server import ServerEngine

        return ServerEngine(cfg.endpoint, cfg.username, cfg.password.get_secret_value(),
                            cfg.database, cfg.compress, cfg.timeout, cfg.connection_params)
    from exporters.clickhouse.engines.embedded import EmbeddedEngine

    return EmbeddedEngine(cfg.path, insert_connections=cfg.sending_queue.num_consumers,
                          insert_settings=EMBEDDED_INSERT_SETTINGS)


def _input_refused(exc: EngineError) -> bool:
    """ClickHouse refused the INSERT while reading its input: nothing of it was stored."""
    return not exc.retryable and code_of(str(exc)) in INPUT_CODES


def _refused(signal: Signal, exc: EngineError) -> PermanentError:
    return PermanentError(f"ClickHouse rejected the {signal.value}: {exc}",
                          stored_in_part=not _input_refused(exc))


def new_token() -> str:
    """The id of a batch sent without the queue, for all its attempts (as the queue's records)."""
    return os.urandom(16).hex()


def queue_directory(cid: ComponentID, cfg: ClickHouseConfig, host: Host) -> Path:
    """Where the sending queue lives: a storage extension's directory, `directory`, or by
    default `<path>/queue/<exporter id>`."""
    q = cfg.sending_queue
    if q.storage:
        sid = ComponentID.parse(q.storage)
        ext = host.extensions.get(sid)
        if ext is None:
            raise ConfigError([f"exporters::{cid}::sending_queue::storage: extension {sid} is "
                               "not configured (add it under extensions and service::"
                               "extensions)"])
        if not hasattr(ext, "directory_for"):
            raise ConfigError([f"exporters::{cid}::sending_queue::storage: extension {sid} is "
                               "not a storage extension (use file_storage)"])
        return Path(ext.directory_for("exporter", cid))
    if q.directory:
        return Path(q.directory)
    return Path(cfg.path) / "queue" / str(cid).replace("/", "_")


def _canonical(signal: Signal, data: bytes) -> bytes | None:
    """`data` re-encoded by upb without unknown fields, or None when upb cannot read it."""
    try:
        message = signal.request_type.FromString(data)
    except Exception:  # noqa: BLE001 - the insert's own error is the one to report
        return None
    message.DiscardUnknownFields()
    return bytes(message.SerializeToString())


class ClickHouseExporter:
    def __init__(self, cid: ComponentID, cfg: ClickHouseConfig) -> None:
        self.id = cid
        self.cfg = cfg
        self.options = cfg.schema_options()
        self.engine: Engine | None = None
        self.plans: dict[Signal, IngestPlan] = {s: plan(s, self.options) for s in Signal}
        self.queue: DurableQueue | None = None
        self._slots = asyncio.Semaphore(cfg.sending_queue.num_consumers)
        self._query_server: Any = None
        self._telemetry: Any = None
        self._stopping = False

    async def start(self, host: Host) -> None:
        self._telemetry = host.telemetry
        directory = queue_directory(self.id, self.cfg, host) if self.cfg.sending_queue.enabled \
            else None
        self.engine = await asyncio.to_thread(open_engine, self.cfg)
        # the endpoint may carry credentials (http://user:password@host:8123): never logged
        where = getattr(self.engine, "endpoint", "") or f"embedded store at {self.cfg.path}"
        try:
            if self.cfg.create_schema:
                await self._check_layout()
                for stmt in schema_ddl(self.options, self.cfg.aggregations):
                    await asyncio.to_thread(self.engine.command, stmt)
                await self._drop_stale_views()
                await self._check_deduplication()
            elif self.cfg.endpoint:
                where += " (connects on the first insert: create_schema is false)"
            if directory is not None:
                self.queue = DurableQueue(str(self.id), directory, self.cfg.sending_queue,
                                          self.cfg.retry_on_failure, self._export, host.telemetry,
                                          store_sync=self.engine.store_sync())
                await self.queue.start()
            log.info("exporter %s writes to %s (database %s)%s", self.id, where,
                     self.cfg.database,
                     f", sending queue at {directory} (fsync: {self.cfg.sending_queue.fsync.value})"
                     if directory is not None else ", no sending queue")
            if self.cfg.query_endpoint.enabled:
                from exporters.clickhouse.query_http import QueryServer

                self._query_server = QueryServer(self.engine, self.cfg.query_endpoint,
                                                 self.cfg.database)
                await self._query_server.start()
        except BaseException:
            await self.shutdown()
            raise

    async def _check_layout(self) -> None:
        """A distributed layout over a database that still holds single-node tables under the
        reader names: CREATE … IF NOT EXISTS would keep them and every row would stay on the
        node that took the INSERT. Stop instead."""
        assert self.engine is not None
        keys = [t.key for t in (*schema.DEDUPLICATED, schema.K8S_EVENTS)]
        sql = schema.misplaced_tables_query(self.options, keys)
        if sql is None:
            return
        rows = (await asyncio.to_thread(self.engine.query, sql, "TSV")).decode().splitlines()
        if rows:
            found = ", ".join(r.replace("\t", " (", 1) + ")" for r in rows)
            raise ConfigError([f"exporters::{self.id}::distributed: database "
                               f"{self.cfg.database} holds tables that are not Distributed "
                               f"under the reader names: {found}; move them first "
                               "(docs/scaling.md, step 5)"])

    async def _drop_stale_views(self) -> None:
        """The k8s_events view watches otel_logs, which every otelgw version writes: a view of an
        earlier definition would copy every event a second time. Drop those."""
        assert self.engine is not None
        out = await asyncio.to_thread(self.engine.query, k8sevents.stale_views_query(self.options),
                                      "TSV")
        for name in out.decode().split():
            cluster = f" {self.options.on_cluster}" if self.options.on_cluster else ""
            log.info("exporter %s: dropping %s (an earlier definition of the k8s_events view)",
                     self.id, name)
            await asyncio.to_thread(self.engine.command, f"DROP VIEW IF EXISTS "
                                    f"{schema.quote(self.cfg.database)}.{schema.quote(name)}"
                                    f"{cluster}")

    async def _check_deduplication(self) -> None:
        """Tables created before otelgw set a deduplication window keep none: say so once."""
        assert self.engine is not None
        names = ", ".join(schema.literal(self.options.local_name(t.key))
                          for t in schema.DEDUPLICATED)
        sql = (f"SELECT name FROM system.tables WHERE database = "
               f"{schema.literal(self.cfg.database)} AND "
               f"name IN ({names}) AND engine IN ('MergeTree', 'ReplacingMergeTree') AND NOT "
               "match(engine_full, 'non_replicated_deduplication_window = [1-9]') FORMAT TSV")
        try:
            out = await asyncio.to_thread(self.engine.query, sql, "TSV")
        except EngineError as exc:
            log.debug("cannot check the deduplication window: %s", exc)
            return
        tables = out.decode().split()
        if tables:
            log.warning("exporter %s: tables %s keep no deduplication window, so a retried "
                        "insert can be stored twice; fix with ALTER TABLE … MODIFY SETTING "
                        "non_replicated_deduplication_window = %d", self.id, ", ".join(tables),
                        schema.DEDUP_WINDOW)

    async def shutdown(self) -> None:
        self._stopping = True
        if self._query_server is not None:
            await self._query_server.stop()
            self._query_server = None
        if self.queue is not None:
            await self.queue.shutdown()
        if self.engine is not None:
            # wait for inserts in flight before closing the store
            for _ in range(self.cfg.sending_queue.num_consumers):
                await self._slots.acquire()
            await asyncio.to_thread(self.engine.close)
            self.engine = None

    async def consume(self, payload: Payload) -> None:
        if payload.items == 0:
            return
        if self.queue is not None:
            await self.queue.put(payload.signal, payload.items, payload.raw)
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

    async def _export(self, batch: Batch) -> None:
        """One attempt for the queue: PermanentError when ClickHouse refuses the data."""
        try:
            await self._insert(batch.signal, batch.data, batch.token)
        except EngineError as exc:
            if not exc.retryable:
                raise _refused(batch.signal, exc) from None
            raise

    async def _insert_with_retry(self, signal: Signal, data: bytes) -> None:
        retry = self.cfg.retry_on_failure
        token = new_token()
        started = time.monotonic()
        backoff = Backoff(retry)
        while True:
            try:
                await self._insert(signal, data, token)
                return
            except EngineError as exc:
                if not exc.retryable:
                    raise _refused(signal, exc) from None
                wait = backoff.next()
                elapsed = time.monotonic() - started
                budget = retry.max_elapsed_time or float("inf")
                if not retry.enabled or self._stopping or elapsed + wait > budget:
                    raise RetryableError(f"ClickHouse insert failed: {exc}",
                                         retry_after=backoff.interval) from None
                log.warning("insert of %s failed, retrying in %.1fs: %s", signal.value, wait, exc)
                await asyncio.sleep(wait)

    async def _insert(self, signal: Signal, data: bytes, token: str) -> None:
        if self.engine is None:
            raise EngineError("exporter is not started", retryable=True)
        p = self.plans[signal]
        settings = {**p.settings, "insert_deduplication_token": token}
        async with self._slots:
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self.engine.insert, p.insert_sql, data, "ProtobufSingle",
                                        settings)
            except EngineError as exc:
                # upb takes encodings ClickHouse's Protobuf reader refuses (a known field with
                # another wire type, unknown groups, 64-bit varints in int32 fields): the batch
                # as upb understood it, re-encoded, goes in instead. Only after a refusal of the
                # input: after a view's, rows may be stored already.
                canonical = await asyncio.to_thread(_canonical, signal, data) \
                    if _input_refused(exc) else None
                if canonical is None or canonical == data:
                    raise
                log.warning("exporter %s: ClickHouse refused a %s batch as sent (%s); "
                            "inserting it re-encoded", self.id, signal.value, exc)
                await asyncio.to_thread(self.engine.insert, p.insert_sql, canonical,
                                        "ProtobufSingle", settings)
        t = self._telemetry
        t.insert_duration.labels(str(self.id), signal.value).observe(time.perf_counter() - started)
        t.insert_bytes.labels(str(self.id), signal.value).inc(len(data))
