"""Splitting one OTLP request into several of at most N items (batch send_batch_max_size)."""

from __future__ import annotations

from typing import Any

from gateway.signals import Signal, count_items

_FIELDS = {
    Signal.TRACES: ("resource_spans", "scope_spans", "spans"),
    Signal.LOGS: ("resource_logs", "scope_logs", "log_records"),
    Signal.METRICS: ("resource_metrics", "scope_metrics", "metrics"),
}


def _item_size(signal: Signal, item: Any) -> int:
    if signal is not Signal.METRICS:
        return 1
    kind = item.WhichOneof("data")
    return max(1, len(getattr(item, kind).data_points)) if kind else 1


def split_request(signal: Signal, request: Any, max_items: int) -> list[Any]:
    """Requests of at most max_items items each (a metric is never cut through its points)."""
    res_field, scope_field, item_field = _FIELDS[signal]
    out: list[Any] = []
    current = signal.request_type()
    size = 0
    for res in getattr(request, res_field):
        for scope in getattr(res, scope_field):
            items = getattr(scope, item_field)
            target_scope = None
            for item in items:
                n = _item_size(signal, item)
                if size and size + n > max_items:
                    out.append(current)
                    current, size, target_scope = signal.request_type(), 0, None
                if target_scope is None:
                    target_res = getattr(current, res_field).add()
                    target_res.resource.CopyFrom(res.resource)
                    target_res.schema_url = res.schema_url
                    target_scope = getattr(target_res, scope_field).add()
                    target_scope.scope.CopyFrom(scope.scope)
                    target_scope.schema_url = scope.schema_url
                getattr(target_scope, item_field).add().CopyFrom(item)
                size += n
    if size:
        out.append(current)
    assert sum(count_items(signal, r) for r in out) == count_items(signal, request)
    return out
