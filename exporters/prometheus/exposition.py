"""Accumulated series → the Prometheus text format 0.0.4 or OpenMetrics 1.0, written the way
client_golang (behind the Collector's prometheus exporter) writes them.

- families sorted by name, series in a family by their label values; labels sorted by name, the
  `le` / `quantile` label last; `# HELP` from the metric description, `# TYPE`.
- numbers as Go's strconv 'g' shortest form (`1e+06`), OpenMetrics adding `.0` to integers;
  bucket and count values as integers; histograms cumulative, `+Inf` = count.
- OpenMetrics: counter families without their `_total`, exemplars on counters and buckets,
  `unknown` for untyped, `# EOF`. No `_created` lines (client_golang's default).
- a series that cannot be exposed is left out and logged (as client_golang's ContinueOnError
  does): a duplicate label name, a reserved (`__`) one, `le` on a histogram, `quantile` on a
  summary, a second series with the same name and labels, a type other than the one its family
  was first seen with. A family's first HELP wins; families are forgotten after
  metric_expiration without series.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from exporters.prometheus.accumulator import (
    Exemplar,
    HistogramPoint,
    Meta,
    NumberPoint,
    Resource,
    Series,
    SummaryPoint,
)
from exporters.prometheus.names import (
    TARGET_INFO,
    clean_up,
    escape,
    label_name,
    metric_name,
)
from gateway.pdata import shortest_digits

log = logging.getLogger(__name__)

TEXT = "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
OPENMETRICS = "application/openmetrics-text; version={}; charset=utf-8; escaping=underscores"
_SERVICE_KEYS = ("service.name", "service.namespace", "service.instance.id")


# ------------------------------------------------------------------ numbers

def go_g(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64)."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    digits, point = shortest_digits(f)
    sign = "-" if f < 0 else ""
    exp = point - 1
    if exp < -4 or exp >= 6:  # %e for the shortest form when the exponent is outside [-4, 6)
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def text_float(f: float) -> str:
    return "0" if f == 0 else go_g(f)


def om_float(f: float) -> str:
    s = "0" if f == 0 else go_g(f)
    if "." in s or "e" in s or s in ("NaN", "+Inf", "-Inf"):
        return s
    return s + ".0"


def _escape_value(v: str) -> str:
    if "\\" in v or '"' in v or "\n" in v:
        v = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return v


def _escape_help(h: str, openmetrics: bool) -> str:
    h = h.replace("\\", "\\\\").replace("\n", "\\n")
    return h.replace('"', '\\"') if openmetrics else h


# ------------------------------------------------------------------ naming

@dataclass
class Naming:
    namespace: str = ""
    add_suffixes: bool = True
    const_labels: dict[str, str] = field(default_factory=dict)
    _names: dict[Meta, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.namespace = clean_up(self.namespace)
        self._const = [(escape(k), v) for k, v in self.const_labels.items()]

    def name(self, meta: Meta) -> str:
        found = self._names.get(meta)
        if found is None:
            if len(self._names) > 10_000:
                self._names.clear()
            found = self._names[meta] = escape(metric_name(
                meta.name, meta.unit, meta.kind, meta.monotonic, self.namespace,
                self.add_suffixes)) if meta.name else ""
        return found

    def labels(self, s: Series) -> tuple[tuple[tuple[str, str], ...], str] | str:
        """The series' sorted label pairs and their rendered body, or why it has none."""
        pairs = [(escape(label_name(k)), v) for k, v in s.attrs]
        _, _, _, _, job, instance = s.key
        if job is not None:
            pairs.append(("job", job))
        if instance is not None:
            pairs.append(("instance", instance))
        pairs += self._const
        names = [n for n, _ in pairs]
        if len(set(names)) != len(names):
            return "duplicate label names " + ", ".join(sorted({n for n in names
                                                                 if names.count(n) > 1}))
        for n in names:
            if n.startswith("__") or not n:
                return f"{n!r} is not a valid label name"
        reserved = {"histogram": "le", "summary": "quantile"}.get(s.meta.kind)
        if reserved in names:
            return f"label {reserved!r} is reserved for {s.meta.kind}s"
        pairs.sort()
        return tuple(pairs), ",".join(f'{n}="{_escape_value(v)}"' for n, v in pairs)


# ------------------------------------------------------------------ families

