"""memory_limiter: the configuration as the Collector validates it, thresholds from MiB and from
percentages of the (cgroup) total memory, the state machine driven by an injected memory reader,
the processor contract, and a flood against a real gateway process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import psutil
import pytest
from google.rpc import error_details_pb2, status_pb2
from prometheus_client.parser import text_string_to_metric_families

from gateway.component import ComponentID, Host, Kind
from gateway.config import load_config_text
from gateway.errors import ConfigError, RefusedError
from gateway.payload import Payload
from gateway.registry import lookup
from gateway.signals import Signal, resources
from gateway.telemetry import SelfTelemetry
from loadtests import payloads
from loadtests.gatewayproc import Gateway, default_config, free_port
from processors.memory_limiter import sysmem
from processors.memory_limiter.config import MemoryLimiterConfig
from processors.memory_limiter.limiter import MemoryLimiter, MiB, Limits, shared_limiter
from processors.memory_limiter.processor import MemoryLimiterProcessor

# ------------------------------------------------------------------------------ configuration

PIPELINE = """
receivers:
  otlp:
    protocols:
      grpc:
processors:
  memory_limiter:
{body}
exporters:
  clickhouse:
    path: /tmp/otelgw-test-data
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter]
      exporters: [clickhouse]
"""


def limiter_config(body: str) -> MemoryLimiterConfig:
    text = PIPELINE.format(body=textwrap.indent(textwrap.dedent(body).strip(), "    "))
    cfg = load_config_text(text, "test.yaml", {})
    return cfg.processors[ComponentID("memory_limiter")].config  # type: ignore[return-value]


def problems(body: str) -> list[str]:
    text = PIPELINE.format(body=textwrap.indent(textwrap.dedent(body).strip() or "{}", "    "))
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "test.yaml", {})
    return err.value.problems


def test_the_collector_example_loads() -> None:
    cfg = limiter_config("""
        check_interval: 1s
        limit_mib: 4000
        spike_limit_mib: 800
    """)
    assert (cfg.check_interval, cfg.limit_mib, cfg.spike_limit_mib) == (1.0, 4000, 800)
    assert cfg.min_gc_interval_when_soft_limited == 10.0  # the Collector's defaults
    assert cfg.min_gc_interval_when_hard_limited == 0.0


def test_empty_config_reports_every_problem_at_once() -> None:
    # as in the Collector, the default configuration is deliberately invalid
    assert problems("") == [
        "processors::memory_limiter: check_interval must be greater than zero "
        "(1s is recommended); limit_mib or limit_percentage must be greater than zero"]


@pytest.mark.parametrize(("body", "expected"), [
    ("check_interval: 0s\nlimit_mib: 100",
     "processors::memory_limiter: check_interval must be greater than zero (1s is recommended)"),
    ("check_interval: -1s\nlimit_mib: 100",
     "processors::memory_limiter: check_interval must be greater than zero (1s is recommended)"),
    ("check_interval: 1s\nlimit_mib: 100\nspike_limit_mib: 100",
     "processors::memory_limiter: spike_limit_mib (100) must be smaller than limit_mib (100)"),
    ("check_interval: 1s\nlimit_percentage: 50\nspike_limit_percentage: 60",
     "processors::memory_limiter: spike_limit_percentage (60) must be smaller than "
     "limit_percentage (50)"),
    ("check_interval: 1s\nlimit_mib: 100\nmin_gc_interval_when_soft_limited: 1s\n"
     "min_gc_interval_when_hard_limited: 5s",
     "processors::memory_limiter: min_gc_interval_when_soft_limited should be larger than "
     "min_gc_interval_when_hard_limited"),
    ("check_interval: 1s\nlimit_percentage: 101",
     "processors::memory_limiter::limit_percentage: Input should be less than or equal to 100"),
    ("check_interval: 1s\nlimit_mib: -10",
     "processors::memory_limiter::limit_mib: Input should be greater than or equal to 0"),
    ("check_interval: soon\nlimit_mib: 10",
     "processors::memory_limiter::check_interval: invalid duration 'soon': use Go syntax such "
     "as '5s', '200ms', '1m30s'"),
    ("check_interval: 1s\nlimit_mib: 10\nballast_size_mib: 10",
     "processors::memory_limiter::ballast_size_mib: unknown key"),
])
def test_invalid_config_says_what_is_wrong(body: str, expected: str) -> None:
    assert problems(body) == [expected]


# -------------------------------------------------------------------------------- thresholds


def cfg_of(**kw: Any) -> MemoryLimiterConfig:
    return MemoryLimiterConfig(**{"check_interval": 1, **kw})


def test_spike_limit_defaults_to_a_fifth_of_the_limit() -> None:
    limits = Limits.from_config(cfg_of(limit_mib=1000))
    assert (limits.hard, limits.spike, limits.soft) == (1000 * MiB, 200 * MiB, 800 * MiB)


def test_percentages_of_total_memory_as_in_the_collector_readme() -> None:
    # "On a machine with 1000 MiB total memory: hard limit 800 MiB, soft limit 650 MiB"
    limits = Limits.from_config(cfg_of(limit_percentage=80, spike_limit_percentage=15),
                                total_memory=lambda: 1000 * MiB)
    assert (limits.hard, limits.soft) == (800 * MiB, 650 * MiB)
    default_spike = Limits.from_config(cfg_of(limit_percentage=50), lambda: 1000 * MiB)
    assert (default_spike.hard, default_spike.spike) == (500 * MiB, 100 * MiB)


def test_limit_mib_takes_precedence_over_percentage() -> None:
    def total() -> int:
        raise AssertionError("total memory must not be read when limit_mib is set")

    limits = Limits.from_config(cfg_of(limit_mib=300, limit_percentage=90), total)
    assert limits.hard == 300 * MiB


def fake_proc(tmp_path: Path, cgroup: str, mounts: list[str]) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup)
    (proc / "mountinfo").write_text("\n".join(mounts) + "\n")
    return proc


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_with_workers_the_limit_counts_every_process_of_the_gateway(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With --workers the owner and its workers share one limit, as the container they run in
    does: each process's limiter measures their sum. Here an owner holding 100 MiB starts a
    worker holding 300 MiB; the limiter of any of them sees both."""
    import subprocess
    import sys

    from gateway import workers

    hold = ("import sys; b = bytearray({mib} << 20); b[::4096] = b'x' * len(b[::4096]); {then}"
            "print('ready', flush=True); sys.stdin.read()")
    worker = hold.format(mib=300, then="")
    owner = hold.format(mib=100, then=(
        "import subprocess; w = subprocess.Popen([sys.executable, '-c', sys.argv[1]], "
        "stdout=subprocess.PIPE, stdin=subprocess.PIPE); w.stdout.readline(); print(w.pid); "))
    proc = subprocess.Popen([sys.executable, "-c", owner, worker],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    worker_pid = 0
    try:
        assert proc.stdout is not None
        worker_pid = int(proc.stdout.readline())
        assert proc.stdout.readline() == "ready\n"
        rss = {pid: psutil.Process(pid).memory_info().rss for pid in (proc.pid, worker_pid)}
        assert rss[proc.pid] > 100 * MiB and rss[worker_pid] > 300 * MiB
        alone = sysmem.process_rss()
        monkeypatch.setattr(workers, "_owner", proc.pid)
        assert abs(sysmem.process_rss() - sum(rss.values())) < 30 * MiB
        monkeypatch.setattr(workers, "_owner", proc.pid + 10**7)  # the owner is gone
        assert abs(sysmem.process_rss() - alone) < 30 * MiB
    finally:
        proc.kill()
        proc.wait()
        if worker_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker_pid, signal.SIGKILL)


