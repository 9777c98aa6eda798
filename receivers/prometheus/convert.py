"""Scraped samples → one OTLP ExportMetricsServiceRequest, the way the Collector's prometheus
receiver builds it (internal/transaction.go, metricfamily.go, prom_to_otlp.go, v0.129).

A `Transaction` takes the samples of one scrape after relabeling (plus the stale markers and the
synthetic `up`/`scrape_*` series) and groups them:

- per (job, instance) a Resource: service.name = job, service.instance.id = instance,
  server.address (unless loopback/unspecified/localhost), server.port, url.scheme, and k8s.*
  attributes from the target's discovered __meta_kubernetes_* labels; `target_info` adds its
  labels to that Resource;
- per otel_scope_name/otel_scope_version a Scope (default: the Collector receiver's scope name),
  `otel_scope_info` gives scope attributes;
- per metric family a Metric: counter → cumulative monotonic Sum; gauge and unknown → Gauge;
  histogram → cumulative Histogram (bucket counts de-cumulated, bounds without +Inf, sum, count);
  summary → Summary; info and stateset → cumulative non-monotonic Sum; gaugehistogram and
  anything else → Gauge (one point per bucket), as upstream;
- per label set (without job, instance, and le/quantile) a data point whose attributes are the
  remaining non-empty labels. Stale markers become points flagged NoRecordedValue.

Start times are first set as upstream does (from `_created`, else the point's own time) and
then adjusted across scrapes by adjust.py before `to_request` serializes.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

log = logging.getLogger(__name__)

SCOPE_NAME = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver"
NO_RECORDED_VALUE = 1  # DataPointFlags.FLAG_NO_RECORDED_VALUE
CUMULATIVE = 2  # AggregationTemporality
GAUGE, SUM, HISTOGRAM, SUMMARY = "gauge", "sum", "histogram", "summary"
_MS = 1_000_000
# pcommon.Timestamp(ms * 1e6): Go's int64 product as uint64 (a time before 1970 wraps)
_U64 = (1 << 64) - 1
_COUNT_MAX = 2.0**64  # counts are uint64 in OTLP

# The Collector's metadata for Prometheus's synthetic series (internal/util.go).
INTERNAL_METADATA = {
    "up": ("gauge", "The scraping was successful", ""),
    "scrape_duration_seconds": ("gauge", "Duration of the scrape", "seconds"),
    "scrape_samples_scraped": ("gauge", "The number of samples the target exposed", ""),
    "scrape_series_added": ("gauge", "The approximate number of new series in this scrape", ""),
    "scrape_samples_post_metric_relabeling": (
        "gauge", "The number of samples remaining after metric relabeling was applied", ""),
}
_TRIMMABLE = ("_bucket", "_count", "_sum", "_total", "_info", "_created")
_OTLP_TYPE = {"counter": (SUM, True), "gauge": (GAUGE, False), "unknown": (GAUGE, False),
              "histogram": (HISTOGRAM, True), "summary": (SUMMARY, True),
              "info": (SUM, False), "stateset": (SUM, False)}
_NOT_ATTRIBUTES = {"__name__", "job", "instance", "__scheme__", "__metrics_path__",
                   "otel_scope_name", "otel_scope_version"}
_NOT_ATTRIBUTES_HISTOGRAM = _NOT_ATTRIBUTES | {"le"}
_NOT_ATTRIBUTES_SUMMARY = _NOT_ATTRIBUTES | {"quantile"}
_K8S_META = {
    "__meta_kubernetes_pod_name": "k8s.pod.name",
    "__meta_kubernetes_pod_uid": "k8s.pod.uid",
    "__meta_kubernetes_pod_container_name": "k8s.container.name",
    "__meta_kubernetes_namespace": "k8s.namespace.name",
    "__meta_kubernetes_pod_node_name": "k8s.node.name",
    "__meta_kubernetes_node_name": "k8s.node.name",
    "__meta_kubernetes_endpoint_node_name": "k8s.node.name",
}
_K8S_CONTROLLERS = {"ReplicaSet": "k8s.replicaset.name", "DaemonSet": "k8s.daemonset.name",
                    "StatefulSet": "k8s.statefulset.name", "Job": "k8s.job.name",
                    "CronJob": "k8s.cronjob.name"}
_UCUM = {"days": "d", "hours": "h", "minutes": "min", "seconds": "s", "milliseconds": "ms",
         "microseconds": "us", "nanoseconds": "ns", "bytes": "By", "kibibytes": "KiBy",
         "mebibytes": "MiBy", "gibibytes": "GiBy", "tibibytes": "TiBy", "kilobytes": "KBy",
         "megabytes": "MBy", "gigabytes": "GBy", "terabytes": "TBy", "meters": "m",
         "volts": "V", "amperes": "A", "joules": "J", "watts": "W", "grams": "g",
         "celsius": "Cel", "hertz": "Hz", "ratio": "1", "percent": "%"}
_PER_UCUM = {"second": "s", "minute": "m", "hour": "h", "day": "d", "week": "w", "month": "mo",
             "year": "y"}


def unit_to_ucum(unit: str) -> str:
    """pkg/translator/prometheus UnitWordToUCUM: `seconds` → `s`, `bytes_per_second` → `By/s`."""
    word, _, per = unit.partition("_per_")
    out = _UCUM.get(word, word)
    return f"{out}/{_PER_UCUM.get(per, per)}" if per else out


def trim_suffixes(name: str, otype: str, unit: str) -> str:
    """pkg/translator/prometheus TrimPromSuffixes: `_total` of sums, then the unit's words."""
    tokens = name.split("_")
    if len(tokens) == 1:
        return name
    if otype == SUM and tokens[-1] == "total":
        tokens = tokens[:-1]
    unit_tokens = unit.split("_")
    if len(tokens) > len(unit_tokens) and tokens[-len(unit_tokens):] == unit_tokens:
        tokens = tokens[:-len(unit_tokens)]
    return "_".join(tokens)


