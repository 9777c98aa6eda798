"""The memory check: measures the process every check_interval and sets the flag the processors
read on the hot path.

As in the Collector, there is one check per distinct configuration, shared by the processor
instances of every pipeline (processors are one instance per pipeline): the first to start
starts it, the last to shut down stops it. It runs on its own thread, so it keeps measuring
(and releasing memory) while the event loop is busy with the very flood it must hold back.

Above the soft limit (limit - spike) data is refused; above the hard limit memory is also
released at every check (rate-limited by min_gc_interval_when_hard_limited), and while between
the two, at most every min_gc_interval_when_soft_limited. Normal operation resumes by itself
once the RSS is below the soft limit again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from processors.memory_limiter import sysmem
from processors.memory_limiter.config import MemoryLimiterConfig

log = logging.getLogger(__name__)

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Thresholds in bytes."""

    hard: int
    spike: int

    @property
    def soft(self) -> int:
        return self.hard - self.spike

    @classmethod
    def from_config(cls, cfg: MemoryLimiterConfig,
                    total_memory: Callable[[], int] = sysmem.total_memory) -> Limits:
        """limit_mib wins over limit_percentage; a spike limit of 0 means 20% of the limit."""
        if cfg.limit_mib:
            hard, spike = cfg.limit_mib * MiB, cfg.spike_limit_mib * MiB
        else:
            total = total_memory()
            hard = total * cfg.limit_percentage // 100
            spike = total * cfg.spike_limit_percentage // 100
            log.info("memory_limiter: limits are percentages of %d MiB of total memory",
                     total // MiB)
        return cls(hard, spike or hard // 5)


class MemoryLimiter:
    def __init__(
        self, limits: Limits, check_interval: float, min_release_interval_soft: float = 10.0,
        min_release_interval_hard: float = 0.0, *,
        read_rss: Callable[[], int] = sysmem.process_rss,
        release_memory: Callable[[], None] = sysmem.release_memory,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.check_interval = check_interval
        self.refusing = False  # the one thing the hot path reads
        self.refusal = ""  # why, as the refused client is told
        self.rss = 0  # bytes, at the last check
        self._min_release = (min_release_interval_soft, min_release_interval_hard)
        self._read_rss = read_rss
        self._release_memory = release_memory
        self._clock = clock
        self._last_release = clock()  # as the Collector: no forced release right at start
        self._refusing_since = 0.0
        self._hard_seen = False  # in the current refusal episode
        self._failing = False
        self._users = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, cfg: MemoryLimiterConfig) -> MemoryLimiter:
        return cls(Limits.from_config(cfg), cfg.check_interval,
                   cfg.min_gc_interval_when_soft_limited, cfg.min_gc_interval_when_hard_limited)

    # ------------------------------------------------------------------ lifecycle (ref-counted)

    def start(self) -> None:
        with self._lock:
            self._users += 1
            if self._users > 1:
                return
            self._safe_check()  # the flag and gauge are right from the first request on
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), daemon=True,
                                            name="memory_limiter")
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users:
                return
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=5)  # at most one check (a GC) is under way
                self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.check_interval):
            self._safe_check()

    def _safe_check(self) -> None:
        try:
            self.check()
        except Exception:  # the thread must outlive a failed measurement
            if not self._failing:
                log.exception("memory_limiter: measuring memory failed; keeping the last state")
            self._failing = True
        else:
            self._failing = False

    # ------------------------------------------------------------------------------ the check

    def check(self) -> None:
        """One measurement: release memory when over a limit and due, then set the flag."""
        limits = self.limits
        rss = self._read_rss()
        hard = rss >= limits.hard
        if rss >= limits.soft and self._release_due(hard):
            rss = self._release(rss)
        self.rss = rss
        self._transition(rss >= limits.soft, hard)

    def _release_due(self, hard: bool) -> bool:
        return self._clock() - self._last_release >= self._min_release[hard]

    def _release(self, before: int) -> int:
        started = self._clock()
        self._release_memory()
        self._last_release = self._clock()
        after = self._read_rss()
        log.debug("memory_limiter: forced memory release: RSS %d MiB -> %d MiB in %.0f ms",
                  before // MiB, after // MiB, (self._last_release - started) * 1000)
        return after

    def _transition(self, refusing: bool, hard: bool) -> None:
        """Logs a change of state once, not per check or per request."""
        limits, rss = self.limits, self.rss
        if refusing:
            self.refusal = (f"data refused due to high memory usage: the memory limit is reached "
                            f"(process RSS {rss // MiB} MiB, soft limit {limits.soft // MiB} MiB, "
                            f"hard limit {limits.hard // MiB} MiB); retry later")
        if refusing and not self.refusing:
            self._refusing_since = self._clock()
            self._hard_seen = hard
            log.warning("memory_limiter: memory usage is above the %s limit, refusing data "
                        "(RSS %d MiB, soft limit %d MiB, hard limit %d MiB)",
                        "hard" if hard else "soft", rss // MiB, limits.soft // MiB,
                        limits.hard // MiB)
        elif refusing and hard and not self._hard_seen:
            self._hard_seen = True
            log.warning("memory_limiter: memory usage reached the hard limit, still refusing "
                        "data and releasing memory at every check (RSS %d MiB, hard limit "
                        "%d MiB)", rss // MiB, limits.hard // MiB)
        elif not refusing and self.refusing:
            log.info("memory_limiter: memory usage is back within limits, resuming normal "
                     "operation after %.1fs of refusing data (RSS %d MiB, soft limit %d MiB)",
                     self._clock() - self._refusing_since, rss // MiB, limits.soft // MiB)
        self.refusing = refusing


_shared: dict[MemoryLimiterConfig, MemoryLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(cfg: MemoryLimiterConfig) -> MemoryLimiter:
    """The process-wide limiter for this configuration, made on first use."""
    with _shared_lock:
        limiter = _shared.get(cfg)
        if limiter is None:
            limiter = _shared[cfg] = MemoryLimiter.from_config(cfg)
            limits = limiter.limits
            log.info("memory_limiter: limit %d MiB, spike limit %d MiB (refusing data above "
                     "%d MiB of RSS), check interval %gs", limits.hard // MiB,
                     limits.spike // MiB, limits.soft // MiB, cfg.check_interval)
        return limiter
