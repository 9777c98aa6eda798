"""The last-value accumulator of the prometheus exporter (contrib v0.129.0 semantics).

One series per (metric type, scope name, metric name, sorted attributes, job, instance); the
resource itself is not part of the identity, only the job/instance it maps to, and the series
keeps the resource of its latest update (which feeds `target_info`).

- gauges and summaries: the latest point by timestamp; an older point is ignored.
- sums: cumulative ones keep the latest point; monotonic delta ones are added up into a
  cumulative value while each point starts where the previous one ended (its start time is kept);
  a point that does not (a restart, a gap) replaces the value. Non-monotonic delta sums and sums
  of unspecified temporality are dropped.
- histograms: cumulative ones keep the latest point; delta ones are added bucket by bucket while
  contiguous, a point starting after the previous end restarts the series, and one starting
  before it (overlapping: out of order or two writers) is dropped.
- exponential histograms are not translated by this version of the exporter: dropped and logged.
- a point flagged NoRecordedValue deletes its series (a staleness marker) and, as upstream, ends
  the processing of that metric's remaining points.
- series not updated within metric_expiration are dropped when the exposition is built.

Work is per data point (a dict lookup and a small tuple); names, label names and resources are
translated once per metric / resource and cached.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, NamedTuple

from exporters.prometheus.names import job_instance, label_value

log = logging.getLogger(__name__)

DELTA, CUMULATIVE = 1, 2
_NO_RECORDED_VALUE = 1
_CACHE_LIMIT = 10_000


class Meta(NamedTuple):
    """What the exposition needs of an OTLP metric besides its points."""

    name: str
    description: str
    unit: str
    kind: str  # gauge | sum | histogram | summary
    monotonic: bool
    untyped: bool  # a gauge the Prometheus receiver marked `unknown`


class Resource(NamedTuple):
    attrs: dict[str, str]
    job: str | None
    instance: str | None


class Exemplar(NamedTuple):
    value: float
    time_ns: int
    trace_id: str
    span_id: str


class NumberPoint(NamedTuple):
    start: int
    time: int
    value: float | int
    exemplar: Exemplar | None


class HistogramPoint(NamedTuple):
    start: int
    time: int
    count: int
    sum: float
    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    exemplars: tuple[Exemplar, ...]


class SummaryPoint(NamedTuple):
    start: int
    time: int
    count: int
    sum: float
    quantiles: tuple[tuple[float, float], ...]


Point = NumberPoint | HistogramPoint | SummaryPoint
Key = tuple[str, str, str, tuple[tuple[str, str], ...], str | None, str | None]


class Series:
    __slots__ = ("key", "meta", "resource", "point", "updated", "rendered")

    def __init__(self, key: Key, meta: Meta, resource: Resource, point: Point,
                 updated: float) -> None:
        self.key = key
        self.meta = meta
        self.resource = resource
        self.point = point
        self.updated = updated
        self.rendered: Any = None  # label text, cached by the exposition (labels never change)

    @property
    def attrs(self) -> tuple[tuple[str, str], ...]:
        return self.key[3]


def _pairs(kvs: Any) -> list[tuple[str, str]]:
    """(key, AsString value) of each attribute; the hot path of the exporter, hence the
    shortcut: a non-empty string_value can only be the oneof's string."""
    out = []
    for kv in kvs:
        v = kv.value
        s = v.string_value
        out.append((kv.key, s if s or v.WhichOneof("value") == "string_value"
                     else label_value(v)))
    return out


def _exemplar(e: Any) -> Exemplar:
    value = e.as_double if e.WhichOneof("value") == "as_double" else float(e.as_int)
    return Exemplar(value, e.time_unix_nano, e.trace_id.hex() if any(e.trace_id) else "",
                    e.span_id.hex() if any(e.span_id) else "")


