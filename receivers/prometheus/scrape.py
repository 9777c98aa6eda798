"""Targets and their scrape loops, as Prometheus's scrape package does it (scrape/target.go and
scrape/scrape.go of v3.4).

A target's labels come from discovery plus `job`, `__address__`, `__scheme__`,
`__metrics_path__`, `__scrape_interval__`, `__scrape_timeout__` and `__param_*`, then
relabel_configs; `__meta_*` labels go away, `instance` defaults to the address, and labels
starting with `__` never reach a series.

Each target gets one loop. Its first scrape waits an offset derived from a hash of the target, so
the targets of a job spread over the interval; then it scrapes every interval with a timeout, an
Accept header offering OpenMetrics first, gzip, and `X-Prometheus-Scrape-Timeout-Seconds`. The
body is parsed, every sample gets the target labels (honor_labels decides conflicts, which are
otherwise kept as `exported_<name>`) and metric_relabel_configs, limits are checked, and the
samples, stale markers for series that went away, and the synthetic `up`, `scrape_*` series go
to one Transaction that the receiver commits. Any failure (connection, timeout, HTTP status,
unparsable or truncated body, body_size_limit, sample_limit, label limits) fails only this scrape:
`up` is 0, the target's series get stale markers, the error is logged, and the loop goes on. A
series exposed twice is not a failure: the repeat is dropped with a warning, as in Prometheus.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp

from receivers.prometheus import textparse
from receivers.prometheus.adjust import Key, SeriesSet
from receivers.prometheus.config import PROTOCOL_HEADERS, ScrapeConfig
from receivers.prometheus.convert import Exemplar, Transaction
from receivers.prometheus.httpconfig import HTTPClient, format_prom_duration, parse_prom_duration
from receivers.prometheus.relabel import relabel

log = logging.getLogger(__name__)

_FNV_OFFSET, _FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3
_MAX_AHEAD_MS = 10 * 60 * 1000  # samples further in the future are out of bounds
_ALIGN_TOLERANCE = 0.002
_LEGACY_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LEGACY_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_CT_TYPES = ("counter", "histogram", "summary")
MAX_IN_FLIGHT = 4  # pushes of one target waiting for the pipeline
_UNKNOWN = object()
REPORT_NAMES = ("up", "scrape_duration_seconds", "scrape_samples_scraped",
                "scrape_samples_post_metric_relabeling", "scrape_series_added")
EXTRA_REPORT_NAMES = ("scrape_timeout_seconds", "scrape_sample_limit", "scrape_body_size_bytes")


def fnv64a(data: bytes) -> int:
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


class ScrapeError(Exception):
    """This scrape failed; the message says why (it is logged and reported as up=0)."""


class BodySizeLimitError(ScrapeError):
    pass


# ---- targets -----------------------------------------------------------------------------


@dataclass
class Target:
    labels: dict[str, str]
    """After relabeling: public labels plus __address__, __scheme__, __metrics_path__, …"""
    discovered: dict[str, str]
    """Before relabeling, with the __meta_* labels (resource attributes come from these)."""
    params: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.public = {k: v for k, v in sorted(self.labels.items()) if not k.startswith("__")}
        self.interval = parse_prom_duration(self.labels["__scrape_interval__"])
        self.timeout = parse_prom_duration(self.labels["__scrape_timeout__"])
        self.url = self._url()
        ident = "".join(f"{k}\xff{v}\xff" for k, v in sorted(self.labels.items()))
        self.hash = fnv64a(f"{fnv64a(ident.encode()):016d}{self.url}".encode())

    def _url(self) -> str:
        params = {k: list(v) for k, v in self.params.items()}
        for k, v in self.labels.items():
            if k.startswith("__param_"):
                name = k[len("__param_"):]
                if params.get(name):
                    params[name][0] = v
                else:
                    params[name] = [v]
        # url.Values.Encode: keys sorted, each key's values in order
        query = urlencode([(k, x) for k in sorted(params) for x in params[k]])
        path = self.labels.get("__metrics_path__", "")
        if not path.startswith("/"):
            path = "/" + path
        url = f"{self.labels['__scheme__']}://{self.labels['__address__']}{path}"
        return f"{url}?{query}" if query else url

    @property
    def name(self) -> str:
        """How logs name the target: job and URL."""
        return f"{self.public.get('job', '')} {self.url}"

    def offset(self, seed: int, now: float | None = None) -> float:
        """Seconds until this target's first scrape: a fixed point of the interval chosen by
        its hash, so the targets of a job spread out (Target.offset)."""
        interval_ns = int(self.interval * 1e9)
        now_ns = int((time.time() if now is None else now) * 1e9)
        base = interval_ns - now_ns % interval_ns
        nxt = base + (self.hash ^ seed) % interval_ns
        if nxt > interval_ns:
            nxt -= interval_ns
        return nxt / 1e9


def discovered_labels(cfg: ScrapeConfig, target: dict[str, str],
                      group: dict[str, str]) -> dict[str, str]:
    """PopulateDiscoveredLabels: the target's and group's labels plus the scrape settings."""
    labels = {**group, **target}
    for name, value in (("job", cfg.job_name),
                        ("__scrape_interval__", format_prom_duration(cfg.scrape_interval or 0)),
                        ("__scrape_timeout__", format_prom_duration(cfg.scrape_timeout or 0)),
                        ("__metrics_path__", cfg.metrics_path), ("__scheme__", cfg.scheme)):
        if not labels.get(name):
            labels[name] = value
    for key, values in cfg.params.items():
        if values and not labels.get("__param_" + key):
            labels["__param_" + key] = values[0]
    return labels


def populate_labels(cfg: ScrapeConfig, discovered: dict[str, str]) -> dict[str, str] | None:
    """PopulateLabels: relabel_configs and checks. None: dropped by relabeling; ValueError:
    the target is invalid (the message says why)."""
    legacy = cfg.metric_name_validation_scheme == "legacy"
    labels = relabel(discovered, cfg.relabel_configs, legacy_names=legacy) \
        if cfg.relabel_configs else {k: v for k, v in discovered.items() if v}
    if labels is None:
        return None
    addr = labels.get("__address__", "")
    if not addr:
        raise ValueError("no address")
    if "/" in addr:
        raise ValueError(f"{addr!r} is not a valid hostname")
    interval = _duration_label(labels, "__scrape_interval__", "scrape interval")
    timeout = _duration_label(labels, "__scrape_timeout__", "scrape timeout")
    if timeout > interval:
        raise ValueError(f"scrape timeout cannot be greater than scrape interval "
                         f"({labels['__scrape_timeout__']!r} > {labels['__scrape_interval__']!r})")
    labels = {k: v for k, v in labels.items() if not k.startswith("__meta_")}
    labels.setdefault("instance", addr)
    return labels


def _duration_label(labels: dict[str, str], name: str, what: str) -> float:
    try:
        value = parse_prom_duration(labels.get(name, ""))
    except ValueError as exc:
        raise ValueError(f"error parsing {what}: {exc}") from None
    if value == 0:
        raise ValueError(f"{what} cannot be 0")
    return value


def offset_seed(external_labels: dict[str, str]) -> int:
    """Differs between gateways so that several scraping the same targets spread out too."""
    ident = socket.gethostname() + "".join(f"{k}={v}" for k, v in sorted(external_labels.items()))
    return fnv64a(ident.encode())


def accept_header(protocols: list[str], escaping: str) -> str:
    """Prometheus's Accept header: the configured formats by weight, then */*."""
    vals = []
    weight = len(PROTOCOL_HEADERS) + 1
    for proto in protocols:
        if proto == "PrometheusProto":
            continue  # no protobuf parser here; the text formats carry the same data
        val = PROTOCOL_HEADERS[proto]
        if proto in ("PrometheusText1.0.0", "OpenMetricsText1.0.0"):
            val += f";escaping={escaping}"
        vals.append(f"{val};q=0.{weight}")
        weight -= 1
    vals.append(f"*/*;q=0.{weight}")
    return ",".join(vals)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _format_seconds(value: float) -> str:
    return f"{value:f}".rstrip("0").rstrip(".")


