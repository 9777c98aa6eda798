"""The `k8s_events` receiver: Kubernetes events into a logs pipeline, each occurrence once.

An informer per watched namespace (or one for the cluster) lists and watches core/v1 events
through gateway.kube, resuming watches from the last resourceVersion and relisting after a 410.
Every event whose (uid, resourceVersion) is new goes into a send queue; a sender turns what has
gathered into one ExportLogsServiceRequest and pushes it into the pipeline, retrying with
backoff while the pipeline refuses it (RetryableError / RefusedError). Only what the pipeline
took is recorded in the checkpoint (checkpoint.py), written after every accepted batch, so a
restart, a relist or a new watch never sends an occurrence again, while a change of an event
(count 1 → 2: a new resourceVersion) is a new occurrence and is sent.

Differences from the Collector's receiver, which sends only events whose time is after its own
start: on its first start (no checkpoint) this one sends every event the API server still holds
(about the last hour), and after a restart what happened while it was down; with the
checkpoint lost (a new pod on an emptyDir) those are sent again. A crash between the pipeline's
acceptance of a batch and the checkpoint write also sends that batch again.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from prometheus_client import Counter

from gateway.component import ComponentID, Consumer, Host
from gateway.errors import ConfigError, GatewayError, PermanentError, RetryableError
from gateway.kube import resources as kr
from gateway.kube.client import KubeClient, KubeError, KubeForbidden
from gateway.kube.informer import Informer
from gateway.payload import Payload
from gateway.queue.backoff import Backoff
from gateway.queue.config import RetrySettings
from gateway.signals import Signal
from receivers.k8sevents import convert
from receivers.k8sevents.checkpoint import Checkpoint
from receivers.k8sevents.config import DEFAULT_DIRECTORY, K8sEventsConfig

log = logging.getLogger(__name__)

TRANSPORT = "http"  # what the Collector's receiver reports
MAX_BATCH = 1000  # events per request
MAX_PENDING = 100_000  # events waiting while the pipeline refuses; beyond: dropped, counted
BATCH_DELAY = 0.2  # a burst of events (a list, a rollout) gathers into one request
SHUTDOWN_FLUSH = 5.0  # seconds shutdown waits for waiting events to be taken
# seconds shutdown waits for a batch the pipeline is taking to be recorded: cancelled there, the
# batch could be in the exporter's queue and not in the checkpoint, and be sent again
CONSUME_GRACE = 30.0
RETRY = RetrySettings(initial_interval=0.5, max_interval=30.0, max_elapsed_time=0)


def checkpoint_path(cid: ComponentID, cfg: K8sEventsConfig, host: Host) -> Path:
    """`<storage extension dir>/receiver_<type>[_<name>]/checkpoint.json`, or
    `<directory>/<receiver id>.json`."""
    if cfg.storage:
        sid = ComponentID.parse(cfg.storage)
        ext = host.extensions.get(sid)
        if ext is None:
            raise ConfigError([f"receivers::{cid}::storage: extension {sid} is not configured "
                               "(add it under extensions and service::extensions)"])
        if not hasattr(ext, "directory_for"):
            raise ConfigError([f"receivers::{cid}::storage: extension {sid} is not a storage "
                               "extension (use file_storage)"])
        return Path(ext.directory_for("receiver", cid)) / "checkpoint.json"
    return Path(cfg.directory or DEFAULT_DIRECTORY) / f"{str(cid).replace('/', '_')}.json"


def slim(obj: dict) -> dict:
    """The event without managedFields (often most of its bytes), as the informer keeps it."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return obj


def identity(ev: dict) -> tuple[str, str]:
    meta = ev.get("metadata") or {}
    return str(meta.get("uid") or ""), str(meta.get("resourceVersion") or "")


