"""The `attributes` processor: actions on the attributes of every span, log record or metric
data point that `include` selects and `exclude` does not.

The request is edited in place (upb message API); its received bytes are kept, and nothing is
re-serialized, when no action changed anything.
"""

from __future__ import annotations

from typing import Any

from gateway.component import ComponentID, Consumer, Host
from gateway.errors import ConfigError
from gateway.payload import Payload
from gateway.signals import Signal, resources
from processors.attributes import matching
from processors.attributes.actions import AttrProc, Step, apply
from processors.attributes.config import AttributesConfig
from processors.attributes.matching import Matcher

# (scopes field, items field) per signal
_LEVELS = {Signal.TRACES: ("scope_spans", "spans"), Signal.LOGS: ("scope_logs", "log_records"),
           Signal.METRICS: ("scope_metrics", "metrics")}

Steps = list[tuple[Step, Any]]


class AttributesProcessor:
    def __init__(self, cid: ComponentID, cfg: AttributesConfig, signal: Signal,
                 nxt: Consumer) -> None:
        self.id = cid
        self.signal = signal
        self.next = nxt
        self._proc = AttrProc([a.spec() for a in cfg.actions])
        self._include = _build(cid, "include", cfg.include, signal)
        self._exclude = _build(cid, "exclude", cfg.exclude, signal)
        self._scopes, self._items = _LEVELS[signal]
        self._apply_item = _apply_metric if signal is Signal.METRICS else _apply_attributes

    async def start(self, host: Host) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def consume(self, payload: Payload) -> None:
        if payload.items:
            steps = self._proc.bind(payload.context)
            # Edits go to the parsed message; only a change makes its received bytes stale.
            if steps and self.process(payload.message, steps):
                payload.mutable_message()
        await self.next.consume(payload)

    def process(self, request: Any, steps: Steps) -> bool:
        """Run the actions over the selected items of a request; True if anything changed."""
        if self._include is None and self._exclude is None:
            return self._process_all(request, steps)
        return self._process_matching(request, steps, self._include, self._exclude)

    def _process_all(self, request: Any, steps: Steps) -> bool:
        changed = False
        apply_item = self._apply_item
        for rs in resources(self.signal, request):
            for scope in getattr(rs, self._scopes):
                for item in getattr(scope, self._items):
                    if apply_item(steps, item):
                        changed = True
        return changed

    def _process_matching(self, request: Any, steps: Steps, inc: Matcher | None,
                          exc: Matcher | None) -> bool:
        changed = False
        apply_item = self._apply_item
        inc_item = inc.item if inc is not None else None
        for rs in resources(self.signal, request):
            if inc is not None and inc.resource is not None and not inc.resource(rs.resource):
                continue
            exc_resource = exc is not None and (exc.resource is None or exc.resource(rs.resource))
            for scope in getattr(rs, self._scopes):
                if inc is not None and inc.scope is not None and not inc.scope(scope.scope):
                    continue
                exc_item = None
                if exc_resource and exc is not None and (exc.scope is None
                                                         or exc.scope(scope.scope)):
                    if exc.item is None:
                        continue  # the whole scope is excluded
                    exc_item = exc.item
                for item in getattr(scope, self._items):
                    if inc_item is not None and not inc_item(item):
                        continue
                    if exc_item is not None and exc_item(item):
                        continue
                    if apply_item(steps, item):
                        changed = True
        return changed


def _build(cid: ComponentID, side: str, props: Any, signal: Signal) -> Matcher | None:
    try:
        return matching.build(props, signal)
    except ValueError as exc:
        raise ConfigError([f"processors::{cid}::{side}: {exc} (in a {signal.value} pipeline)"]
                          ) from None


def _apply_attributes(steps: Steps, item: Any) -> bool:
    return apply(steps, item.attributes)


def _apply_metric(steps: Steps, metric: Any) -> bool:
    """Metrics have no attributes of their own: the actions run on each data point's."""
    kind = metric.WhichOneof("data")
    if kind is None:
        return False
    changed = False
    for point in getattr(metric, kind).data_points:
        if apply(steps, point.attributes):
            changed = True
    return changed
