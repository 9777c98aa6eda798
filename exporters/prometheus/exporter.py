"""The prometheus exporter: the pipeline's metrics served again on /metrics for scrapers.

consume() folds each batch into the accumulator and returns: it never waits for a scraper and,
as upstream, never fails a batch (points it cannot translate are dropped, logged and counted in
otelgw_exporter_prometheus_dropped_metric_points_total{reason}). A scrape takes a snapshot of
the live series in the event loop and renders it in a worker thread, so batches keep flowing
while a large exposition is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from exporters.prometheus.accumulator import Accumulator
from exporters.prometheus.config import PrometheusExporterConfig
from exporters.prometheus.exposition import Families, Naming, Renderer, negotiate
from gateway.component import ComponentID, Host
from gateway.endpoints import split_host_port
from gateway.payload import Payload

log = logging.getLogger(__name__)

_SWEEP_EVERY = 60.0  # bounds memory when nobody scrapes: series still expire
_YIELD_EVERY = 2048  # points; larger batches give the event loop a turn between resources


class PrometheusExporter:
    def __init__(self, cid: ComponentID, cfg: PrometheusExporterConfig) -> None:
        self.id = cid
        self.cfg = cfg
        self.accumulator = Accumulator(cfg.metric_expiration,
                                       cfg.resource_to_telemetry_conversion.enabled)
        self.renderer = Renderer(Naming(cfg.namespace, cfg.add_metric_suffixes,
                                        dict(cfg.const_labels)),
                                 Families(cfg.metric_expiration), cfg.send_timestamps)
        self._runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._render_lock: asyncio.Lock | None = None
        self._sent: Any = None
        self._failed: Any = None
        self._dropped: Any = None

    async def start(self, host: Host) -> None:
        labels = {"exporter": str(self.id)}
        tel = host.telemetry
        self._sent = tel.exporter_sent["metric_points"].labels(**labels)
        self._failed = tel.exporter_send_failed["metric_points"].labels(**labels)
        self._dropped = tel.metric(
            Counter, "otelgw_exporter_prometheus_dropped_metric_points",
            "Metric points the prometheus exporter did not expose, by reason.",
            ["exporter", "reason"])
        self._render_lock = asyncio.Lock()
        app = web.Application()
        app.router.add_get("/metrics", self._scrape)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host_, port = split_host_port(self.cfg.endpoint)
        tls = self.cfg.tls.context() if self.cfg.tls else None
        try:
            await web.TCPSite(runner, host_, port, ssl_context=tls).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        log.info("exporter %s serves Prometheus metrics on %s://%s/metrics", self.id,
                 "https" if tls else "http", self.cfg.endpoint)

    async def shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def consume(self, payload: Payload) -> None:
        if payload.items == 0:
            return
        try:
            await self._accumulate(payload)
        except Exception:  # a bug must not fail the batch for the other exporters
            log.exception("exporter %s could not take a batch of %d points", self.id,
                          payload.items)
            if self._failed is not None:
                self._failed.inc(payload.items)
            return
        if self._sent is not None:
            self._sent.inc(payload.items)
        self._count_dropped()

    async def _accumulate(self, payload: Payload) -> None:
        resources = payload.message.resource_metrics
        if payload.items <= _YIELD_EVERY or len(resources) == 1:
            self.accumulator.accumulate(payload.message)
            return
        # A large batch is taken a resource at a time, letting requests and scrapes in between.
        now = time.monotonic()
        for rm in resources:
            self.accumulator.add_resource(rm, now)
            await asyncio.sleep(0)

    def _count_dropped(self) -> None:
        dropped = self.accumulator.dropped
        if dropped and self._dropped is not None:
            for reason, n in dropped.items():
                self._dropped.labels(exporter=str(self.id), reason=reason).inc(n)
            dropped.clear()

    async def _scrape(self, request: web.Request) -> web.Response:
        openmetrics, content_type = negotiate(request.headers.get("Accept", ""),
                                              self.cfg.enable_open_metrics)
        series = self.accumulator.snapshot()
        assert self._render_lock is not None
        async with self._render_lock:
            body = await asyncio.to_thread(self.renderer.render, series, openmetrics)
        response = web.Response(body=body, headers={"Content-Type": content_type})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            response.enable_compression(web.ContentCoding.gzip)
        return response

    async def _sweep(self) -> None:
        interval = min(_SWEEP_EVERY, max(self.cfg.metric_expiration, 1.0))
        while True:
            await asyncio.sleep(interval)
            self.accumulator.expire()