# ---- the loop ----------------------------------------------------------------------------


@dataclass
class ScrapeResult:
    """What one scrape produced, for the receiver's self-metrics and logs."""

    target: Target
    timestamp: float
    duration: float
    error: str | None
    samples: int = 0
    added: int = 0
    final: bool = False
    """The stale markers of a target that went away, not a scrape."""


Commit = Callable[[Target, Transaction, ScrapeResult], "asyncio.Future[None] | None"]
"""Hands a scrape to the pipeline; returns the push in flight (or None when nothing is sent)."""


@dataclass
class LoopOptions:
    cfg: ScrapeConfig
    client: HTTPClient
    commit: Commit
    seed: int = 0
    external_labels: dict[str, str] = field(default_factory=dict)
    extra_metrics: bool = False
    failure_log: str = ""


class _Failures:
    """Per-target log rate limit: a new error is logged at once, the same one again at most
    once a minute (saying how many were not logged), and the recovery once."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self.last_error: str | None = None
        self.last_logged = 0.0
        self.suppressed = 0

    def report(self, target: Target, error: str | None) -> None:
        now = time.monotonic()
        if error is None:
            if self.last_error is not None:
                log.info("scrape of %s recovered (job %s, instance %s)", target.url,
                         target.public.get("job"), target.public.get("instance"))
            self.last_error, self.suppressed = None, 0
            return
        if error == self.last_error and now - self.last_logged < self.every:
            self.suppressed += 1
            return
        more = f" ({self.suppressed} more failures not logged)" if self.suppressed else ""
        log.warning("failed to scrape Prometheus endpoint %s (job %s, instance %s): %s%s",
                    target.url, target.public.get("job"), target.public.get("instance"),
                    error, more)
        self.last_error, self.last_logged, self.suppressed = error, now, 0


class _Notes:
    """Per-target limit for warnings that would repeat every scrape: once a minute."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def due(self, kind: str) -> bool:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.every:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return False
        self._last[kind] = now
        return True

    def suppressed(self, kind: str) -> str:
        n = self._skipped.pop(kind, 0)
        return f" (also in {n} scrapes not logged)" if n else ""