def test_cgroup_v2_limit_of_an_ancestor_applies(tmp_path: Path) -> None:
    fs = tmp_path / "sys" / "fs" / "cgroup"
    write(fs / "kubepods" / "pod1" / "ctr" / "memory.max", "max\n")
    write(fs / "kubepods" / "pod1" / "memory.max", f"{512 * MiB}\n")
    write(fs / "kubepods" / "memory.max", f"{2048 * MiB}\n")
    proc = fake_proc(tmp_path, "0::/kubepods/pod1/ctr\n", [
        f"31 23 0:26 / {fs} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate"])
    assert sysmem.cgroup_memory_limit(proc) == 512 * MiB


def test_cgroup_v1_container_sees_its_group_as_the_mount_root(tmp_path: Path) -> None:
    mem = tmp_path / "sys" / "fs" / "cgroup" / "memory"
    write(mem / "memory.limit_in_bytes", f"{256 * MiB}\n")
    proc = fake_proc(tmp_path, "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n", [
        f"35 31 0:32 /docker/abc {mem} rw,relatime - cgroup cgroup rw,memory",
        f"32 31 0:29 /docker/abc {tmp_path}/cpu rw,relatime - cgroup cgroup rw,cpu,cpuacct"])
    assert sysmem.cgroup_memory_limit(proc) == 256 * MiB


