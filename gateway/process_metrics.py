"""The Collector's process metrics (v0.129 names on its Prometheus endpoint), measured at scrape.

    otelcol_process_uptime_seconds_total          seconds since this process started
    otelcol_process_cpu_seconds_total             user + system CPU time of the process
    otelcol_process_memory_rss_bytes              resident set size
    otelcol_process_runtime_heap_alloc_bytes      bytes in use from malloc (Go: HeapAlloc)
    otelcol_process_runtime_total_sys_memory_bytes  bytes malloc obtained from the OS (Go: Sys)

The Go runtime's heap has no single Python equivalent. The two runtime gauges read glibc's
malloc statistics (mallinfo2): where request bodies, batches and protobuf messages live, which
is most of a gateway's memory; CPython's small-object arenas and the embedded ClickHouse's own
allocator are outside it (RSS covers everything). They are left out where mallinfo2 does not
exist (musl, macOS). otelcol_process_runtime_total_alloc_bytes_total (cumulative bytes ever
allocated) is not exposed: neither CPython nor malloc counts it without tracing every
allocation.

This is the one place process memory is reported; the memory_limiter reads the same RSS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Iterator
from typing import Any

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

UPTIME = "otelcol_process_uptime_seconds"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mallinfo2() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    fn.argtypes = []
    return fn


class ProcessMetrics:
    """A prometheus_client collector of this process's figures."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._started = self._proc.create_time()
        self._mallinfo = _mallinfo2()

    def describe(self) -> list[Metric]:
        return list(self._families(0.0, 0.0, 0, None))

    def collect(self) -> Iterator[Metric]:
        with self._proc.oneshot():
            cpu = self._proc.cpu_times()
            rss = self._proc.memory_info().rss
        heap = self._mallinfo() if self._mallinfo is not None else None
        yield from self._families(max(0.0, time.time() - self._started),
                                  cpu.user + cpu.system, rss, heap)

    def _families(self, uptime: float, cpu: float, rss: int, heap: Any) -> Iterator[Metric]:
        yield CounterMetricFamily(UPTIME, "Uptime of the process", value=uptime)
        yield CounterMetricFamily("otelcol_process_cpu_seconds",
                                  "Total CPU user and system time in seconds", value=cpu)
        yield GaugeMetricFamily("otelcol_process_memory_rss_bytes",
                                "Total physical memory (resident set size)", value=rss)
        if self._mallinfo is None:
            return
        in_use = heap.uordblks + heap.hblkhd if heap is not None else 0
        from_os = heap.arena + heap.hblkhd if heap is not None else 0
        yield GaugeMetricFamily("otelcol_process_runtime_heap_alloc_bytes",
                                "Bytes of allocated heap objects (malloc in use: mallinfo2 "
                                "uordblks + hblkhd)", value=in_use)
        yield GaugeMetricFamily("otelcol_process_runtime_total_sys_memory_bytes",
                                "Total bytes of memory obtained from the OS (malloc: mallinfo2 "
                                "arena + hblkhd)", value=from_os)