class ScrapeLoop:
    def __init__(self, target: Target, opts: LoopOptions) -> None:
        self.target = target
        self.opts = opts
        cfg = opts.cfg
        escaping = cfg.metric_name_escaping_scheme or (
            "underscores" if cfg.metric_name_validation_scheme == "legacy" else "allow-utf-8")
        self.accept = accept_header(list(cfg.scrape_protocols or []), escaping)
        fallback = cfg.fallback_scrape_protocol or "PrometheusText0.0.4"
        self.fallback = _media_type(PROTOCOL_HEADERS[fallback])
        self.forced_error: str | None = None
        self.series = SeriesSet()
        self._cache: dict[Any, tuple[dict[str, str], Key] | None] = {}
        self._metadata: dict[str, tuple[str, str, str]] = {}
        self._meta_sig: tuple[tuple[str, str, str, str], ...] = ()
        self._routes: dict[Any, Any] = {}
        self._meta_seen: dict[str, int] = {}
        self._iter = 0
        self._report_seen = False
        self._failures = _Failures()
        self._notes = _Notes()
        self._stop = asyncio.Event()
        self._last_scrape = 0.0
        self._pending: list[asyncio.Future[None]] = []
        self.task: asyncio.Task[None] | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self.run(), name=f"scrape {self.target.url}")

    async def stop(self, staleness: Callable[[], bool] | None = None) -> None:
        """Stop scraping. With `staleness`, wait as Prometheus does (two intervals and a bit)
        and then, if `staleness()` still says so, mark every series of the target stale."""
        self._stop.set()
        if self.task is not None:
            try:
                await self.task
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop logs its own errors
                pass
        if staleness is not None and self._last_scrape:
            await self._end_of_run_staleness(staleness)

    async def cancel(self) -> None:
        self._stop.set()
        if self.task is not None and not self.task.done():
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped meanwhile; True when stopped."""
        try:
            await asyncio.wait_for(self._stop.wait(), max(seconds, 0))
            return True
        except asyncio.TimeoutError:
            return self._stop.is_set()

    async def run(self) -> None:
        if await self._sleep(self.target.offset(self.opts.seed)):
            return
        loop = asyncio.get_running_loop()
        interval = self.target.interval
        next_tick = loop.time()
        aligned = time.time()
        while not self._stop.is_set():
            now = time.time()
            while now - aligned >= interval:
                aligned += interval
            stamp = aligned if now - aligned <= min(interval / 100, _ALIGN_TOLERANCE) else now
            try:
                await self.scrape_and_report(stamp)
            except Exception:  # a bug must not end the loop of a healthy target
                log.exception("scrape loop of %s: unexpected error", self.target.url)
            next_tick += interval
            while next_tick <= loop.time():  # a slow round skips ticks, as a Go ticker does
                next_tick += interval
            if await self._sleep(next_tick - loop.time()):
                return

    # ---- one scrape -----------------------------------------------------------------------

    async def scrape_and_report(self, stamp: float) -> ScrapeResult:
        start = time.monotonic()
        self._last_scrape = stamp
        body, ctype, error, size = b"", "", self.forced_error, 0
        if error is None:
            try:
                body, ctype = await self.fetch()
                size = len(body)
            except BodySizeLimitError as exc:
                error, size = str(exc), -1
            except ScrapeError as exc:
                error = str(exc)
        t_ms = int(stamp * 1000)
        txn, total, added, series_added, append_error = self.append(body, ctype, t_ms)
        error = error or append_error
        duration = time.monotonic() - start
        self._report(txn, t_ms, duration, total, added, series_added, size, error)
        result = ScrapeResult(self.target, stamp, duration, error, total, added)
        self._failures.report(self.target, error)
        if error is not None and self.opts.failure_log:
            self._log_failure(stamp, error)
        await self._commit(txn, result)
        return result

    async def _commit(self, txn: Transaction, result: ScrapeResult) -> None:
        """Hand the scrape over, keeping at most MAX_IN_FLIGHT pushes of this target waiting
        for the pipeline: a pipeline that stays slower than that delays the next scrape (as a
        slow commit does in Prometheus) instead of piling scrapes up in memory."""
        self._pending = [f for f in self._pending if not f.done()]
        while len(self._pending) >= MAX_IN_FLIGHT:
            await asyncio.wait(self._pending, return_when=asyncio.FIRST_COMPLETED)
            self._pending = [f for f in self._pending if not f.done()]
        push = self.opts.commit(self.target, txn, result)
        if push is not None:
            self._pending.append(push)

    async def fetch(self) -> tuple[bytes, str]:
        client, cfg = self.opts.client, self.opts.cfg
        timeout = self.target.timeout
        try:
            async with asyncio.timeout(timeout):
                headers = await client.headers()
                headers.update({"Accept": self.accept, "Accept-Encoding":
                                "gzip" if cfg.enable_compression else "identity",
                                "X-Prometheus-Scrape-Timeout-Seconds": _format_seconds(timeout)})
                async with client.session.get(self.target.url, headers=headers,
                                              **client.request_options(self.target.url)) as resp:
                    if resp.status != 200:
                        raise ScrapeError(f"server returned HTTP status {resp.status} "
                                          f"{resp.reason or ''}".rstrip())
                    return await self._read(resp, cfg.body_size_limit or 0), \
                        resp.headers.get("Content-Type", "")
        except TimeoutError:
            raise ScrapeError(f"scrape timed out after {format_prom_duration(timeout)} "
                              f"(scrape_timeout)") from None
        except aiohttp.ClientPayloadError as exc:
            raise ScrapeError(f"truncated or malformed response body: {exc}") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise ScrapeError(f"{type(exc).__name__}: {exc}") from None

    @staticmethod
    async def _read(resp: aiohttp.ClientResponse, limit: int) -> bytes:
        """The (decompressed) body; as Prometheus, reaching `limit` bytes fails the scrape."""
        chunks, size = [], 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if limit and size >= limit:
                raise BodySizeLimitError(f"body size limit exceeded (body_size_limit "
                                         f"{limit} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    def _transaction(self) -> Transaction:
        return Transaction(self.target.public, self.target.discovered, self._metadata,
                           self.opts.external_labels, self._routes)

    def append(self, body: bytes, ctype: str, t_ms: int
               ) -> tuple[Transaction, int, int, int, str | None]:
        """Parse and append one body; on any error the samples are dropped and every series of
        the last scrape is marked stale, as Prometheus rolls back and appends an empty scrape."""
        txn = self._transaction()
        if not body:
            self._append_stale(txn, t_ms, failed=False)
            return txn, 0, 0, 0, None
        self._iter += 1
        appender = _Appender(self, txn, t_ms)
        error: str | None = None
        try:
            families, openmetrics = self._parse(body, ctype)
            appender.add_families(families, openmetrics)
        except ScrapeError as exc:
            error = str(exc)
        if error is None and appender.sample_limit_hit:
            error = f"sample limit exceeded (sample_limit {self.opts.cfg.sample_limit})"
        appender.warn_dropped()
        if error is not None:
            txn = self._transaction()
            self._append_stale(txn, t_ms, failed=True)
            return txn, appender.total, appender.added, appender.series_added, error
        for key, labels in self.series.stale():
            txn.append(labels, t_ms, math.nan, stale=True, key=key)
        self.series.done()
        self._cache = appender.cache
        self._prune(appender.seen)
        return txn, appender.total, appender.added, appender.series_added, None

    def _parse(self, body: bytes, ctype: str) -> tuple[list[textparse.MetricFamily], bool]:
        """The families of a body, and whether it was OpenMetrics."""
        media = _media_type(ctype)
        if media == "application/vnd.google.protobuf":
            raise ScrapeError("the target answered in the protobuf format, which otelgw does "
                              "not parse (remove PrometheusProto from scrape_protocols)")
        if media not in ("text/plain", "application/openmetrics-text"):
            # As the Collector sets it: fallback_scrape_protocol defaults to the text format.
            ctype = media = self.fallback
        try:
            return textparse.parse(body, ctype), media == "application/openmetrics-text"
        except textparse.ParseError as exc:
            raise ScrapeError(f"cannot parse the response ({ctype or 'no Content-Type'}): "
                              f"{exc}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ScrapeError(f"cannot parse the response: {exc}") from None

    def _append_stale(self, txn: Transaction, t_ms: int, failed: bool) -> None:
        if failed:
            self.series.current = {}
        for key, labels in self.series.stale():
            txn.append(labels, t_ms, math.nan, stale=True, key=key)
        self.series.done()

    def _prune(self, seen: set[Key]) -> None:
        # Stale markers still need the types of series that just went away: metadata is kept
        # for a few scrapes; routes of label sets no longer exposed go when they pile up.
        for name, last in list(self._meta_seen.items()):
            if self._iter - last > 10:
                del self._meta_seen[name]
                self._metadata.pop(name, None)
        if len(self._routes) > 2 * len(seen) + 64:
            self._routes = {k: r for k, r in self._routes.items()
                            if k in seen or k[0] == "report"}

    def _report_values(self, duration: float, total: int, added: int, series_added: int,
                       size: int, error: str | None) -> list[tuple[str, float]]:
        values = [("up", 0.0 if error else 1.0), ("scrape_duration_seconds", duration),
                  ("scrape_samples_scraped", float(total)),
                  ("scrape_samples_post_metric_relabeling", float(added)),
                  ("scrape_series_added", float(series_added))]
        if self.opts.extra_metrics:
            body = float(size) if size < 0 or error is None else 0.0
            values += [("scrape_timeout_seconds", self.target.timeout),
                       ("scrape_sample_limit", float(self.opts.cfg.sample_limit or 0)),
                       ("scrape_body_size_bytes", body)]
        return values

    def _report(self, txn: Transaction, t_ms: int, duration: float, total: int, added: int,
                series_added: int, size: int, error: str | None) -> None:
        for name, value in self._report_values(duration, total, added, series_added, size,
                                               error):
            txn.append({"__name__": name, **self.target.public}, t_ms, value,
                       key=("report", name))
        self._report_seen = True

    async def _end_of_run_staleness(self, still_gone: Callable[[], bool]) -> None:
        interval = self.target.interval
        stale_at = time.time() + interval  # when the next scrape would have been
        await asyncio.sleep(2 * interval + interval / 10)
        if not still_gone():
            return
        t_ms = int(stale_at * 1000)
        txn = self._transaction()
        self._append_stale(txn, t_ms, failed=True)
        if self._report_seen:
            names = REPORT_NAMES + (EXTRA_REPORT_NAMES if self.opts.extra_metrics else ())
            for name in names:
                txn.append({"__name__": name, **self.target.public}, t_ms, math.nan, stale=True,
                           key=("report", name))
        await self._commit(txn, ScrapeResult(self.target, stale_at, 0.0, None, final=True))

    def _log_failure(self, stamp: float, error: str) -> None:
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)),
                           "level": "ERROR", "msg": error, "target": self.target.url,
                           "job": self.target.public.get("job", "")})
        try:
            with open(self.opts.failure_log, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as exc:
            log.debug("cannot write scrape_failure_log_file %s: %s", self.opts.failure_log, exc)


class _Appender:
    """The samples of one body, appended as Prometheus's scrapeLoop.append does."""

    def __init__(self, loop: ScrapeLoop, txn: Transaction, t_ms: int) -> None:
        self.loop = loop
        self.cfg = loop.opts.cfg
        self.txn = txn
        self.t_ms = t_ms
        self.max_t = int(time.time() * 1000) + _MAX_AHEAD_MS
        self.cache: dict[Any, tuple[dict[str, str], Key] | None] = {}
        self.seen: set[Key] = set()
        self.total = self.added = self.series_added = self.appended = 0
        self.duplicates = self.out_of_bounds = 0
        self.sample_limit_hit = False
        self.legacy = self.cfg.metric_name_validation_scheme == "legacy"
        self.previous = loop._cache
        self.series = loop.series
        self.honor_timestamps = self.cfg.honor_timestamps
        self.track_staleness = self.cfg.track_timestamps_staleness
        self.sample_limit = self.cfg.sample_limit or 0

    def add_families(self, families: list[textparse.MetricFamily], openmetrics: bool) -> None:
        loop = self.loop
        for fam in families:
            loop._metadata[fam.name] = (fam.type or "unknown", fam.help, fam.unit)
            loop._meta_seen[fam.name] = loop._iter
        sig = tuple((f.name, f.type, f.help, f.unit) for f in families)
        if sig != loop._meta_sig:  # a family changed type, help or unit: routes are stale
            loop._routes.clear()
            loop._meta_sig = sig
        for fam in families:
            created: dict[Key, int] | None = None
            if openmetrics and fam.type in _CT_TYPES:
                created = self._created(fam)
            for s in fam.samples:
                if created is not None and s.name == fam.name + "_created":
                    continue  # consumed as the series' created timestamp
                self._sample(s, created, fam.type)

    @staticmethod
    def _ct_key(labels: dict[str, str]) -> Key:
        return tuple(sorted((k, v) for k, v in labels.items()
                            if v and k not in ("le", "quantile")))

    def _created(self, fam: textparse.MetricFamily) -> dict[Key, int]:
        out = {}
        for s in fam.samples:
            if s.name == fam.name + "_created" and math.isfinite(s.value):
                out[self._ct_key(s.labels)] = int(s.value * 1000)
        return out

    def _mutate(self, name: str, labels: dict[str, str]) -> dict[str, str] | None:
        """mutateSampleLabels: target labels (honor_labels or exported_*), then
        metric_relabel_configs."""
        lb = {k: v for k, v in labels.items() if v}
        lb["__name__"] = name
        target = self.loop.target.public
        if self.cfg.honor_labels:
            for k, v in target.items():
                if k not in lb:
                    lb[k] = v
        else:
            conflicts = [(k, lb[k]) for k in target if lb.get(k)]
            lb.update(target)
            for k, v in sorted(conflicts, key=lambda kv: len(kv[0])):
                new = "exported_" + k
                while lb.get(new):
                    new = "exported_" + new
                lb[new] = v
        if self.cfg.metric_relabel_configs:
            return relabel(lb, self.cfg.metric_relabel_configs, legacy_names=self.legacy) or None
        return lb

    def _check(self, lset: dict[str, str]) -> None:
        name = lset.get("__name__", "")
        if not name:
            raise ScrapeError("__name__ label is missing")
        if self.legacy and (not _LEGACY_METRIC.match(name) or
                            not all(_LEGACY_LABEL.match(k) for k in lset if k != "__name__")):
            raise ScrapeError(f"invalid metric name or label names: {lset}")
        cfg = self.cfg
        if cfg.label_limit and len(lset) > cfg.label_limit:
            raise ScrapeError(f"label_limit exceeded (metric: {name[:50]}, number of labels: "
                              f"{len(lset)}, limit: {cfg.label_limit})")
        for k, v in lset.items():
            if cfg.label_name_length_limit and len(k) > cfg.label_name_length_limit:
                raise ScrapeError(f"label_name_length_limit exceeded (metric: {name[:50]}, label "
                                  f"name: {k[:50]}, length: {len(k)}, limit: "
                                  f"{cfg.label_name_length_limit})")
            if cfg.label_value_length_limit and len(v) > cfg.label_value_length_limit:
                raise ScrapeError(f"label_value_length_limit exceeded (metric: {name[:50]}, "
                                  f"label name: {k[:50]}, value: {v[:50]!r}, length: {len(v)}, "
                                  f"limit: {cfg.label_value_length_limit})")

    def _sample(self, s: textparse.Sample, created: dict[Key, int] | None, ftype: str) -> None:
        self.total += 1
        explicit = self.honor_timestamps and s.timestamp_ms is not None
        t: int = s.timestamp_ms if explicit else self.t_ms  # type: ignore[assignment]
        raw = (s.name, tuple(s.labels.items()))
        entry = self.previous.get(raw, _UNKNOWN)
        known = entry is not _UNKNOWN
        if not known:
            entry = None
            lset = self._mutate(s.name, s.labels)
            if lset is not None:
                self._check(lset)
                entry = (lset, tuple(sorted(lset.items())))
        self.cache[raw] = entry
        if entry is None:
            return  # dropped by metric_relabel_configs
        lset, key = entry  # type: ignore[misc]
        self.added += 1
        if key in self.seen and not explicit:
            self.duplicates += 1
            return
        if t > self.max_t:
            self.out_of_bounds += 1
            return
        self.appended += 1
        if self.sample_limit and self.appended > self.sample_limit:
            self.sample_limit_hit = True
            return
        self.seen.add(key)
        created_ms = created.get(self._ct_key(s.labels), 0) if created else 0
        exemplars = None
        if s.exemplar is not None and ftype != "summary":
            ex = s.exemplar
            ex_ms = int(ex.timestamp * 1000) if ex.timestamp is not None else t
            exemplars = [Exemplar(dict(ex.labels), ex.value, ex_ms)]
        self.txn.append(lset, t, s.value, created_ms=created_ms, exemplars=exemplars, key=key)
        if not explicit or self.track_staleness:
            self.series.current[key] = lset
        if not known:
            self.series_added += 1

    def warn_dropped(self) -> None:
        target, notes = self.loop.target, self.loop._notes
        if self.duplicates and notes.due("duplicates"):
            log.warning("scrape of %s (job %s): dropped %d samples of series exposed more than "
                        "once (duplicate series with the same timestamp)%s", target.url,
                        target.public.get("job"), self.duplicates, notes.suppressed("duplicates"))
        if self.out_of_bounds and notes.due("future"):
            log.warning("scrape of %s (job %s): dropped %d samples with timestamps too far in "
                        "the future%s", target.url, target.public.get("job"), self.out_of_bounds,
                        notes.suppressed("future"))