def test_unlimited_or_missing_cgroups_fall_back_to_physical_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mem = tmp_path / "memory"
    write(mem / "memory.limit_in_bytes", "9223372036854771712\n")  # v1 "no limit"
    proc = fake_proc(tmp_path, "4:memory:/\n", [
        f"35 31 0:32 / {mem} rw,relatime - cgroup cgroup rw,memory"])
    assert sysmem.cgroup_memory_limit(proc) is None
    assert sysmem.cgroup_memory_limit(tmp_path / "no-proc") is None
    monkeypatch.setattr(sysmem, "physical_memory", lambda: 8192 * MiB)
    assert sysmem.total_memory(proc) == 8192 * MiB
    write(mem / "memory.limit_in_bytes", f"{1024 * MiB}\n")
    assert sysmem.total_memory(proc) == 1024 * MiB


# ---------------------------------------------------------------------------- state machine


class FakeProcess:
    """RSS the test sets; a release gives back what the test says it frees."""

    def __init__(self, rss_mib: int) -> None:
        self.rss = rss_mib * MiB
        self.freed_by_release = 0
        self.releases = 0
        self.now = 1000.0

    def read(self) -> int:
        return self.rss

    def release(self) -> None:
        self.releases += 1
        self.rss -= self.freed_by_release * MiB

    def clock(self) -> float:
        return self.now


def limiter_for(fake: FakeProcess, soft_gc: float = 10.0, hard_gc: float = 0.0) -> MemoryLimiter:
    # hard 1000 MiB, soft 800 MiB
    return MemoryLimiter(Limits(1000 * MiB, 200 * MiB), 0.1, soft_gc, hard_gc,
                         read_rss=fake.read, release_memory=fake.release, clock=fake.clock)


def test_below_the_soft_limit_nothing_happens() -> None:
    fake = FakeProcess(799)
    ml = limiter_for(fake)
    ml.check()
    assert not ml.refusing and fake.releases == 0 and ml.rss == 799 * MiB


def test_above_the_soft_limit_refuses_and_releases_only_every_soft_interval() -> None:
    fake = FakeProcess(850)
    ml = limiter_for(fake, soft_gc=10)
    fake.now += 1
    ml.check()
    assert ml.refusing and fake.releases == 0  # no forced release right after start
    assert ml.refusal == ("data refused due to high memory usage: the memory limit is reached "
                          "(process RSS 850 MiB, soft limit 800 MiB, hard limit 1000 MiB); "
                          "retry later")
    fake.now += 9
    ml.check()
    assert fake.releases == 1
    fake.now += 5
    ml.check()
    assert fake.releases == 1 and ml.refusing


def test_above_the_hard_limit_releases_at_every_check_and_recovers_when_that_helps() -> None:
    fake = FakeProcess(1100)
    ml = limiter_for(fake)
    for _ in range(3):
        fake.now += 0.1
        ml.check()
    assert fake.releases == 3 and ml.refusing
    fake.freed_by_release = 400  # the release brings it under the soft limit: data flows again
    fake.now += 0.1
    ml.check()
    assert fake.releases == 4 and not ml.refusing and ml.rss == 700 * MiB