class Families:
    """client_golang's per-name metadata check: the first type and HELP a name is seen with
    stay until the name has gone unseen for metric_expiration."""

    def __init__(self, expiration: float) -> None:
        self.expiration = expiration
        self._known: dict[str, list[Any]] = {}

    def check(self, name: str, mtype: str, help_: str, now: float) -> str | None:
        found = self._known.get(name)
        if found is None:
            self._known[name] = [mtype, help_, now]
            return help_
        if found[0] != mtype:
            return None
        found[2] = now
        return str(found[1])

    def cleanup(self, now: float) -> None:
        limit = now - self.expiration
        for name in [n for n, v in self._known.items() if v[2] < limit]:
            del self._known[name]


# ------------------------------------------------------------------ rendering

@dataclass
class _Family:
    name: str
    mtype: str  # counter | gauge | untyped | histogram | summary
    help: str
    items: list[tuple[tuple[str, ...], int, str, Any]] = field(default_factory=list)
    timestamps: bool = True


class Renderer:
    def __init__(self, naming: Naming, families: Families, send_timestamps: bool) -> None:
        self.naming = naming
        self.families = families
        self.send_timestamps = send_timestamps
        self._logged: dict[tuple[str, str], float] = {}

    def render(self, series: list[Series], openmetrics: bool) -> bytes:
        now = time.monotonic()
        fams: dict[str, _Family] = {}
        self._target_info(series, fams)
        seen: set[tuple[str, str]] = set()
        for s in series:
            self._add(s, fams, seen, now)
        self.families.cleanup(now)
        out: list[str] = []
        for name in sorted(fams):
            fam = fams[name]
            fam.items.sort(key=lambda it: (it[1], it[0]))
            self._family(fam, out, openmetrics)
        if openmetrics:
            out.append("# EOF\n")
        return "".join(out).encode()

    def _add(self, s: Series, fams: dict[str, _Family], seen: set[tuple[str, str]],
             now: float) -> None:
        meta = s.meta
        name = self.naming.name(meta)
        if s.rendered is None:
            s.rendered = self.naming.labels(s)
        rendered = s.rendered
        if not name:
            return self._skip(meta.name, "metric name is empty")
        if isinstance(rendered, str):
            return self._skip(name, rendered)
        mtype = {"gauge": "gauge", "sum": "counter" if meta.monotonic else "gauge",
                 "histogram": "histogram", "summary": "summary"}[meta.kind]
        help_ = self.families.check(name, mtype, meta.description, now)
        if help_ is None:
            return self._skip(name, f"instrument type conflict: {mtype} is not the type the "
                                    "name was first seen with")
        pairs, body = rendered
        if (name, body) in seen:
            return self._skip(name, f"a series with the same name and labels {{{body}}} was "
                                    "collected before (the same name from two scopes or from "
                                    "two OTLP names)")
        seen.add((name, body))
        if meta.untyped:
            mtype = "untyped"
        fam = fams.get(name)
        if fam is None:
            fam = fams[name] = _Family(name, mtype, help_)
        fam.items.append((tuple(v for _, v in pairs), len(pairs), body, s.point))

    def _skip(self, name: str, why: str) -> None:
        now = time.monotonic()
        if now - self._logged.get((name, why), -3600.0) >= 60:
            if len(self._logged) > 10_000:
                self._logged.clear()
            self._logged[(name, why)] = now
            log.error("prometheus exporter: failed to convert metric %s: %s", name, why)

    def _target_info(self, series: list[Series], fams: dict[str, _Family]) -> None:
        name = f"{self.naming.namespace}_{TARGET_INFO}" if self.naming.namespace else TARGET_INFO
        done: set[tuple[str, str]] = set()
        fam = _Family(name, "gauge", "Target metadata", timestamps=False)
        for s in series:
            r = s.resource
            if not r.job or not r.instance or (r.job, r.instance) in done:
                continue
            done.add((r.job, r.instance))
            labels = _target_labels(r)
            if any(n.startswith("__") or not n for n in labels):
                self._skip(name, "a resource attribute maps to a reserved label name")
                continue
            pairs = sorted(labels.items())
            body = ",".join(f'{n}="{_escape_value(v)}"' for n, v in pairs)
            fam.items.append((tuple(v for _, v in pairs), len(pairs), body,
                              NumberPoint(0, 0, 1.0, None)))
        if fam.items:
            fams[name] = fam

    def _family(self, fam: _Family, out: list[str], om: bool) -> None:
        name, mtype = fam.name, fam.mtype
        head = name
        if om and mtype == "counter" and name.endswith("_total"):
            head = name[:-6]
        out.append(f"# HELP {head} {_escape_help(fam.help, om)}\n")
        out.append(f"# TYPE {head} {'unknown' if om and mtype == 'untyped' else mtype}\n")
        fmt = om_float if om else text_float
        for _, _, body, point in fam.items:
            ts = self._timestamp(point, om) if fam.timestamps else ""
            if mtype == "histogram":
                self._histogram(name, body, point, ts, fmt, om, out)
            elif mtype == "summary":
                self._summary(name, body, point, ts, fmt, out)
            else:
                labels = f"{{{body}}}" if body else ""
                sample = f"{head}_total" if om and mtype == "counter" else name
                ex = _exemplar(point.exemplar) if om and point.exemplar else ""
                out.append(f"{sample}{labels} {fmt(float(point.value))}{ts}{ex}\n")

    def _timestamp(self, point: Any, om: bool) -> str:
        if not self.send_timestamps:
            return ""
        ms = point.time // 1_000_000
        return f" {om_float(ms / 1000)}" if om else f" {ms}"

    @staticmethod
    def _histogram(name: str, body: str, p: HistogramPoint, ts: str, fmt: Any, om: bool,
                   out: list[str]) -> None:
        sep = "," if body else ""
        for bound, cum, ex in _buckets(p, om):
            exs = _exemplar(ex) if ex is not None else ""
            out.append(f'{name}_bucket{{{body}{sep}le="{fmt(bound)}"}} {cum}{ts}{exs}\n')
        labels = f"{{{body}}}" if body else ""
        out.append(f"{name}_sum{labels} {fmt(p.sum)}{ts}\n")
        out.append(f"{name}_count{labels} {p.count}{ts}\n")

    @staticmethod
    def _summary(name: str, body: str, p: SummaryPoint, ts: str, fmt: Any,
                 out: list[str]) -> None:
        sep = "," if body else ""
        for q, v in sorted(dict(p.quantiles).items()):
            out.append(f'{name}{{{body}{sep}quantile="{fmt(q)}"}} {fmt(v)}{ts}\n')
        labels = f"{{{body}}}" if body else ""
        out.append(f"{name}_sum{labels} {fmt(p.sum)}{ts}\n")
        out.append(f"{name}_count{labels} {p.count}{ts}\n")