class K8sEventsReceiver:
    def __init__(self, cid: ComponentID, cfg: K8sEventsConfig,
                 consumers: dict[Signal, Consumer]) -> None:
        self.id = cid
        self.cfg = cfg
        self.consumer = consumers[Signal.LOGS]
        self.checkpoint: Checkpoint | None = None
        self.client: KubeClient | None = None
        self.informers: list[Informer[dict]] = []
        self.alive: dict[str, str] = {}  # uid → resourceVersion of every event the API holds
        self._pending: collections.deque[dict] = collections.deque()
        self._queued: set[tuple[str, str]] = set()  # pending or being sent
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False  # no new batch goes to the pipeline
        self._busy = False      # a batch is with the pipeline, or being recorded
        self._saving: asyncio.Future[None] | None = None
        self._metrics: dict[str, Any] = {}

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self, host: Host) -> None:
        self._init_metrics(host)
        self.checkpoint = Checkpoint(checkpoint_path(self.id, self.cfg, host))
        await asyncio.to_thread(self.checkpoint.load)
        try:
            self.client = await KubeClient.create(self.cfg.auth_type,
                                                  context=self.cfg.context or None)
            await self._check_access(self.client)
        except BaseException:
            await self._close_client()
            raise
        namespaces: list[str | None] = list(self.cfg.namespaces) or [None]
        self.informers = [
            Informer(self.client, kr.EVENTS, namespace=ns, transform=slim, on_add=self._added,
                     on_update=self._updated, on_delete=self._deleted,
                     name=f"receivers::{self.id}: events{'/' + ns if ns else ''}")
            for ns in namespaces]
        for informer in self.informers:
            await informer.start()
        self._tasks = [asyncio.create_task(self._send_loop(), name=f"{self.id} sender"),
                       asyncio.create_task(self._prune_when_synced(), name=f"{self.id} prune")]
        log.info("receivers::%s: watching events in %s (checkpoint %s, %d events recorded)",
                 self.id, ", ".join(self.cfg.namespaces) or "all namespaces",
                 self.checkpoint.path, len(self.checkpoint.sent))

    async def _check_access(self, client: KubeClient) -> None:
        """Fail the start on what retrying cannot fix: RBAC (403) and rejected credentials
        (401). An unreachable API server is retried by the informers instead."""
        for ns in self.cfg.namespaces or [None]:
            try:
                await client.list(kr.EVENTS, namespace=ns, limit=1)
            except KubeForbidden as exc:
                raise GatewayError(f"receivers::{self.id}: {exc}") from exc
            except KubeError as exc:
                if exc.status == 401:
                    raise GatewayError(f"receivers::{self.id}: {exc}") from exc
                log.warning("receivers::%s: %s (retrying in the background)", self.id, exc)
                return

    async def shutdown(self) -> None:
        for informer in self.informers:
            await informer.stop()
        self.informers = []
        if self._tasks:
            sender, *others = self._tasks
            for task in others:
                task.cancel()
            deadline = time.monotonic() + SHUTDOWN_FLUSH
            while (self._pending or self._queued) and time.monotonic() < deadline \
                    and not sender.done():
                await asyncio.sleep(0.05)
            self._stopping = True
            hard = time.monotonic() + CONSUME_GRACE
            while self._busy and not sender.done() and time.monotonic() < hard:
                await asyncio.sleep(0.05)
            sender.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
            if self._queued:
                log.warning("receivers::%s: %d events not taken by the pipeline before "
                            "shutdown; they are sent at the next start if the API server still "
                            "has them", self.id, len(self._queued))
        await self._save()
        await self._close_client()

    async def _close_client(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    def _init_metrics(self, host: Host) -> None:
        tel, labels = host.telemetry, {"receiver": str(self.id), "transport": TRANSPORT}
        self._metrics = {
            "accepted": tel.receiver_accepted["log_records"].labels(**labels),
            "refused": tel.receiver_refused["log_records"].labels(**labels),
            "failed": tel.receiver_failed["log_records"].labels(**labels),
            "dropped": tel.metric(Counter, "otelgw_receiver_k8s_events_dropped",
                                  "Events dropped because too many waited for the pipeline "
                                  f"(more than {MAX_PENDING}); sent at the next start if the "
                                  "API server still has them.", ["receiver"]
                                  ).labels(receiver=str(self.id)),
        }

    # ---- informer callbacks ----------------------------------------------------------------

    def _added(self, _key: str, ev: dict) -> None:
        uid, rv = identity(ev)
        if not uid:
            return
        self.alive[uid] = rv
        assert self.checkpoint is not None
        if self.checkpoint.is_sent(uid, rv) or (uid, rv) in self._queued:
            return
        if len(self._pending) >= MAX_PENDING:
            self._metrics["dropped"].inc()
            return
        self._pending.append(ev)
        self._queued.add((uid, rv))
        self._wake.set()

    def _updated(self, key: str, old: dict, new: dict) -> None:
        if identity(old)[0] != identity(new)[0]:  # the name was reused by a new event
            self._deleted(key, old)
        self._added(key, new)

    def _deleted(self, _key: str, ev: dict) -> None:
        uid = identity(ev)[0]
        self.alive.pop(uid, None)
        if self.checkpoint is not None:
            self.checkpoint.forget(uid)

    async def _prune_when_synced(self) -> None:
        """Once every informer listed, drop checkpoint entries of events that are gone (expired
        while the gateway was down); later deletions are dropped as they come."""
        await asyncio.gather(*(i.wait_synced() for i in self.informers))
        assert self.checkpoint is not None
        gone = self.checkpoint.keep_only(set(self.alive))
        if gone:
            log.info("receivers::%s: %d expired events dropped from the checkpoint", self.id,
                     gone)
            await self._save()

    # ---- sending ---------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(BATCH_DELAY)
            while self._pending:
                n = min(MAX_BATCH, len(self._pending))
                await self._deliver([self._pending.popleft() for _ in range(n)])
            self._wake.clear()

    def _request(self, batch: list[dict]) -> ExportLogsServiceRequest:
        request = ExportLogsServiceRequest()
        for ev in batch:
            before = len(request.resource_logs)
            try:
                convert.add_event(request, ev)
            except Exception:  # one odd event must not hold back the others
                log.exception("receivers::%s: cannot convert event %s", self.id, identity(ev))
                del request.resource_logs[before:]
        return request

    async def _deliver(self, batch: list[dict]) -> None:
        """Push `batch` until the pipeline takes it (or refuses it as invalid), then record it."""
        backoff, reported = Backoff(RETRY), False
        while True:
            if self._stopping:
                return  # not taken, so not recorded: sent at the next start
            # built anew for every attempt: a processor may have changed the last one
            payload = Payload.from_message(Signal.LOGS, self._request(batch))
            self._busy = True
            try:
                await self.consumer.consume(payload)
            except RetryableError as exc:
                self._busy = False
                self._metrics["refused"].inc(payload.items)
                wait = exc.retry_after or backoff.next()
                if not reported:
                    log.warning("receivers::%s: %d events not taken by the pipeline (%s); "
                                "retrying", self.id, payload.items, exc)
                    reported = True
                await asyncio.sleep(wait)
                continue
            except PermanentError as exc:
                self._metrics["failed"].inc(payload.items)
                log.error("receivers::%s: %d events refused as invalid, dropped: %s", self.id,
                          payload.items, exc)
            except Exception:  # a bug downstream: keep the events, try again later
                self._busy = False
                self._metrics["refused"].inc(payload.items)
                log.exception("receivers::%s: %d events not taken after an internal error",
                              self.id, payload.items)
                await asyncio.sleep(backoff.next())
                continue
            else:
                self._metrics["accepted"].inc(payload.items)
                if reported:
                    log.info("receivers::%s: the pipeline takes events again", self.id)
            break
        try:
            self._record(batch)
            await self._save()
        finally:
            self._busy = False

    def _record(self, batch: list[dict]) -> None:
        assert self.checkpoint is not None
        for ev in batch:
            uid, rv = identity(ev)
            self._queued.discard((uid, rv))
            if uid in self.alive:  # a deleted event's entry would never be pruned
                self.checkpoint.mark(uid, rv)

    async def _save(self) -> None:
        """Write the checkpoint if it changed. The write runs as a task of its own, shielded: a
        cancelled sender does not leave a write half-way, and shutdown waits for it."""
        while self._saving is not None and not self._saving.done():
            await asyncio.shield(self._saving)
        cp = self.checkpoint
        if cp is None or not cp.dirty:
            return
        self._saving = asyncio.ensure_future(self._write(cp))
        await asyncio.shield(self._saving)

    async def _write(self, cp: Checkpoint) -> None:
        data, cp.dirty = cp.snapshot(), False
        try:
            await asyncio.to_thread(cp.write, data)
        except OSError as exc:
            cp.dirty = True
            log.error("receivers::%s: cannot write the checkpoint %s: %s (events may be sent "
                      "again after a restart)", self.id, cp.path, exc)
