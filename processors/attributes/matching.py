"""`include` / `exclude` of the attributes processor: the Collector's filterspan, filterlog and
filtermetric property matchers (internal/filter), compiled once per pipeline.

A matcher is split by level so a request pays per resource for resource properties
(services, resources), per scope for libraries, and per item only for item properties:
an include that a resource fails skips its items without looking at them.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway import goregex
from gateway.pdata import as_string
from gateway.signals import Signal
from processors.attributes.config import AttributeMatch, MatchProperties, RegexpOptions
from processors.attributes.values import equal, from_raw, match_string

log = logging.getLogger(__name__)

# traceutil.SpanKindStr; an unknown kind is "".
SPAN_KINDS = {0: "SPAN_KIND_UNSPECIFIED", 1: "SPAN_KIND_INTERNAL", 2: "SPAN_KIND_SERVER",
              3: "SPAN_KIND_CLIENT", 4: "SPAN_KIND_PRODUCER", 5: "SPAN_KIND_CONSUMER"}
_STRICT_KINDS = sorted(v for k, v in SPAN_KINDS.items() if k)

Check = Callable[[Any], bool]


@dataclass(frozen=True)
class Matcher:
    """Each level is None when no property of that level was configured (it matches)."""

    resource: Check | None = None
    scope: Check | None = None
    item: Check | None = None


class FilterSet:
    """Strings matched exactly (strict) or by any of several regexps, searched anywhere in the
    text as Go's MatchString does."""

    def __init__(self, items: list[str], match_type: str, options: RegexpOptions | None) -> None:
        self._strict: frozenset[str] | None = None
        self._regexes: list[re.Pattern[str]] = []
        self._cache: OrderedDict[str, bool] | None = None
        self._cache_max = 0
        if match_type == "strict":
            self._strict = frozenset(items)
            return
        self._regexes = [goregex.compile(p) for p in dict.fromkeys(items)]
        if options is not None and options.cacheenabled:
            self._cache = OrderedDict()
            self._cache_max = options.cachemaxnumentries

    def matches(self, text: str) -> bool:
        if self._strict is not None:
            return text in self._strict
        cache = self._cache
        if cache is not None and text in cache:
            cache.move_to_end(text)
            return cache[text]
        found = any(r.search(text) for r in self._regexes)
        if cache is not None:
            cache[text] = found
            if self._cache_max and len(cache) > self._cache_max:
                cache.popitem(last=False)
        return found


def attributes_check(entries: list[AttributeMatch], props: MatchProperties) -> Check | None:
    """All entries must be present (and match their value); an empty map never matches."""
    if not entries:
        return None
    compiled: list[tuple[str, Any, FilterSet | None]] = []
    for entry in entries:
        if entry.value is None:
            compiled.append((entry.key, None, None))
        elif props.match_type == "regexp":
            compiled.append((entry.key, None,
                             FilterSet([entry.value], "regexp", props.regexp)))
        else:
            compiled.append((entry.key, from_raw(entry.value, entry.key), None))

    def check(attrs: Any) -> bool:
        if not len(attrs):
            return False
        for key, value, fs in compiled:
            for kv in attrs:
                if kv.key == key:
                    break
            else:
                return False
            if fs is not None:
                text = match_string(kv.value)
                if text is None or not fs.matches(text):
                    return False
            elif value is not None and not equal(value, kv.value):
                return False
        return True
    return check


def _all(checks: list[Check | None]) -> Check | None:
    active = [c for c in checks if c is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]
    return lambda x: all(c(x) for c in active)


def _names(items: list[str], props: MatchProperties, get: Callable[[Any], str]) -> Check | None:
    if not items:
        return None
    fs = FilterSet(items, props.match_type, props.regexp)
    return lambda x: fs.matches(get(x))


def _service_name(resource: Any) -> str:
    for kv in resource.attributes:
        if kv.key == "service.name":
            return as_string(kv.value)
    return "<nil-service-name>"


def _libraries(props: MatchProperties) -> Check | None:
    """Every configured library must match the scope (name, and version when given)."""
    if not props.libraries:
        return None
    sets = [(FilterSet([lib.name], props.match_type, props.regexp),
             None if lib.version is None
             else FilterSet([lib.version], props.match_type, props.regexp))
            for lib in props.libraries]
    return lambda scope: all(n.matches(scope.name) and (v is None or v.matches(scope.version))
                             for n, v in sets)