def _discernible(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host != "localhost"
    return not (ip.is_loopback or ip.is_unspecified)


def _split_host_port(instance: str) -> tuple[str, str]:
    if instance.startswith("["):
        host, sep, port = instance[1:].partition("]:")
        return (host, port) if sep else (instance, "")
    if instance.count(":") == 1:
        host, _, port = instance.partition(":")
        return host, port
    return instance, ""


def resource_attributes(job: str, instance: str, discovered: dict[str, str]) -> dict[str, str]:
    """prom_to_otlp.go CreateResource (with the legacy net.host.*/http.scheme gone, as in
    v0.129 where that gate is stable), plus addKubernetesResource."""
    host, port = _split_host_port(instance)
    attrs = {"service.name": job}
    if _discernible(host):
        attrs["server.address"] = host
    attrs["service.instance.id"] = instance
    attrs["server.port"] = port
    attrs["url.scheme"] = discovered.get("__scheme__", "")
    for meta, key in _K8S_META.items():
        value = discovered.get(meta)
        if value:
            attrs[key] = value
    kind = discovered.get("__meta_kubernetes_pod_controller_kind", "")
    name = discovered.get("__meta_kubernetes_pod_controller_name", "")
    if kind in _K8S_CONTROLLERS and name:
        attrs[_K8S_CONTROLLERS[kind]] = name
    return attrs


@dataclass(slots=True)
class Exemplar:
    labels: dict[str, str]
    value: float
    ts_ms: int


@dataclass(slots=True)
class Point:
    attrs: dict[str, str]
    ts_ms: int
    start_ns: int = 0
    stale: bool = False
    value: float = 0.0
    has_value: bool = False
    count: float = 0.0
    has_count: bool = False
    sum: float = 0.0
    has_sum: bool = False
    created_ms: int = 0
    parts: list[tuple[float, float]] | None = None  # (le or quantile, value)
    exemplars: list[Exemplar] | None = None


@dataclass(slots=True)
class Family:
    name: str
    prom_type: str
    otype: str
    monotonic: bool
    help: str
    unit: str
    points: dict[tuple[tuple[str, str], ...], Point] = field(default_factory=dict)


@dataclass(slots=True)
class ResourceData:
    job: str
    instance: str
    attrs: dict[str, str]
    scopes: dict[tuple[str, str], dict[tuple[str, str], Family]] = field(default_factory=dict)
    scope_attrs: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def families(self) -> list[Family]:
        return [f for fams in self.scopes.values() for f in fams.values()]


# What a sample sets in its point.
VALUE, SUM_PART, COUNT_PART, CREATED_PART, BUCKET_PART = range(5)


@dataclass(slots=True, frozen=True)
class Route:
    """Where the samples of one label set go; the same every scrape, so a loop keeps them."""

    resource: tuple[str, str]
    scope: tuple[str, str]
    family: tuple[str, str, str, str, str, bool]  # name, prom type, otype, help, unit, monotonic
    point: tuple[tuple[str, str], ...]
    attrs: dict[str, str]
    part: int = VALUE
    bound: float = 0.0
    special: str = ""  # target_info / otel_scope_info


class Transaction:
    """The samples of one scrape of one target, grouped into resources, scopes and metrics.

    `metadata` maps a metric family name to (type, help, unit) as the target exposed them;
    `routes` caches each label set's Route across scrapes (the loop drops it when the target's
    metadata changes)."""

    def __init__(self, target_labels: dict[str, str], discovered: dict[str, str],
                 metadata: dict[str, tuple[str, str, str]], external_labels: dict[str, str]
                 | None = None, routes: dict[Any, Route | None] | None = None) -> None:
        self.target_labels = target_labels
        self.discovered = discovered
        self.metadata = metadata
        self.external_labels = external_labels or {}
        self.routes: dict[Any, Route | None] = {} if routes is None else routes
        self.resources: dict[tuple[str, str], ResourceData] = {}
        self._family_cache: dict[str, tuple[str, str, str, str]] = {}
        self.dropped = 0

    # ---- routes --------------------------------------------------------------------------

    def _lookup(self, name: str) -> tuple[str, str, str, str]:
        """(family name, prometheus type, help, unit) of a sample name: metadataForMetric."""
        found = self._family_cache.get(name)
        if found is not None:
            return found
        if name in INTERNAL_METADATA:
            found = (name, *INTERNAL_METADATA[name])
        elif name in self.metadata:
            found = (name, *self.metadata[name])
        else:
            found = (name, "unknown", "", "")
            for suffix in _TRIMMABLE:
                if name.endswith(suffix) and name[:-len(suffix)] in self.metadata:
                    base = name[:-len(suffix)]
                    mtype, help_, unit = self.metadata[base]
                    if mtype == "counter":
                        found = (name, mtype, help_, unit)
                    elif mtype in ("histogram", "summary", "gaugehistogram", "info",
                                   "stateset"):
                        found = (base, mtype, help_, unit)
                    break
        self._family_cache[name] = found
        return found

    def route(self, labels: dict[str, str]) -> Route | None:
        """Where a label set goes; None for a bucket or quantile whose bound is not a number."""
        name = labels["__name__"]
        resource = (labels.get("job") or self.target_labels.get("job", ""),
                    labels.get("instance") or self.target_labels.get("instance", ""))
        scope = (labels.get("otel_scope_name", ""), labels.get("otel_scope_version", ""))
        if name in ("target_info", "otel_scope_info"):
            return Route(resource, scope, ("", "", "", "", "", False), (), {}, special=name)
        fname, ptype, help_, unit = self._lookup(name)
        otype, monotonic = _OTLP_TYPE.get(ptype, (GAUGE, False))
        family = (fname, ptype, otype, help_, unit, monotonic)
        excluded = _NOT_ATTRIBUTES_HISTOGRAM if otype == HISTOGRAM else \
            _NOT_ATTRIBUTES_SUMMARY if otype == SUMMARY else _NOT_ATTRIBUTES
        attrs = {k: v for k, v in labels.items() if v and k not in excluded}
        point = tuple(sorted(attrs.items()))
        if otype not in (HISTOGRAM, SUMMARY):
            return Route(resource, scope, family, point, attrs)
        if name.endswith("_sum"):
            return Route(resource, scope, family, point, attrs, SUM_PART)
        if name.endswith("_count"):
            return Route(resource, scope, family, point, attrs, COUNT_PART)
        if name == fname + "_created":
            return Route(resource, scope, family, point, attrs, CREATED_PART)
        label = "le" if otype == HISTOGRAM else "quantile"
        text = labels.get(label, "")
        try:
            if not text or "_" in text:
                raise ValueError(text)
            bound = float(text)
        except ValueError:
            log.debug("dropping %s: %r label missing or not a number: %r", name, label, text)
            return None
        return Route(resource, scope, family, point, attrs, BUCKET_PART, bound)

    def _resource(self, key: tuple[str, str]) -> ResourceData:
        res = self.resources.get(key)
        if res is None:
            res = self.resources[key] = ResourceData(
                key[0], key[1], resource_attributes(key[0], key[1], self.discovered))
        return res

    # ---- samples -------------------------------------------------------------------------

    def append(self, labels: dict[str, str], t_ms: int, value: float, *, stale: bool = False,
               created_ms: int = 0, exemplars: list[Exemplar] | None = None,
               key: Any = None) -> None:
        """One sample (labels include __name__, job, instance and the target labels); `key`,
        when given, identifies the label set for the route cache."""
        if self.external_labels:
            labels = {**labels, **self.external_labels}
        if key is None:
            route = self.route(labels)
        else:
            route = self.routes.get(key, False)  # type: ignore[arg-type]
            if route is False:
                route = self.routes[key] = self.route(labels)
        if route is None:
            self.dropped += 1
            return
        res = self._resource(route.resource)
        if route.special:
            if not stale:
                self._special(res, route, labels)
            return
        families = res.scopes.get(route.scope)
        if families is None:
            families = res.scopes[route.scope] = {}
        fkey = (route.family[0], route.family[2])
        fam = families.get(fkey)
        if fam is None:
            fname, ptype, otype, help_, unit, monotonic = route.family
            fam = families[fkey] = Family(fname, ptype, otype, monotonic, help_, unit)
        point = fam.points.get(route.point)
        if point is None:
            point = fam.points[route.point] = Point(
                route.attrs, t_ms, parts=[] if fam.otype in (HISTOGRAM, SUMMARY) else None)
        elif point.ts_ms != t_ms:
            self.dropped += 1
            log.warning("failed to add datapoint: inconsistent timestamps on metric points "
                        "for metric %s %s", labels["__name__"], labels)
            return
        if stale:
            point.stale = True
        if created_ms:
            point.created_ms = created_ms
        part = route.part
        if part == VALUE:
            point.value, point.has_value = value, True
        elif part == BUCKET_PART:
            point.parts.append((route.bound, value))  # type: ignore[union-attr]
        elif part == COUNT_PART:
            point.count, point.has_count = value, True
        elif part == SUM_PART:
            point.sum, point.has_sum = value, True
        else:
            point.created_ms = int(value * 1000)
        if exemplars and (part == VALUE or part == BUCKET_PART) and fam.otype != SUMMARY:
            point.exemplars = (point.exemplars or []) + exemplars

    @staticmethod
    def _special(res: ResourceData, route: Route, labels: dict[str, str]) -> None:
        if route.special == "target_info":
            res.attrs.update((k, v) for k, v in labels.items()
                             if k not in ("job", "instance", "__name__"))
        else:  # otel_scope_info
            res.scope_attrs[route.scope] = {k: v for k, v in labels.items()
                                            if k not in _NOT_ATTRIBUTES}

    # ---- start times as the receiver first sets them -------------------------------------

    def set_initial_start_times(self) -> None:
        """`_created` when known, else the point's own time (the adjuster then carries the
        first observation's time forward); gauges have none."""
        for res in self.resources.values():
            for fam in res.families():
                if fam.otype == GAUGE:
                    continue
                for p in fam.points.values():
                    p.start_ns = p.created_ms * _MS if p.created_ms else p.ts_ms * _MS


# ---- serialization -----------------------------------------------------------------------


def _put_attrs(target: Any, attrs: dict[str, str]) -> None:
    for k, v in attrs.items():
        kv = target.add()
        kv.key = k
        kv.value.string_value = v


def _hex_id(text: str, size: int) -> bytes | None:
    """decodeAndCopyToLowerBytes: longer ids keep their first bytes, shorter ones are
    left-padded with zeros; None when it is not hex."""
    want = size * 2
    if len(text) >= want:
        text = text[:want]
    elif len(text) % 2:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw.rjust(size, b"\0")


def _put_exemplars(target: Any, exemplars: list[Exemplar]) -> None:
    for ex in exemplars:
        e = target.add()
        e.time_unix_nano = int(ex.ts_ms) * _MS & _U64
        e.as_double = ex.value
        for k, v in ex.labels.items():
            low = k.lower()
            if low == "trace_id" and (raw := _hex_id(v, 16)) is not None:
                e.trace_id = raw
            elif low == "span_id" and (raw := _hex_id(v, 8)) is not None:
                e.span_id = raw
            else:
                kv = e.filtered_attributes.add()
                kv.key = k
                kv.value.string_value = v


def _new_point(target: Any, p: Point) -> Any:
    """A data point added to `target` with the point's attributes, start time and time."""
    dp = target.add()
    _put_attrs(dp.attributes, p.attrs)
    if p.start_ns:
        dp.start_time_unix_nano = p.start_ns & _U64
    dp.time_unix_nano = p.ts_ms * _MS & _U64
    return dp


def _number_points(target: Any, fam: Family) -> None:
    for p in fam.points.values():
        if not p.has_value:
            continue
        dp = _new_point(target, p)
        if p.stale:
            dp.flags = NO_RECORDED_VALUE
        else:
            dp.as_double = p.value
        if p.exemplars:
            _put_exemplars(dp.exemplars, p.exemplars)


def _histogram_point(target: Any, p: Point) -> bool:
    if not p.has_count:
        return False
    parts = sorted(p.parts or ())
    if parts and parts[-1][0] == math.inf:
        parts.pop()
    if not p.stale:
        previous = 0.0
        for _, v in parts:
            if math.isnan(v) or v < previous:
                log.debug("dropping histogram point with NaN or decreasing bucket counts: %s",
                          p.attrs)
                return False
            previous = v
        if math.isnan(p.count) or p.count < previous:
            log.debug("dropping histogram point whose count is below its largest bucket: %s",
                      p.attrs)
            return False
        if not _COUNT_MAX > p.count:
            log.debug("dropping histogram point with a count out of range: %s", p.attrs)
            return False
    dp = _new_point(target, p)
    dp.explicit_bounds.extend(b for b, _ in parts)
    if p.stale:
        dp.flags = NO_RECORDED_VALUE
        dp.bucket_counts.extend([0] * (len(parts) + 1))
    else:
        dp.count = int(p.count)
        if p.has_sum:
            dp.sum = p.sum
        counts, previous = [], 0.0
        for _, v in parts:
            counts.append(int(v - previous))
            previous = v
        counts.append(int(p.count - previous))
        dp.bucket_counts.extend(counts)
    if p.exemplars:
        _put_exemplars(dp.exemplars, p.exemplars)
    return True


def _summary_point(target: Any, p: Point) -> bool:
    if not p.has_count:
        return False
    if not p.stale and not 0 <= p.count < _COUNT_MAX:  # NaN, negative, ±Inf, no uint64
        log.debug("dropping summary point with a count out of range: %s", p.attrs)
        return False
    dp = _new_point(target, p)
    if p.stale:
        dp.flags = NO_RECORDED_VALUE
    else:
        if p.has_sum:
            dp.sum = p.sum
        dp.count = int(p.count)
    for quantile, value in sorted(p.parts or ()):
        q = dp.quantile_values.add()
        q.quantile = quantile
        if not p.stale:
            q.value = value
    return True


def _metric(metrics: Any, fam: Family, trim: bool) -> None:
    m = metrics.add()
    m.name = trim_suffixes(fam.name, fam.otype, fam.unit) if trim else fam.name
    m.description = fam.help
    m.unit = unit_to_ucum(fam.unit)
    md = m.metadata.add()
    md.key = "prometheus.type"
    md.value.string_value = fam.prom_type
    if fam.otype == SUM:
        m.sum.aggregation_temporality = CUMULATIVE
        m.sum.is_monotonic = fam.monotonic
        _number_points(m.sum.data_points, fam)
        n = len(m.sum.data_points)
    elif fam.otype == HISTOGRAM:
        m.histogram.aggregation_temporality = CUMULATIVE
        n = sum(_histogram_point(m.histogram.data_points, p) for p in fam.points.values())
    elif fam.otype == SUMMARY:
        n = sum(_summary_point(m.summary.data_points, p) for p in fam.points.values())
    else:
        _number_points(m.gauge.data_points, fam)
        n = len(m.gauge.data_points)
    if n == 0:
        del metrics[-1]


def to_request(resources: list[ResourceData], version: str, trim: bool = False
               ) -> ExportMetricsServiceRequest:
    """The request for one scrape; resources and scopes without data points are left out."""
    req = ExportMetricsServiceRequest()
    for res in resources:
        rm = req.resource_metrics.add()
        _put_attrs(rm.resource.attributes, res.attrs)
        for scope, families in res.scopes.items():
            sm = rm.scope_metrics.add()
            if scope == ("", ""):
                sm.scope.name, sm.scope.version = SCOPE_NAME, version
            else:
                sm.scope.name, sm.scope.version = scope
                _put_attrs(sm.scope.attributes, res.scope_attrs.get(scope, {}))
            for fam in families.values():
                _metric(sm.metrics, fam, trim)
            if not sm.metrics:
                del rm.scope_metrics[-1]
        if not rm.scope_metrics:
            del req.resource_metrics[-1]
    return req