def _target_labels(r: Resource) -> dict[str, str]:
    labels: dict[str, str] = {}
    for k, v in r.attrs.items():
        if k in _SERVICE_KEYS:
            continue
        n = escape(label_name(k))
        labels[n] = f"{labels[n]};{v}" if n in labels else v
    labels["job"] = r.job or ""
    labels["instance"] = r.instance or ""
    return labels


def _buckets(p: HistogramPoint, om: bool) -> list[tuple[float, int, Exemplar | None]]:
    """Cumulative buckets over the distinct sorted bounds, then `+Inf` = count; in OpenMetrics
    each exemplar sits in the first bucket whose bound is not below its value."""
    first: dict[float, int] = {}
    for i, b in enumerate(p.bounds):
        if b == b and b not in first:
            first[b] = i
    out: list[list[Any]] = []
    cum = 0
    for b in sorted(first):
        i = first[b]
        cum += p.counts[i] if i < len(p.counts) else 0
        out.append([b, cum, None])
    if om:
        for ex in p.exemplars:
            for bucket in out:
                if bucket[0] >= ex.value:
                    bucket[2] = ex
                    break
            else:
                out.append([math.inf, p.count, ex])
    if not out or out[-1][0] != math.inf:
        out.append([math.inf, p.count, None])
    return [(b[0], b[1], b[2]) for b in out]


def _exemplar(e: Exemplar) -> str:
    labels = []
    if e.span_id:
        labels.append(f'span_id="{e.span_id}"')
    if e.trace_id:
        labels.append(f'trace_id="{e.trace_id}"')
    ts = f" {om_float(e.time_ns / 1e9)}" if e.time_ns else ""
    return f" # {{{','.join(labels)}}} {om_float(e.value)}{ts}"


# ------------------------------------------------------------------ negotiation

def negotiate(accept: str, openmetrics_enabled: bool) -> tuple[bool, str]:
    """(OpenMetrics?, Content-Type) for an Accept header, as client_golang negotiates: the most
    preferred acceptable of OpenMetrics (when enabled) and text 0.0.4, text otherwise."""
    offers = []
    for order, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        params = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 0.0
        offers.append((-q, order, fields[0].lower(), params.get("version", "")))
    for _, _, mtype, version in sorted(offers):
        if mtype == "text/plain" and version in ("", "0.0.4"):
            break
        if openmetrics_enabled and mtype == "application/openmetrics-text" and \
                version in ("", "0.0.1", "1.0.0"):
            return True, OPENMETRICS.format("1.0.0" if version == "1.0.0" else "0.0.1")
    return False, TEXT