class Accumulator:
    def __init__(self, metric_expiration: float, resource_to_labels: bool = False) -> None:
        self.expiration = metric_expiration
        self.resource_to_labels = resource_to_labels
        self.series: dict[Key, Series] = {}
        self.dropped: Counter[str] = Counter()  # reason → points, read by the exporter
        self._metas: dict[tuple[Any, ...], Meta] = {}
        self._resources: dict[tuple[tuple[str, str], ...], Resource] = {}
        self._logged: dict[tuple[str, str], float] = {}

    # ------------------------------------------------------------------ ingest

    def accumulate(self, request: Any, now: float | None = None) -> int:
        """Takes every metric of an ExportMetricsServiceRequest; returns the points stored."""
        now = time.monotonic() if now is None else now
        return sum(self.add_resource(rm, now) for rm in request.resource_metrics)

    def add_resource(self, rm: Any, now: float) -> int:
        """Takes one ResourceMetrics; returns the points stored."""
        resource = self._resource(rm.resource.attributes)
        n = 0
        for sm in rm.scope_metrics:
            scope = sm.scope.name
            for metric in sm.metrics:
                n += self._metric(metric, scope, resource, now)
        return n

    def _resource(self, kvs: Any) -> Resource:
        pairs = tuple(_pairs(kvs))
        found = self._resources.get(pairs)
        if found is None:
            if len(self._resources) > _CACHE_LIMIT:
                self._resources.clear()
            attrs = dict(pairs)
            found = self._resources[pairs] = Resource(attrs, *job_instance(attrs))
        return found

    def _meta(self, metric: Any, kind: str, monotonic: bool) -> Meta:
        untyped = False
        if kind == "gauge" and len(metric.metadata):
            untyped = any(kv.key == "prometheus.type" and kv.value.string_value == "unknown"
                          for kv in metric.metadata)
        ident = (metric.name, metric.description, metric.unit, kind, monotonic, untyped)
        found = self._metas.get(ident)
        if found is None:
            if len(self._metas) > _CACHE_LIMIT:
                self._metas.clear()
            found = self._metas[ident] = Meta(*ident)
        return found

    def _attrs(self, kvs: Any, resource: Resource) -> tuple[tuple[str, str], ...]:
        if self.resource_to_labels:
            # resourcetotelemetry: resource attributes are copied onto every point and win
            merged = dict(_pairs(kvs))
            merged.update(resource.attrs)
            return tuple(sorted(merged.items()))
        if not kvs:
            return ()
        pairs = _pairs(kvs)
        pairs.sort()
        return tuple(pairs)

    def _metric(self, metric: Any, scope: str, resource: Resource, now: float) -> int:
        kind = metric.WhichOneof("data")
        if kind == "gauge":
            return self._numbers(metric, metric.gauge, "gauge", False, CUMULATIVE, scope,
                                 resource, now)
        if kind == "sum":
            s = metric.sum
            if s.aggregation_temporality not in (DELTA, CUMULATIVE):
                return self._drop("unspecified_temporality", metric, len(s.data_points))
            if s.aggregation_temporality == DELTA and not s.is_monotonic:
                return self._drop("non_monotonic_delta", metric, len(s.data_points))
            return self._numbers(metric, s, "sum", s.is_monotonic, s.aggregation_temporality,
                                 scope, resource, now)
        if kind == "histogram":
            return self._histograms(metric, scope, resource, now)
        if kind == "summary":
            return self._summaries(metric, scope, resource, now)
        points = len(metric.exponential_histogram.data_points) if kind else 0
        return self._drop("unsupported_type", metric, points, kind or "empty")

    def _drop(self, reason: str, metric: Any, points: int, detail: str = "") -> int:
        self.dropped[reason] += points
        self._log_once(reason, metric.name, detail)
        return 0

    def _log_once(self, reason: str, name: str, detail: str) -> None:
        # A misbehaving source repeats itself every batch: one line per metric and minute.
        now = time.monotonic()
        if now - self._logged.get((reason, name), -3600.0) < 60:
            return
        if len(self._logged) > _CACHE_LIMIT:
            self._logged.clear()
        self._logged[(reason, name)] = now
        log.warning("prometheus exporter: dropped points of metric %r: %s%s", name,
                    reason.replace("_", " "), f" ({detail})" if detail else "")

    def _numbers(self, metric: Any, data: Any, kind: str, monotonic: bool, temporality: int,
                 scope: str, resource: Resource, now: float) -> int:
        meta = self._meta(metric, kind, monotonic)
        series = self.series
        name, job, instance = metric.name, resource.job, resource.instance
        delta = temporality == DELTA
        n = 0
        for dp in data.data_points:
            key = (kind, scope, name, self._attrs(dp.attributes, resource), job, instance)
            if dp.flags & _NO_RECORDED_VALUE:
                series.pop(key, None)
                return 0
            which = dp.WhichOneof("value")
            value: float | int = (dp.as_double if which == "as_double"
                                  else dp.as_int if which == "as_int" else 0)
            start, ts = dp.start_time_unix_nano, dp.time_unix_nano
            exemplar = (_exemplar(dp.exemplars[-1]) if monotonic and len(dp.exemplars)
                        else None)
            found = series.get(key)
            if found is None:
                series[key] = Series(key, meta, resource, NumberPoint(start, ts, value, exemplar),
                                     now)
                n += 1
                continue
            prev = found.point
            if ts < prev.time:
                self.dropped["out_of_order"] += 1
                continue
            if delta and start == prev.time:
                # Go reads the previous value with the type of the new one (0 if it differs)
                start = prev.start
                if isinstance(value, int):
                    value += prev.value if isinstance(prev.value, int) else 0
                else:
                    value += prev.value if isinstance(prev.value, float) else 0.0
            found.point = NumberPoint(start, ts, value, exemplar)
            found.meta, found.resource, found.updated = meta, resource, now
            n += 1
        return n

    def _histograms(self, metric: Any, scope: str, resource: Resource, now: float) -> int:
        h = metric.histogram
        meta = self._meta(metric, "histogram", False)
        series = self.series
        name, job, instance = metric.name, resource.job, resource.instance
        n = 0
        for dp in h.data_points:
            key = ("histogram", scope, name, self._attrs(dp.attributes, resource), job, instance)
            if dp.flags & _NO_RECORDED_VALUE:
                series.pop(key, None)
                return 0
            point = HistogramPoint(dp.start_time_unix_nano, dp.time_unix_nano, dp.count, dp.sum,
                                   tuple(dp.explicit_bounds), tuple(dp.bucket_counts),
                                   tuple(_exemplar(e) for e in dp.exemplars))
            found = series.get(key)
            if found is None:
                series[key] = Series(key, meta, resource, point, now)
                n += 1
                continue
            prev = found.point
            if h.aggregation_temporality == DELTA:
                if point.start != prev.time:
                    if point.start <= prev.time:
                        self.dropped["misaligned"] += 1
                        self._log_once("misaligned", name, "a delta histogram point starts "
                                       "before the previous one ended")
                        continue
                    # a gap: the source restarted, so the series does too
                else:
                    point = _add_histograms(prev, point)
            elif h.aggregation_temporality == CUMULATIVE:
                if point.time < prev.time:
                    self.dropped["out_of_order"] += 1
                    continue
            else:
                self.dropped["unspecified_temporality"] += 1
                continue
            found.point = point
            found.meta, found.resource, found.updated = meta, resource, now
            n += 1
        return n

    def _summaries(self, metric: Any, scope: str, resource: Resource, now: float) -> int:
        meta = self._meta(metric, "summary", False)
        series = self.series
        name, job, instance = metric.name, resource.job, resource.instance
        n = 0
        for dp in metric.summary.data_points:
            key = ("summary", scope, name, self._attrs(dp.attributes, resource), job, instance)
            if dp.flags & _NO_RECORDED_VALUE:
                series.pop(key, None)
                return 0
            point = SummaryPoint(dp.start_time_unix_nano, dp.time_unix_nano, dp.count, dp.sum,
                                 tuple((q.quantile, q.value) for q in dp.quantile_values))
            found = series.get(key)
            if found is None:
                series[key] = Series(key, meta, resource, point, now)
            elif point.time < found.point.time:
                self.dropped["out_of_order"] += 1
                continue
            else:
                found.point = point
                found.meta, found.resource, found.updated = meta, resource, now
            n += 1
        return n

    # ------------------------------------------------------------------ read

    def expire(self, now: float | None = None) -> int:
        """Drops the series not updated within metric_expiration; returns how many."""
        limit = (time.monotonic() if now is None else now) - self.expiration
        stale = [k for k, s in self.series.items() if s.updated < limit]
        for k in stale:
            del self.series[k]
        return len(stale)

    def snapshot(self, now: float | None = None) -> list[Series]:
        """The live series, oldest first; each point is an immutable tuple, so the list can be
        rendered in another thread while new points arrive."""
        self.expire(now)
        return list(self.series.values())


def _add_histograms(prev: HistogramPoint, cur: HistogramPoint) -> HistogramPoint:
    """A delta point added onto the accumulated one; bucket layouts that differ keep the
    newer point's values alone (as upstream). Exemplars do not carry over."""
    older, newer = (cur, prev) if cur.time < prev.time else (prev, cur)
    if older.bounds == newer.bounds:
        counts = tuple(c + (older.counts[i] if i < len(older.counts) else 0)
                       for i, c in enumerate(newer.counts))
        return HistogramPoint(prev.start, newer.time, newer.count + older.count,
                              newer.sum + older.sum, newer.bounds, counts, ())
    return HistogramPoint(prev.start, newer.time, newer.count, newer.sum, newer.bounds,
                          newer.counts, ())