def test_hard_limit_releases_are_rate_limited_by_min_gc_interval() -> None:
    fake = FakeProcess(1100)
    ml = limiter_for(fake, soft_gc=10, hard_gc=1)
    for _ in range(20):  # 2 s of checks every 100 ms
        fake.now += 0.1
        ml.check()
    assert fake.releases == 2


def test_recovers_by_itself_and_logs_each_transition_once(
        caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeProcess(500)
    ml = limiter_for(fake)
    caplog.set_level(logging.INFO, logger="processors.memory_limiter.limiter")
    timeline = [500, 850, 860, 870, 1010, 1020, 990, 900, 810, 790, 700, 700]
    refusing = []
    for rss in timeline:
        fake.rss = rss * MiB
        fake.now += 0.1
        ml.check()
        refusing.append(ml.refusing)
    assert refusing == [False] + [True] * 8 + [False] * 3
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "memory_limiter: memory usage is above the soft limit, refusing data (RSS 850 MiB, "
        "soft limit 800 MiB, hard limit 1000 MiB)",
        "memory_limiter: memory usage reached the hard limit, still refusing data and releasing "
        "memory at every check (RSS 1010 MiB, hard limit 1000 MiB)",
        "memory_limiter: memory usage is back within limits, resuming normal operation after "
        "0.8s of refusing data (RSS 790 MiB, soft limit 800 MiB)",
    ]
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING", "INFO"]


