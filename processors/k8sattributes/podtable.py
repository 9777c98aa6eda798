"""The pod table: identifier → pod, with deletions delayed by a grace period.

Telemetry often arrives after its pod is gone (batches, retries, a last flush on SIGTERM), so a
deleted pod stays findable for a grace period (the Collector's 2 minutes) before it is forgotten.
An identifier re-used by a newer pod (an IP handed to the next pod) is not taken back by a late
event about the older one: the pod that started later owns it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime

from processors.k8sattributes.association import Identifier
from processors.k8sattributes.objects import Pod

DELETE_GRACE_PERIOD = 120.0


def _started(pod: Pod) -> float | None:
    if not pod.start_time:
        return None
    try:
        return datetime.fromisoformat(pod.start_time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class PodTable:
    def __init__(self, grace_period: float = DELETE_GRACE_PERIOD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_period = grace_period
        self._clock = clock
        self._pods: dict[Identifier, Pod] = {}
        self._deletes: deque[tuple[float, Identifier, Pod]] = deque()

    def __len__(self) -> int:
        return len(self._pods)

    def get(self, identifier: Identifier) -> Pod | None:
        return self._pods.get(identifier)

    def pods(self) -> set[int]:
        """Distinct pods held (by object identity), for tests and diagnostics."""
        return {id(p) for p in self._pods.values()}

    def put(self, pod: Pod, identifiers: Iterable[Identifier]) -> None:
        started = _started(pod)
        for ident in identifiers:
            current = self._pods.get(ident)
            if current is not None and current.uid != pod.uid and started is not None:
                other = _started(current)
                if other is not None and started < other:
                    continue  # a late event of an older pod must not take the newer one's IP
            self._pods[ident] = pod

    def remove(self, pod: Pod, identifiers: Iterable[Identifier]) -> None:
        """Forget `pod` under `identifiers` after the grace period (if it still holds them)."""
        now = self._clock()
        for ident in identifiers:
            current = self._pods.get(ident)
            if current is not None and current.uid == pod.uid:
                self._deletes.append((now, ident, current))

    def expire(self) -> int:
        """Drop the entries whose grace period is over; returns how many were dropped."""
        cutoff = self._clock() - self.grace_period
        dropped = 0
        while self._deletes and self._deletes[0][0] <= cutoff:
            _, ident, pod = self._deletes.popleft()
            # the very record queued: not re-used by a newer pod, nor re-added since
            if self._pods.get(ident) is pod:
                del self._pods[ident]
                dropped += 1
        return dropped

    def clear(self) -> None:
        self._pods.clear()
        self._deletes.clear()