def _resources(props: MatchProperties) -> Check | None:
    check = attributes_check(props.resources, props)
    return None if check is None else (lambda res: check(res.attributes))


def _item_attributes(props: MatchProperties) -> Check | None:
    check = attributes_check(props.attributes, props)
    return None if check is None else (lambda item: check(item.attributes))


def build(props: MatchProperties | None, signal: Signal) -> Matcher | None:
    """The matcher of one include/exclude for one signal; ValueError for properties that do
    not apply to it (the Collector's ValidateForSpans / ValidateForLogs / ValidateForMetrics)."""
    if props is None:
        return None
    if signal is Signal.TRACES:
        return _for_spans(props)
    if signal is Signal.LOGS:
        return _for_logs(props)
    return _for_metrics(props)


def _for_spans(p: MatchProperties) -> Matcher:
    for field in ("log_bodies", "log_severity_texts", "metric_names"):
        if getattr(p, field):
            raise ValueError(f"{field} should not be specified for trace spans")
    if p.log_severity_number is not None:
        raise ValueError("log_severity_number should not be specified for trace spans")
    if not (p.services or p.span_names or p.attributes or p.libraries or p.resources
            or p.span_kinds):
        raise ValueError('at least one of "services", "span_names", "span_kinds", '
                         '"attributes", "libraries" or "resources" field must be specified')
    if p.span_kinds and p.match_type == "strict":
        bad = [k for k in p.span_kinds if k not in _STRICT_KINDS]
        if bad:
            raise ValueError(f"span_kinds {bad} must match one of the standard span kinds "
                             f"when match_type=strict: {_STRICT_KINDS}")
    services = _names(p.services, p, _service_name)
    return Matcher(
        resource=_all([services, _resources(p)]),
        scope=_libraries(p),
        item=_all([_names(p.span_names, p, lambda s: s.name),
                   _names(p.span_kinds, p, lambda s: SPAN_KINDS.get(s.kind, "")),
                   _item_attributes(p)]))


def _for_logs(p: MatchProperties) -> Matcher:
    if p.span_names or p.services or p.span_kinds or p.metric_names:
        raise ValueError("services, span_names, span_kinds and metric_names are not valid "
                         "for log records")
    if not (p.attributes or p.libraries or p.resources or p.log_bodies
            or p.log_severity_texts or p.log_severity_number is not None):
        raise ValueError('at least one of "attributes", "libraries", "resources", '
                         '"log_bodies", "log_severity_texts" or "log_severity_number" field '
                         "must be specified")
    severity: Check | None = None
    if p.log_severity_number is not None:
        lowest, undefined = p.log_severity_number.min, p.log_severity_number.match_undefined
        severity = (lambda r: undefined if r.severity_number == 0
                    else r.severity_number >= lowest)
    return Matcher(
        resource=_resources(p),
        scope=_libraries(p),
        item=_all([_names(p.log_bodies, p, lambda r: as_string(r.body)),
                   _names(p.log_severity_texts, p, lambda r: r.severity_text),
                   severity, _item_attributes(p)]))


def _for_metrics(p: MatchProperties) -> Matcher | None:
    if (p.log_bodies or p.log_severity_texts or p.span_names or p.services or p.span_kinds
            or p.attributes or p.libraries or p.log_severity_number is not None):
        raise ValueError('"span_names", "span_kinds", "log_bodies", "log_severity_texts", '
                         '"log_severity_number", "services", "attributes" and "libraries" '
                         "are not valid for metrics")
    if not (p.metric_names or p.resources):
        raise ValueError('at least one of "metric_names" or "resources" field must be '
                         "specified")
    if p.resources:
        # The Collector's filtermetric builds only a metric-name matcher: `resources` is
        # accepted and has no effect. otelgw does the same, and says so.
        log.warning("attributes processor: include/exclude `resources` has no effect on "
                    "metrics (as in the Collector); use metric_names, or the resource "
                    "processor for resource attributes")
    if not p.metric_names:
        return None
    return Matcher(item=_names(p.metric_names, p, lambda m: m.name))
