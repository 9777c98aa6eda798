"""Kubernetes core/v1 Events into OTLP log records, as the Collector's k8seventsreceiver maps them.

Per event one ResourceLogs (the resource is the involved object) with one ScopeLogs (the
receiver's scope name) holding one record:

- resource: k8s.node.name, k8s.object.kind / name / uid / fieldpath / api_version /
  resource_version (the involved object's fields, empty strings kept as upstream does);
- record attributes: k8s.event.reason, k8s.event.action, k8s.event.start_time (the event's
  creationTimestamp in Go's time.String() form, as upstream writes it), k8s.event.name,
  k8s.event.uid, k8s.namespace.name (the involved object's), k8s.event.count (when not 0);
- body = message; severity from the type (Normal → INFO 9, Warning → WARN 13, Error → ERROR 17,
  Critical → FATAL 21, text = the type as written; other types: none);
- time = eventTime, else lastTimestamp, else firstTimestamp.

otelgw additions, each only where it has a value, so that correlation works:
- resource k8s.node.name is never written empty (upstream writes source.host even when ""): it
  is source.host, else the object's name for a Node, else reportingInstance when the kubelet
  reported it; left out otherwise, so k8sattributes can fill it from the pod;
- resource k8s.pod.name / k8s.pod.uid for Pod events (what k8sattributes associates by) and
  k8s.namespace.name (the object's namespace);
- record attributes k8s.event.resource_version (the event's own: with the uid it identifies one
  occurrence), k8s.event.first_timestamp (RFC 3339), k8s.event.reporting_component
  (source.component or reportingComponent), k8s.event.type;
- an event recorded through events.k8s.io with a series takes its time from
  series.lastObservedTime and its count from series.count when count is 0 (upstream would stamp
  every repetition with the first occurrence and leave the count out).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

SCOPE_NAME = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/k8seventsreceiver"

SEVERITY = {"normal": 9, "warning": 13, "error": 17, "critical": 21}


try:  # the scope version is the build's, as the Collector's BuildInfo.Version
    VERSION = importlib.metadata.version("otelgw")
except importlib.metadata.PackageNotFoundError:
    VERSION = "0.0.0"


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 (Micro)Time of the API, or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _ns(t: datetime) -> int:
    delta = t - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def go_time_string(value: Any) -> str:
    """metav1.Time's String() of a time the Collector decoded (in UTC, as in a container)."""
    t = parse_time(value)
    if t is None:
        return "0001-01-01 00:00:00 +0000 UTC"
    t = t.astimezone(timezone.utc)
    frac = f".{t.microsecond:06d}".rstrip("0") if t.microsecond else ""
    return f"{t:%Y-%m-%d %H:%M:%S}{frac} +0000 UTC"


def event_time(ev: dict) -> datetime | None:
    series = _dict(ev.get("series"))
    for value in (series.get("lastObservedTime"), ev.get("eventTime"), ev.get("lastTimestamp"),
                  ev.get("firstTimestamp")):
        t = parse_time(value)
        if t is not None:
            return t
    return None


def first_time(ev: dict) -> datetime | None:
    for value in (ev.get("firstTimestamp"), ev.get("eventTime"),
                  _dict(ev.get("metadata")).get("creationTimestamp")):
        t = parse_time(value)
        if t is not None:
            return t
    return None


def event_count(ev: dict) -> int:
    count = ev.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or not count:
        count = _dict(ev.get("series")).get("count")
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def node_name(ev: dict) -> str:
    involved = _dict(ev.get("involvedObject"))
    host = _str(_dict(ev.get("source")).get("host"))
    if host:
        return host
    if involved.get("kind") == "Node":
        return _str(involved.get("name"))
    if (_dict(ev.get("source")).get("component") or ev.get("reportingComponent")) == "kubelet":
        return _str(ev.get("reportingInstance"))
    return ""


def _put(attrs: Any, key: str, value: str | int) -> None:
    kv = attrs.add()
    kv.key = key
    if isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.string_value = value


def add_event(request: ExportLogsServiceRequest, ev: dict) -> None:
    """Append one event as one ResourceLogs to `request`."""
    meta = _dict(ev.get("metadata"))
    involved = _dict(ev.get("involvedObject"))
    source = _dict(ev.get("source"))
    rl = request.resource_logs.add()
    res = rl.resource.attributes
    node = node_name(ev)
    if node:
        _put(res, "k8s.node.name", node)
    for key, field in (("kind", "kind"), ("name", "name"), ("uid", "uid"),
                       ("fieldpath", "fieldPath"), ("api_version", "apiVersion"),
                       ("resource_version", "resourceVersion")):
        _put(res, f"k8s.object.{key}", _str(involved.get(field)))
    namespace = _str(involved.get("namespace"))
    if namespace:
        _put(res, "k8s.namespace.name", namespace)
    if involved.get("kind") == "Pod":
        if involved.get("name"):
            _put(res, "k8s.pod.name", _str(involved["name"]))
        if involved.get("uid"):
            _put(res, "k8s.pod.uid", _str(involved["uid"]))

    sl = rl.scope_logs.add()
    sl.scope.name, sl.scope.version = SCOPE_NAME, VERSION
    lr = sl.log_records.add()
    t = event_time(ev)
    if t is not None:
        lr.time_unix_nano = max(0, _ns(t))
    lr.body.string_value = _str(ev.get("message"))
    kind = _str(ev.get("type"))
    severity = SEVERITY.get(kind.lower())
    if severity is not None:
        lr.severity_number, lr.severity_text = severity, kind
    attrs = lr.attributes
    _put(attrs, "k8s.event.reason", _str(ev.get("reason")))
    _put(attrs, "k8s.event.action", _str(ev.get("action")))
    _put(attrs, "k8s.event.start_time", go_time_string(meta.get("creationTimestamp")))
    _put(attrs, "k8s.event.name", _str(meta.get("name")))
    _put(attrs, "k8s.event.uid", _str(meta.get("uid")))
    _put(attrs, "k8s.namespace.name", namespace)
    count = event_count(ev)
    if count:
        _put(attrs, "k8s.event.count", count)
    _put(attrs, "k8s.event.resource_version", _str(meta.get("resourceVersion")))
    first = first_time(ev)
    if first is not None:
        _put(attrs, "k8s.event.first_timestamp",
             first.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"))
    component = _str(source.get("component")) or _str(ev.get("reportingComponent"))
    if component:
        _put(attrs, "k8s.event.reporting_component", component)
    if kind:
        _put(attrs, "k8s.event.type", kind)


def to_request(events: Iterable[dict]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for ev in events:
        add_event(request, ev)
    return request