def test_a_failing_measurement_keeps_the_thread_and_the_last_state(
        caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> int:
        raise OSError("no /proc")

    ml = MemoryLimiter(Limits(1000 * MiB, 200 * MiB), 0.01, read_rss=broken)
    ml.start()
    try:
        time.sleep(0.1)  # ~10 checks
        assert ml.running and not ml.refusing
    finally:
        ml.stop()
    assert not ml.running
    assert sum("measuring memory failed" in r.getMessage() for r in caplog.records) == 1


# ------------------------------------------------------------------------- processor contract


class Sink:
    def __init__(self) -> None:
        self.got: list[Payload] = []

    async def consume(self, payload: Payload) -> None:
        self.got.append(payload)


def exposition(tel: SelfTelemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = tel.exposition()[0].decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_passes_data_on_unchanged_and_refuses_with_a_retryable_error() -> None:
    fake = FakeProcess(100)
    ml = limiter_for(fake)
    sink = Sink()
    tel = SelfTelemetry()
    proc = MemoryLimiterProcessor(ComponentID("memory_limiter"), cfg_of(limit_mib=1000),
                                  Signal.LOGS, sink, limiter=ml)
    payload = Payload.from_message(Signal.LOGS, payloads.logs(250))

    async def scenario() -> RefusedError:
        await proc.start(Host(telemetry=tel))
        try:
            await proc.consume(payload)
            fake.rss = 900 * MiB
            ml.check()
            with pytest.raises(RefusedError) as err:
                await proc.consume(Payload.from_message(Signal.LOGS, payloads.logs(40)))
            return err.value
        finally:
            await proc.shutdown()

    refused = asyncio.run(scenario())
    assert sink.got == [payload] and sink.got[0].raw is payload.raw
    assert "memory limit is reached (process RSS 900 MiB" in str(refused)
    assert refused.retry_after == 1.0
    label = (("processor", "memory_limiter"),)
    metrics = exposition(tel)
    assert metrics[("otelcol_processor_accepted_log_records_total", label)] == 250
    assert metrics[("otelcol_processor_refused_log_records_total", label)] == 40


def test_factory_is_registered_and_does_not_mutate() -> None:
    factory = lookup(Kind.PROCESSOR, "memory_limiter")
    assert factory is not None and factory.config_model is MemoryLimiterConfig
    assert not factory.mutates_data


def test_pipelines_share_one_check_started_by_the_first_stopped_by_the_last() -> None:
    factory = lookup(Kind.PROCESSOR, "memory_limiter")
    assert factory is not None
    cfg = cfg_of(limit_mib=1_000_000, check_interval=0.05)
    host = Host(telemetry=SelfTelemetry())
    traces = factory.create(ComponentID("memory_limiter"), cfg, Signal.TRACES, Sink())
    logs = factory.create(ComponentID("memory_limiter"), cfg, Signal.LOGS, Sink())
    other = factory.create(ComponentID("memory_limiter", "b"), cfg_of(limit_mib=999_999),
                           Signal.LOGS, Sink())
    assert traces.limiter is logs.limiter is shared_limiter(cfg)
    assert other.limiter is not traces.limiter

    async def scenario() -> None:
        await other.shutdown()  # never started: nothing to stop
        await traces.start(host)
        await logs.start(host)
        assert traces.limiter.running and traces.limiter.rss > 0
        await traces.shutdown()
        await traces.shutdown()  # the pipeline shuts processors down twice
        assert logs.limiter.running, "a pipeline still uses the check"
        await logs.shutdown()
        assert not logs.limiter.running

    asyncio.run(scenario())


# -------------------------------------------------------------------- flood, real gateway
#
# otlp -> memory_limiter -> batch -> clickhouse in a gateway subprocess, flooded over HTTP
# (traces) and gRPC (logs: a second pipeline, so a second processor sharing the one check) by
# clients that back off only briefly when refused. Measured on a 2-core machine: the warm idle
# RSS is ~410-460 MiB; without the limiter this flood takes the gateway to ~1020 MiB and leaves
# it at ~600 MiB; with it the RSS peaks ~50 MiB over the hard limit and falls back near idle.

SPANS = 5000  # per HTTP request: ~1.4 MB of protobuf
RECORDS = 5000  # per gRPC request: ~0.8 MB
HTTP_CLIENTS = 16
GRPC_CLIENTS = 8
FLOOD_SECONDS = 10.0
LIMIT_ABOVE_IDLE_MIB = 192  # hard limit = warm idle RSS (of a probe run) + this
SPIKE_MIB = 96  # soft limit = hard limit - this, so ~100 MiB above the warm idle RSS
BACKOFF = 0.05  # what a refused client waits: far less than Retry-After, to keep flooding
CHECK_INTERVAL = "100ms"
LOGS_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
# The limiter refuses only after the receiver has read and decoded a request, and measures
# every check interval, so the RSS may exceed the hard limit by what the requests in flight
# hold: at most one per client, each up to ~6x its serialized size (the body as read and
# joined, the decoded upb message, ~3.4x for these spans; for accepted ones the batch copy and
# the insert's buffers).
IN_FLIGHT_FACTOR = 6

PROTOBUF = "application/x-protobuf"


@dataclass
class FloodResult:
    gw: Gateway
    probe_idle_mib: int  # warm idle RSS of the probe run the limits derive from
    idle_mib: int  # warm idle RSS of the limited gateway, just before the flood
    hard_mib: int
    soft_mib: int
    tolerance_mib: int
    rss: list[tuple[float, int]]  # (seconds since the flood began, RSS MiB), every ~20 ms
    http: dict[str, int] = field(default_factory=dict)  # request id -> HTTP status
    grpc: dict[str, str] = field(default_factory=dict)  # request id -> gRPC code name
    failed: dict[str, str] = field(default_factory=dict)  # request id -> client-side error
    retry_after: list[str] = field(default_factory=list)  # Retry-After of each 429
    retry_info: list[int | None] = field(default_factory=list)  # RetryInfo of each refusal
    refusal_messages: list[str] = field(default_factory=list)
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)

    def acked(self) -> tuple[set[str], set[str]]:
        return ({r for r, s in self.http.items() if s == 200},
                {r for r, c in self.grpc.items() if c == "OK"})

    def refused(self) -> tuple[set[str], set[str]]:
        return ({r for r, s in self.http.items() if s == 429},
                {r for r, c in self.grpc.items() if c == "RESOURCE_EXHAUSTED"})


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self.started_at = time.monotonic()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                rss = self.process.memory_info().rss
            except psutil.Error:
                return
            self.samples.append((time.monotonic() - self.started_at, rss // MiB))
            self.done.wait(0.02)


def rss_mib(gw: Gateway) -> int:
    assert gw.proc is not None
    return int(psutil.Process(gw.proc.pid).memory_info().rss // MiB)


def tagged(signal: Signal, template: bytes, rid: str) -> bytes:
    """The template request with every Resource marked with the request id, so the rows of each
    request can be counted in ClickHouse."""
    request = signal.request_type.FromString(template)
    for res in resources(signal, request):
        kv = res.resource.attributes.add()
        kv.key, kv.value.string_value = "flood.request", rid
    return bytes(request.SerializeToString())


def limited_config(workdir: Path, ports: dict[str, int], limit_mib: int) -> dict[str, Any]:
    cfg = default_config(workdir / "data", ports)
    cfg["processors"]["memory_limiter"] = {"check_interval": CHECK_INTERVAL,
                                           "limit_mib": limit_mib, "spike_limit_mib": SPIKE_MIB}
    for pipeline in cfg["service"]["pipelines"].values():
        pipeline["processors"] = ["memory_limiter", "batch"]
    return cfg


def warm_up(gw: Gateway, traces: bytes, logs: bytes) -> None:
    """A few inserts of each kind, so the store's caches and threads exist before measuring."""
    for _ in range(3):
        req = urllib.request.Request(f"{gw.http_url}/v1/traces", data=traces,
                                     headers={"Content-Type": PROTOBUF})
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status == 200
    with grpc.insecure_channel(gw.grpc_endpoint) as channel:
        export = channel.unary_unary(LOGS_EXPORT)
        for _ in range(3):
            export(logs, timeout=60)
    time.sleep(1.0)


def retry_delay(exc: grpc.aio.AioRpcError) -> int | None:
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    return int(info.retry_delay.seconds)
    return None


async def http_client(i: int, url: str, template: bytes, deadline: float,
                      out: FloodResult) -> None:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        n = 0
        while time.monotonic() < deadline:
            rid = f"h{i}-{n}"
            n += 1
            body = tagged(Signal.TRACES, template, rid)
            try:
                async with session.post(url, data=body,
                                        headers={"Content-Type": PROTOBUF}) as resp:
                    answer = await resp.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                out.failed[rid] = repr(exc)
                continue
            out.http[rid] = resp.status
            if resp.status == 429:
                out.retry_after.append(resp.headers.get("Retry-After", ""))
                if len(out.refusal_messages) < 3:
                    out.refusal_messages.append(status_pb2.Status.FromString(answer).message)
                await asyncio.sleep(BACKOFF)


async def grpc_client(i: int, channel: grpc.aio.Channel, template: bytes, deadline: float,
                      out: FloodResult) -> None:
    export = channel.unary_unary(LOGS_EXPORT)
    n = 0
    while time.monotonic() < deadline:
        rid = f"g{i}-{n}"
        n += 1
        try:
            await export(tagged(Signal.LOGS, template, rid), timeout=60)
        except grpc.aio.AioRpcError as exc:
            out.grpc[rid] = exc.code().name
            if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                out.retry_info.append(retry_delay(exc))
            await asyncio.sleep(BACKOFF)
        else:
            out.grpc[rid] = "OK"


async def flood_clients(gw: Gateway, out: FloodResult) -> None:
    traces = payloads.traces(SPANS, seed=5).SerializeToString()
    logs = payloads.logs(RECORDS, seed=6).SerializeToString()
    deadline = time.monotonic() + FLOOD_SECONDS
    async with grpc.aio.insecure_channel(gw.grpc_endpoint) as channel:
        await asyncio.gather(
            *(http_client(i, f"{gw.http_url}/v1/traces", traces, deadline, out)
              for i in range(HTTP_CLIENTS)),
            *(grpc_client(i, channel, logs, deadline, out) for i in range(GRPC_CLIENTS)))


@pytest.fixture(scope="module")
def flood(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FloodResult]:
    workdir = tmp_path_factory.mktemp("memory-limiter")
    traces = payloads.traces(SPANS, seed=9).SerializeToString()
    logs = payloads.logs(RECORDS, seed=9).SerializeToString()
    tolerance = IN_FLIGHT_FACTOR * (HTTP_CLIENTS * len(traces) + GRPC_CLIENTS * len(logs)) // MiB

    # a first run, alike but with a limit that never triggers, measures the warm idle RSS
    ports = {k: free_port() for k in ("grpc", "http", "query", "metrics")}
    probe_dir = workdir / "probe"
    probe = Gateway(probe_dir, limited_config(probe_dir, ports, 1_000_000), ports).start()
    try:
        warm_up(probe, traces, logs)
        idle = rss_mib(probe)
    finally:
        assert probe.stop() == 0, probe.logs()[-3000:]

    hard = idle + LIMIT_ABOVE_IDLE_MIB
    ports = {k: free_port() for k in ("grpc", "http", "query", "metrics")}
    workdir = workdir / "limited"
    gw = Gateway(workdir, limited_config(workdir, ports, hard), ports).start()
    try:
        warm_up(gw, traces, logs)
        out = FloodResult(gw, idle, rss_mib(gw), hard, hard - SPIKE_MIB, tolerance, [])
        assert out.idle_mib < out.soft_mib, (
            f"the gateway idles at {out.idle_mib} MiB, already over the soft limit "
            f"{out.soft_mib} MiB (the probe run idled at {idle} MiB)")
        assert gw.proc is not None
        sampler = RssSampler(gw.proc.pid)
        sampler.start()
        asyncio.run(flood_clients(gw, out))
        out.metrics = gw.self_metrics()
        time.sleep(2.0)  # memory as the last requests drain
        sampler.done.set()
        sampler.join()
        out.rss = sampler.samples
        yield out
    finally:
        code = gw.stop()
    assert code == 0, f"otelgw exited with {code}:\n{gw.logs()[-5000:]}"


def test_flood_is_refused_with_retryable_statuses(flood: FloodResult) -> None:
    http_statuses = Counter(flood.http.values())
    grpc_codes = Counter(flood.grpc.values())
    summary = f"HTTP {dict(http_statuses)}, gRPC {dict(grpc_codes)}, failed {flood.failed}"
    assert not flood.failed, f"requests failed on the client side: {summary}"
    assert set(http_statuses) <= {200, 429}, summary
    assert set(grpc_codes) <= {"OK", "RESOURCE_EXHAUSTED"}, summary
    assert http_statuses[429] > 0 and grpc_codes["RESOURCE_EXHAUSTED"] > 0, (
        f"the flood was never refused: {summary}; RSS peaked at "
        f"{max(r for _, r in flood.rss)} MiB, soft limit {flood.soft_mib} MiB")
    assert set(flood.retry_after) == {"1"}, "every 429 carries Retry-After: 1 (s)"
    assert set(flood.retry_info) == {1}, "every RESOURCE_EXHAUSTED carries RetryInfo (1 s)"
    message = flood.refusal_messages[0]
    assert message.startswith("data refused due to high memory usage: the memory limit is "
                              "reached (process RSS "), message
    assert f"hard limit {flood.hard_mib} MiB" in message, message


def test_rss_stays_under_the_hard_limit(flood: FloodResult) -> None:
    peak_at, peak = max(flood.rss, key=lambda s: s[1])
    around = [f"{t:.1f}s:{r}" for t, r in flood.rss if abs(t - peak_at) < 0.5][::5]
    bound = flood.hard_mib + flood.tolerance_mib
    print(f"RSS MiB: probe idle {flood.probe_idle_mib}, idle {flood.idle_mib}, soft limit {flood.soft_mib}, hard limit "
          f"{flood.hard_mib}, peak {peak} at {peak_at:.1f}s, after the flood "
          f"{flood.rss[-1][1]} (allowed {bound})")
    print("timeline:", " ".join(f"{t:.1f}s:{r}" for t, r in flood.rss[::10]))
    assert peak <= bound, (
        f"RSS peaked at {peak} MiB, over the hard limit {flood.hard_mib} MiB plus "
        f"{flood.tolerance_mib} MiB for the requests in flight; around the peak: {around}")


def test_every_acknowledged_request_is_stored_and_no_refused_one(flood: FloodResult) -> None:
    acked_http, acked_grpc = flood.acked()
    refused_http, refused_grpc = flood.refused()
    assert acked_http or acked_grpc, "no request was accepted during the flood"
    for table, per_request, acked, refused in (
            ("otel_traces", SPANS, acked_http, refused_http),
            ("otel_logs", RECORDS, acked_grpc, refused_grpc)):
        # acknowledged = in the gateway's log; wait (bounded) for the queue to reach the table
        flood.gw.wait_count(table, per_request * len(acked), "ResourceAttributes["
                            "'flood.request'] != ''", timeout=120)
        rows = flood.gw.rows(
            "SELECT ResourceAttributes['flood.request'] AS rid, count() AS n "
            f"FROM {table} WHERE rid != '' GROUP BY rid")
        stored = {r["rid"]: int(r["n"]) for r in rows}
        lost = {rid: stored.get(rid, 0) for rid in acked if stored.get(rid) != per_request}
        assert not lost, f"{table}: acknowledged requests not stored whole (rows of "\
                         f"{per_request}): {lost}"
        kept = sorted(set(stored) & refused)
        assert not kept, f"{table}: refused requests were stored anyway: {kept}"


def test_refusals_are_counted_with_the_collector_metric_names(flood: FloodResult) -> None:
    refused_http, refused_grpc = flood.refused()
    acked_http, acked_grpc = flood.acked()
    proc = (("processor", "memory_limiter"),)
    m = flood.metrics
    assert m[("otelcol_processor_refused_spans_total", proc)] == len(refused_http) * SPANS
    assert m[("otelcol_processor_refused_log_records_total", proc)] == \
        len(refused_grpc) * RECORDS
    warm = 3  # warm-up requests of each kind
    assert m[("otelcol_processor_accepted_spans_total", proc)] == \
        (len(acked_http) + warm) * SPANS
    assert m[("otelcol_processor_accepted_log_records_total", proc)] == \
        (len(acked_grpc) + warm) * RECORDS
    http = (("receiver", "otlp"), ("transport", "http"))
    assert m[("otelcol_receiver_refused_spans_total", http)] == len(refused_http) * SPANS
    rss = m[("otelcol_process_memory_rss_bytes", ())] / MiB
    assert flood.idle_mib / 2 < rss < flood.hard_mib + flood.tolerance_mib, rss


def test_ingestion_resumes_by_itself_after_the_flood(flood: FloodResult) -> None:
    gw = flood.gw
    body = tagged(Signal.TRACES, payloads.traces(SPANS, seed=11).SerializeToString(), "after")
    deadline = time.monotonic() + 30
    statuses = []
    while True:
        req = urllib.request.Request(f"{gw.http_url}/v1/traces", data=body,
                                     headers={"Content-Type": PROTOBUF})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                statuses.append(resp.status)
                break
        except urllib.error.HTTPError as err:
            statuses.append(err.code)
            assert err.code == 429, f"unexpected status after the flood: {statuses}"
        assert time.monotonic() < deadline, (
            f"still refused 30 s after the flood (RSS {rss_mib(gw)} MiB, soft limit "
            f"{flood.soft_mib} MiB): {statuses}")
        time.sleep(0.5)
    assert statuses[-1] == 200
    assert gw.wait_count("otel_traces", SPANS,
                         "ResourceAttributes['flood.request'] = 'after'") == SPANS
    # the probe itself may start a short episode: wait (bounded) for the log to settle
    deadline = time.monotonic() + 15
    while True:
        logs = gw.logs()
        entered = logs.count("memory_limiter: memory usage is above the")
        resumed = logs.count("memory_limiter: memory usage is back within limits, resuming")
        if entered == resumed or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    refusals = sum(len(r) for r in flood.refused())
    assert 1 <= entered == resumed, f"{entered} refusal episodes, {resumed} recoveries"
    assert entered < refusals / 5, f"{entered} log lines for {refusals} refusals: not once"
