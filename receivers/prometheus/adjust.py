"""State kept across scrapes: start times of cumulative points, resets, and stale series.

Start times follow the Collector's metrics adjusters (internal/metrics_adjuster.go and
starttimemetricadjuster.go, v0.129):

- initial point: the first time a cumulative series (Sum, Histogram, Summary) is seen its point
  keeps its own start (its `_created`, else its own timestamp) and that start is remembered; later
  points get the remembered start. When the value (a histogram's or summary's count or sum) goes
  down the series was reset: the point keeps its own start and that becomes the new start. A
  stale point (NoRecordedValue) gets the remembered start. A point whose start came from
  `_created` is left as it is (the UseCreatedMetric behaviour: the target knows best).
- start time metric (`use_start_time_metric`): every cumulative point of the scrape starts at
  the value of the target's process_start_time_seconds (or the metric `start_time_metric_regex`
  names); resets are then detected as above, a reset point starting at its own time.

Series not seen for longer than the GC interval (the longest scrape interval plus a minute, at
least two minutes, as upstream) are forgotten.

`SeriesSet` is Prometheus's staleness tracking (scrape cache seriesCur/seriesPrev): the series of
the previous scrape that the current one lacks get a stale marker.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from receivers.prometheus.convert import GAUGE, HISTOGRAM, SUM, Family, Point, ResourceData

Key = tuple[tuple[str, str], ...]


class AdjustError(Exception):
    """The scrape cannot be given start times; its data is dropped, as upstream does."""


@dataclass(slots=True)
class _Series:
    start_ns: int
    previous: float
    previous_sum: float
    mark: bool = True


class _TargetSeries:
    def __init__(self) -> None:
        self.series: dict[tuple[str, str, Key], _Series] = {}
        self.mark = True

    def gc(self) -> None:
        self.series = {k: s for k, s in self.series.items() if s.mark}
        for s in self.series.values():
            s.mark = False
        self.mark = False


def gc_interval(longest_scrape_interval: float) -> float:
    return max(120.0, longest_scrape_interval + 60.0)


def _values(fam: Family, p: Point) -> tuple[float, float]:
    if fam.otype == SUM:
        return p.value, 0.0
    return p.count, p.sum


class InitialPointAdjuster:
    def __init__(self, gc_every: float, use_created: bool = True,
                 use_point_time_for_reset: bool = False) -> None:
        self.gc_every = gc_every
        self.use_created = use_created
        self.use_point_time_for_reset = use_point_time_for_reset
        self._targets: dict[tuple[str, str], _TargetSeries] = {}
        self._last_gc = time.monotonic()

    def adjust(self, resources: list[ResourceData]) -> None:
        for res in resources:
            tsm = self._targets.get((res.job, res.instance))
            if tsm is None:
                tsm = self._targets[(res.job, res.instance)] = _TargetSeries()
            tsm.mark = True
            for fam in res.families():
                if fam.otype != GAUGE:
                    self._family(tsm, fam)
        self._maybe_gc()

    def _family(self, tsm: _TargetSeries, fam: Family) -> None:
        for p in fam.points.values():
            if self.use_created and p.created_ms and not p.stale and \
                    p.start_ns < p.ts_ms * 1_000_000:
                continue
            key = (fam.name, fam.otype, tuple(sorted(p.attrs.items())))
            value, total = _values(fam, p)
            s = tsm.series.get(key)
            if s is None:
                tsm.series[key] = _Series(p.start_ns, value, total)
                continue
            s.mark = True
            if p.stale:
                p.start_ns = s.start_ns
                continue
            if value < s.previous or (fam.otype != SUM and total < s.previous_sum):
                s.start_ns = p.ts_ms * 1_000_000 if self.use_point_time_for_reset \
                    else p.start_ns
                p.start_ns = s.start_ns
            else:
                p.start_ns = s.start_ns
            s.previous, s.previous_sum = value, total

    def _maybe_gc(self) -> None:
        now = time.monotonic()
        if now - self._last_gc <= self.gc_every:
            return
        self._last_gc = now
        for key, tsm in list(self._targets.items()):
            if not tsm.mark:
                del self._targets[key]
            else:
                tsm.gc()


class StartTimeMetricAdjuster:
    """`use_start_time_metric`: the target's own start time for every cumulative point."""

    def __init__(self, regex: str, gc_every: float) -> None:
        self.regex = re.compile(regex) if regex else None
        self.resets = InitialPointAdjuster(gc_every, use_created=False,
                                           use_point_time_for_reset=True)

    def _matches(self, name: str) -> bool:
        if self.regex is not None:
            return self.regex.search(name) is not None  # Go's MatchString is unanchored
        return name == "process_start_time_seconds"

    def _start_time(self, resources: list[ResourceData]) -> float:
        for res in resources:
            for fam in res.families():
                if not self._matches(fam.name):
                    continue
                if fam.otype not in (GAUGE, SUM):
                    raise AdjustError("unsupported data type for start time metric")
                for p in fam.points.values():
                    if p.has_value:
                        return p.value
                raise AdjustError("start time metric with no data points")
        raise AdjustError("start_time metric is missing")

    def adjust(self, resources: list[ResourceData]) -> None:
        start_ns = int(self._start_time(resources) * 1e9)
        for res in resources:
            for fam in res.families():
                if fam.otype in (SUM, HISTOGRAM) or fam.otype == "summary":
                    for p in fam.points.values():
                        p.start_ns = start_ns
        self.resets.adjust(resources)


class SeriesSet:
    """The label sets of the last scrape; `stale()` are those the current one (filled by the
    scrape loop) lacks."""

    def __init__(self) -> None:
        self.previous: dict[Key, dict[str, str]] = {}
        self.current: dict[Key, dict[str, str]] = {}

    def stale(self) -> list[tuple[Key, dict[str, str]]]:
        current = self.current
        return [(key, labels) for key, labels in self.previous.items() if key not in current]

    def done(self) -> None:
        self.previous, self.current = self.current, {}
