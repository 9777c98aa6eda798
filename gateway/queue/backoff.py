"""Exponential backoff with jitter, as the Collector's `retry_on_failure` computes it."""

from __future__ import annotations

import random

from gateway.queue.config import RetrySettings

_FLOOR = 0.01  # an initial_interval of 0 must not turn a retry loop into a busy loop


class Backoff:
    """Successive waits: interval × (1 ± randomization_factor), the interval growing by
    `multiplier` up to `max_interval`."""

    def __init__(self, cfg: RetrySettings) -> None:
        self.cfg = cfg
        self.interval = cfg.initial_interval

    def next(self) -> float:
        jitter = self.cfg.randomization_factor * (2 * random.random() - 1)
        wait = max(_FLOOR, self.interval * (1 + jitter))
        self.interval = min(self.interval * self.cfg.multiplier, self.cfg.max_interval)
        return wait
