"""The `prometheus` receiver component: discovery → targets → scrape loops → the pipeline.

One `ScrapePool` per scrape config runs its discoverers and keeps one loop per target, as
Prometheus's scrape manager does: groups from the discoverers are combined (a group replaces the
previous one with the same source), turned into targets, and loops start for new targets and
stop for vanished ones (whose series are marked stale two intervals later).

Every scrape's Transaction becomes one ExportMetricsServiceRequest (adjusted start times, one
ResourceMetrics per job/instance) pushed to the pipeline in a task of its own, so a slow or
refusing pipeline never delays the next scrape. A refusal (memory limit, full queue, store down)
is retried with backoff until the target's next scrape is due; then the points are counted in
otelcol_receiver_refused_metric_points_total and the loss is logged.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import ssl
import time
from typing import Any

from prometheus_client import Counter, Gauge

from gateway.component import ComponentID, Consumer, Host
from gateway.errors import GatewayError, PermanentError, RetryableError
from gateway.payload import Payload
from gateway.signals import Signal, count_items
from receivers.prometheus.adjust import (
    AdjustError,
    InitialPointAdjuster,
    StartTimeMetricAdjuster,
    gc_interval,
)
from receivers.prometheus.config import PrometheusReceiverConfig, ScrapeConfig
from receivers.prometheus.convert import Transaction, to_request
from receivers.prometheus.discovery import TargetGroup
from receivers.prometheus.discovery.file import FileDiscoverer
from receivers.prometheus.discovery.static import StaticDiscoverer
from receivers.prometheus.httpconfig import HTTPClient
from receivers.prometheus.scrape import (
    LoopOptions,
    ScrapeLoop,
    ScrapeResult,
    Target,
    discovered_labels,
    offset_seed,
    populate_labels,
)

log = logging.getLogger(__name__)

TRANSPORT = "http"  # what the Collector's prometheus receiver reports
_SYNC_THROTTLE = 1.0  # seconds between two target syncs of a pool (Prometheus: 5s)


def _version() -> str:
    try:
        return importlib.metadata.version("otelgw")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


VERSION = _version()


class ScrapePool:
    """One scrape config: its discoverers, its targets, their loops."""

    def __init__(self, cfg: ScrapeConfig, receiver: PrometheusReceiver) -> None:
        self.cfg = cfg
        self.receiver = receiver
        try:
            self.client = HTTPClient(cfg, user_agent=f"otelgw/{VERSION}")
        except (OSError, ssl.SSLError) as exc:
            raise GatewayError(f"prometheus receiver, job {cfg.job_name}: cannot set up TLS "
                               f"from tls_config: {exc}") from None
        self.groups: dict[tuple[int, str], TargetGroup] = {}
        self.loops: dict[int, ScrapeLoop] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping: set[asyncio.Task[Any]] = set()
        self._dirty = asyncio.Event()
        self._failures: set[str] = set()

    def _discoverers(self) -> list[Any]:
        out: list[Any] = []
        if self.cfg.static_configs:
            out.append(StaticDiscoverer(self.cfg.static_configs))
        out.extend(FileDiscoverer(fc, self.cfg.job_name) for fc in self.cfg.file_sd_configs)
        if self.cfg.kubernetes_sd_configs:
            from receivers.prometheus.discovery.kubernetes import KubernetesDiscoverer

            out.extend(KubernetesDiscoverer(kc, self.cfg.job_name)  # type: ignore[call-arg]
                       for kc in self.cfg.kubernetes_sd_configs)
        return out

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for i, disc in enumerate(self._discoverers()):
            self._tasks.append(loop.create_task(self._discover(i, disc),
                                                name=f"discovery {self.cfg.job_name}#{i}"))
        self._tasks.append(loop.create_task(self._sync_forever(),
                                            name=f"targets {self.cfg.job_name}"))

    async def _discover(self, index: int, disc: Any) -> None:
        def send(groups: list[TargetGroup]) -> None:
            for g in groups:
                if g.targets:
                    self.groups[(index, g.source)] = g
                else:
                    self.groups.pop((index, g.source), None)
            self._dirty.set()

        while True:
            try:
                await disc.run(send)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a discoverer that fails is restarted, never fatal
                log.error("service discovery for job %s failed, retrying in 10s: %s",
                          self.cfg.job_name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
                await asyncio.sleep(10)

    async def _sync_forever(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.05)  # let one refresh's several groups arrive together
            self._dirty.clear()
            try:
                self.sync()
            except Exception:  # keep the current targets; the next update tries again
                log.exception("job %s: updating the targets failed", self.cfg.job_name)
            await asyncio.sleep(_SYNC_THROTTLE)

    def targets(self) -> dict[int, Target]:
        out: dict[int, Target] = {}
        failures: set[str] = set()
        for (_, source), group in sorted(self.groups.items()):
            for i, tlabels in enumerate(group.targets):
                discovered = discovered_labels(self.cfg, tlabels, group.labels)
                try:
                    labels = populate_labels(self.cfg, discovered)
                except ValueError as exc:
                    failures.add(f"instance {i} in group {source}: {exc}")
                    continue
                if labels is not None:
                    t = Target(labels, discovered, self.cfg.params)
                    out.setdefault(t.hash, t)
        for msg in sorted(failures - self._failures):
            log.warning("job %s: cannot create target: %s", self.cfg.job_name, msg)
        self._failures = failures
        return out

    def sync(self) -> None:
        wanted = self.targets()
        for h, loop in list(self.loops.items()):
            if h not in wanted:
                del self.loops[h]
                self._stop_loop(h, loop)
            else:
                loop.target.discovered = wanted[h].discovered
        for h, target in wanted.items():
            if h not in self.loops:
                loop = ScrapeLoop(target, self.receiver.loop_options(self))
                self.loops[h] = loop
                loop.start()
        self._apply_target_limit()
        self.receiver.targets_gauge(self.cfg.job_name, len(self.loops))

    def _apply_target_limit(self) -> None:
        limit = self.cfg.target_limit or 0
        error = None
        if limit and len(self.loops) > limit:
            error = f"target_limit exceeded (number of targets: {len(self.loops)}, limit: {limit})"
            log.warning("job %s: %s", self.cfg.job_name, error)
        for loop in self.loops.values():
            loop.forced_error = error

    def _stop_loop(self, h: int, loop: ScrapeLoop) -> None:
        task = asyncio.get_running_loop().create_task(
            loop.stop(staleness=lambda: h not in self.loops))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        task.add_done_callback(lambda _: None if h in self.loops
                               else self.receiver.forget_target(loop.target))

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in list(self._stopping):
            task.cancel()
        loops = list(self.loops.values())
        self.loops.clear()
        await asyncio.gather(*(loop.cancel() for loop in loops), *self._tasks,
                             *self._stopping, return_exceptions=True)
        await self.client.close()


class PrometheusReceiver:
    def __init__(self, cid: ComponentID, cfg: PrometheusReceiverConfig,
                 consumers: dict[Signal, Consumer]) -> None:
        self.id = cid
        self.cfg = cfg
        self.consumer = consumers.get(Signal.METRICS)
        self.pools: list[ScrapePool] = []
        self._pushes: set[asyncio.Task[None]] = set()
        self._telemetry: Any = None
        self._m: dict[str, Any] = {}
        prom = cfg.config
        longest = max([prom.global_.scrape_interval,
                       *(sc.scrape_interval or 0 for sc in prom.scrape_configs)])
        every = gc_interval(longest)
        self.adjuster: Any = (StartTimeMetricAdjuster(cfg.start_time_metric_regex, every)
                              if cfg.use_start_time_metric else InitialPointAdjuster(every))
        self.seed = offset_seed(prom.global_.external_labels)

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self, host: Host) -> None:
        self._telemetry = host.telemetry
        self._self_metrics()
        prom = self.cfg.config
        if not prom.scrape_configs:
            log.warning("receiver %s: no scrape_configs: nothing to scrape", self.id)
        for sc in prom.scrape_configs:
            if "PrometheusProto" in (sc.scrape_protocols or []):
                log.warning("job %s: scrape_protocols lists PrometheusProto, which otelgw does "
                            "not parse; the text formats are asked for instead", sc.job_name)
            pool = ScrapePool(sc, self)
            self.pools.append(pool)
            await pool.start()

    async def shutdown(self) -> None:
        """Stop scraping (no stale markers: the targets are still there), then let the pushes
        in flight finish: at most MAX_IN_FLIGHT per target, handed to processors that are
        flushing meanwhile; a refused one stops retrying at its deadline."""
        await asyncio.gather(*(p.shutdown() for p in self.pools), return_exceptions=True)
        self.pools.clear()
        if self._pushes:
            await asyncio.gather(*self._pushes, return_exceptions=True)

    # ---- self-metrics ----------------------------------------------------------------------

    def _self_metrics(self) -> None:
        tel = self._telemetry
        tl = ["receiver", "job", "instance"]
        self._m = {
            "up": tel.metric(Gauge, "otelgw_prometheus_target_up",
                             "1 if the last scrape of the target succeeded, else 0.", tl),
            "duration": tel.metric(Gauge, "otelgw_prometheus_target_scrape_duration_seconds",
                                   "Duration of the last scrape of the target.", tl),
            "samples": tel.metric(Gauge, "otelgw_prometheus_target_scrape_samples",
                                  "Samples in the last scrape of the target.", tl),
            "failed": tel.metric(Counter, "otelgw_prometheus_target_scrapes_failed",
                                 "Scrapes of the target that failed.", tl),
            "targets": tel.metric(Gauge, "otelgw_prometheus_targets",
                                  "Active targets of the job.", ["receiver", "job"]),
        }

    def targets_gauge(self, job: str, n: int) -> None:
        if self._m:
            self._m["targets"].labels(receiver=str(self.id), job=job).set(n)

    def _target_labels(self, target: Target) -> dict[str, str]:
        return {"receiver": str(self.id), "job": target.public.get("job", ""),
                "instance": target.public.get("instance", "")}

    def forget_target(self, target: Target) -> None:
        if not self._m:
            return
        values = tuple(self._target_labels(target).values())
        for name in ("up", "duration", "samples", "failed"):
            try:
                self._m[name].remove(*values)
            except KeyError:
                pass

    def _observe(self, result: ScrapeResult) -> None:
        if not self._m or result.final:
            return
        labels = self._target_labels(result.target)
        self._m["up"].labels(**labels).set(0 if result.error else 1)
        self._m["duration"].labels(**labels).set(result.duration)
        self._m["samples"].labels(**labels).set(result.samples)
        if result.error:
            self._m["failed"].labels(**labels).inc()

    # ---- from scrape to pipeline -----------------------------------------------------------

    def loop_options(self, pool: ScrapePool) -> LoopOptions:
        cfg = pool.cfg
        return LoopOptions(cfg=cfg, client=pool.client, commit=self.commit, seed=self.seed,
                           external_labels=self.cfg.config.global_.external_labels,
                           extra_metrics=self.cfg.report_extra_scrape_metrics,
                           failure_log=cfg.scrape_failure_log_file)

    def commit(self, target: Target, txn: Transaction,
               result: ScrapeResult) -> asyncio.Task[None] | None:
        self._observe(result)
        txn.set_initial_start_times()
        resources = list(txn.resources.values())
        try:
            self.adjuster.adjust(resources)
        except AdjustError as exc:
            log.warning("dropping the scrape of %s (job %s): %s (use_start_time_metric)",
                        target.url, target.public.get("job"), exc)
            return None
        req = to_request(resources, VERSION, self.cfg.trim_metric_suffixes)
        if not req.resource_metrics or self.consumer is None:
            return None
        deadline = time.monotonic() + target.interval
        task = asyncio.get_running_loop().create_task(self._push(target, req, deadline))
        self._pushes.add(task)
        task.add_done_callback(self._pushes.discard)
        return task

    async def _push(self, target: Target, req: Any, deadline: float) -> None:
        raw = req.SerializeToString()
        items = count_items(Signal.METRICS, req)
        tel = self._telemetry
        labels = {"receiver": str(self.id), "transport": TRANSPORT}
        delay = 0.05
        while True:
            try:
                assert self.consumer is not None
                await self.consumer.consume(Payload(Signal.METRICS, raw, None, items))
            except RetryableError as exc:
                wait = max(exc.retry_after or 0.0, delay)
                if time.monotonic() + wait < deadline:
                    await asyncio.sleep(wait)
                    delay = min(delay * 2, 5.0)
                    continue
                tel.receiver_refused["metric_points"].labels(**labels).inc(items)
                log.warning("the pipeline refused the scrape of %s (job %s): %d metric points "
                            "dropped after retrying until the next scrape: %s", target.url,
                            target.public.get("job"), items, exc)
            except PermanentError as exc:
                tel.receiver_failed["metric_points"].labels(**labels).inc(items)
                log.warning("the pipeline rejected the scrape of %s (job %s): %d metric points "
                            "dropped: %s", target.url, target.public.get("job"), items, exc)
            except asyncio.CancelledError:
                tel.receiver_refused["metric_points"].labels(**labels).inc(items)
                raise
            except Exception:  # a bug downstream: count it, keep scraping
                tel.receiver_refused["metric_points"].labels(**labels).inc(items)
                log.exception("pushing the scrape of %s into the pipeline failed", target.url)
            else:
                tel.receiver_accepted["metric_points"].labels(**labels).inc(items)
            return
