"""Benchmark: how many items/s one gateway sustains into the embedded store, with zero loss.

    python -m loadtests.bench [--seconds 20] [--concurrency 8] [--batch 1000] [--signals traces,logs]
                              [--queue batch|always|never|off] [--rate ITEMS_PER_S]
                              [--send-batch-size N] [--queue-batch MIN_SIZE] [--max-size N]
                              [--flush-timeout D] [--consumers N] [--server] [--no-half-rate]
                              [--queue-dir DIR]

Starts a gateway (embedded chDB) on free loopback ports with the recommended production
configuration (loadtests.gatewayproc's default_config with PRODUCTION_QUEUE_BATCH; the options
override parts of it), drives it with
pre-serialized OTLP/HTTP protobuf requests, then checks that the rows in ClickHouse equal the
items acknowledged. Without `--rate` concurrent clients send back to back (the maximum); with
it requests leave on a fixed schedule (open loop, up to `--max-inflight` at once) and latency
counts from the scheduled time, so a gateway that falls behind shows it.

Without `--rate` each signal then runs a second phase at a fixed offered rate of half the
sustained maximum (`half_rate` in the result: the acknowledgement latency a gateway with
headroom gives; `--no-half-rate` skips it).

Reports items/s, ack latency p50/p99, CPU seconds per 100k items until the last of them is
stored (whole process = gateway + embedded engine; and the event-loop thread alone, the Python
side), and peak RSS. With the sending queue on (`--queue`: its fsync policy; `off`: no queue, an
acknowledgement waits for the INSERT) an acknowledgement means "on disk", so the rate at which
rows reach ClickHouse is reported too (stored_items_per_s: until the last row is stored): the
sustained rate is the lower of the two. Then measures the ceiling (loadtests/ceiling.py: the
engine inserting the same rows from prepared Native blocks, no gateway) and the gateway/ceiling
ratio. Writes a JSON result and a PNG chart (throughput and CPU over time) under
loadtests/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import yaml

from gateway.files import mount_of
from gateway.signals import Signal, count_items
from loadtests import payloads
from loadtests.gatewayproc import PRODUCTION_QUEUE_BATCH, Gateway, free_port, source_env

TABLE = {Signal.TRACES: "otel_traces", Signal.LOGS: "otel_logs",
         Signal.METRICS: "otel_metrics_gauge"}
MAKE = {Signal.TRACES: payloads.traces, Signal.LOGS: payloads.logs,
        Signal.METRICS: payloads.metrics}


class CpuSampler:
    """Samples the gateway's CPU (process and main thread) and RSS every 0.5 s."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.samples: list[dict[str, float]] = []
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def times(self) -> tuple[float, float]:
        t = self.proc.cpu_times()
        main = next((th for th in self.proc.threads() if th.id == self.proc.pid), None)
        return t.user + t.system, (main.user_time + main.system_time) if main else 0.0

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            total, main = self.times()
            rss = self.proc.memory_info().rss
            self.peak_rss = max(self.peak_rss, rss)
            self.samples.append({"t": time.monotonic(), "cpu": total, "main": main, "rss": rss})

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class Acks:
    """What the clients of one run got back."""

    HEADERS = {"Content-Type": "application/x-protobuf"}

    def __init__(self, items: int) -> None:
        self.items = items
        self.latencies: list[float] = []
        self.sent: list[float] = []  # when each acknowledged request was due (perf_counter)
        self.timeline: list[tuple[float, int]] = []  # (monotonic time, items acked so far)
        self.acked = self.failed = 0

    async def post(self, session: aiohttp.ClientSession, url: str, body: bytes,
                   since: float) -> None:
        """Sends one request; its latency counts from `since` (perf_counter)."""
        async with session.post(url, data=body, headers=self.HEADERS) as r:
            await r.read()
            if r.status == 200:
                self.acked += self.items
                self.latencies.append(time.perf_counter() - since)
                self.sent.append(since)
                self.timeline.append((time.monotonic(), self.acked))
            else:
                self.failed += 1

    def result(self, elapsed: float) -> dict[str, Any]:
        lat = sorted(self.latencies)
        # where the tail is: one stall shows as slow requests sent close together
        t0 = min(self.sent, default=0.0)
        slowest = sorted(zip(self.latencies, self.sent), reverse=True)[:max(10, len(lat) // 100)]
        return {"acked_items": self.acked, "failed_requests": self.failed,
                "elapsed_s": elapsed, "timeline": self.timeline,
                "slowest": [{"sent_at_s": round(at - t0, 3), "ms": round(1000 * lat_s, 1)}
                            for lat_s, at in sorted(slowest, key=lambda x: x[1])],
                "ack_p50_ms": 1000 * statistics.median(lat) if lat else None,
                "ack_p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))] if lat else None}


async def drive_rate(url: str, bodies: list[bytes], items: int, seconds: float, rate: float,
                     max_inflight: int) -> dict[str, Any]:
    """Requests on a fixed schedule (`rate` items/s); one that finds `max_inflight` requests
    under way waits, and its latency still counts from its scheduled time."""
    acks = Acks(items)
    interval = items / rate
    slots = asyncio.Semaphore(max_inflight)

    async def one(n: int, due: float, session: aiohttp.ClientSession) -> None:
        async with slots:
            await acks.post(session, url, bodies[n % len(bodies)], due)

    started = time.monotonic()
    tasks = []
    connector = aiohttp.TCPConnector(limit=max_inflight)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120),
                                     connector=connector) as session:
        t0 = time.perf_counter()
        n = 0
        while n * interval < seconds:
            due = t0 + n * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n, due, session)))
            n += 1
        await asyncio.gather(*tasks)
    return {"offered_items_per_s": rate, **acks.result(time.monotonic() - started)}


async def drive(url: str, bodies: list[bytes], items: int, seconds: float,
                concurrency: int) -> dict[str, Any]:
    acks = Acks(items)
    deadline = time.monotonic() + seconds

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        n = i
        while time.monotonic() < deadline:
            await acks.post(session, url, bodies[n % len(bodies)], time.perf_counter())
            n += concurrency

    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        await asyncio.gather(*(client(i, session) for i in range(concurrency)))
    return acks.result(time.monotonic() - started)


COMMITS = "otelgw_exporter_queue_commit_duration_seconds_bucket"


def commit_counts(gw: Gateway) -> dict[str, float]:
    """The sending queue's group commits so far, cumulative per bucket bound ('0.1', '+Inf', …),
    over the gateway's exporters; empty without a queue."""
    out: dict[str, float] = {}
    for (name, labels), value in gw.self_metrics().items():
        if name == COMMITS:
            le = dict(labels)["le"]
            out[le] = out.get(le, 0.0) + value
    return out


def run_signal(gw: Gateway, signal: Signal, args: argparse.Namespace, run_id: str,
               phase: str = "max") -> dict[str, Any]:
    cluster = f"bench-{run_id}-{signal.value}-{phase}"
    reqs = [MAKE[signal](args.batch, seed=s, cluster=cluster) for s in range(8)]
    items = count_items(signal, reqs[0])
    bodies = [r.SerializeToString() for r in reqs]
    assert gw.proc is not None
    commits0 = commit_counts(gw)
    with CpuSampler(gw.proc.pid) as cpu:
        cpu0, main0 = cpu.times()
        started = time.monotonic()
        url = f"{gw.http_url}/v1/{signal.value}"
        result = asyncio.run(
            drive_rate(url, bodies, items, args.seconds, args.rate, args.max_inflight)
            if args.rate else drive(url, bodies, items, args.seconds, args.concurrency))
        where = f"cluster_id = '{cluster}'"
        expected = result["acked_items"]
        if signal is Signal.METRICS:  # a third of the points are gauges
            expected = expected // 3
        # the CPU until every acknowledged item is stored: with the queue, storing lags
        stored = gw.wait_count(TABLE[signal], expected, where, timeout=120)
        until_stored = time.monotonic() - started
        cpu1, main1 = cpu.times()
    commits1 = commit_counts(gw)
    commits = {le: n - commits0.get(le, 0.0) for le, n in commits1.items()}  # this phase's
    acked = result["acked_items"]
    per_100k = 1e5 / acked if acked else 0.0
    t0 = cpu.samples[0]["t"] if cpu.samples else 0.0
    series = {"acked": [(t - t0, n) for t, n in result.pop("timeline")[::10]],
              "cpu": [(s["t"] - t0, s["cpu"]) for s in cpu.samples],
              "rss": [(s["t"] - t0, s["rss"]) for s in cpu.samples]}
    return {
        "signal": signal.value, "phase": phase, "batch_items": items,
        "concurrency": args.concurrency,
        "request_bytes": len(bodies[0]), **result,
        "items_per_s": acked / result["elapsed_s"],
        "stored_items_per_s": acked / until_stored,
        # what it keeps up with: acknowledged and stored (with the queue, storing may lag)
        "sustained_items_per_s": min(acked / result["elapsed_s"], acked / until_stored),
        "stored_rows": stored, "expected_rows": expected, "zero_loss": stored == expected,
        "cpu_s_per_100k_total": (cpu1 - cpu0) * per_100k,
        "cpu_s_per_100k_event_loop": (main1 - main0) * per_100k,
        "peak_rss_mib": cpu.peak_rss / 2**20,
        # what acknowledgements waited for: the log's group commits (write + fdatasync), and
        # how many of them took over 100 ms (a disk stall shows here and in `slowest`)
        **({"queue_commits": int(commits["+Inf"]),
            "queue_commits_over_100ms": int(commits["+Inf"] - commits["0.1"])}
           if commits else {}),
        "series": series,
    }


def settle(gw: Gateway, timeout: float = 90) -> float:
    """Waits until the store runs no background merges (the maximum phase leaves many parts to
    merge, whose disk writes would stall the next phase's fsyncs); the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if gw.count("system.merges") == 0:
            break
        time.sleep(0.5)
    return time.monotonic() - started


def run_ceiling(data_dir: Path, signal: str, seconds: float) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "loadtests.ceiling", "--path", str(data_dir),
                          "--signal", signal, "--seconds", str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 300, env=source_env())
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def rate(points: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Per-interval rate of a cumulative series: (midpoints, d value / d t)."""
    xs, ys = [], []
    for (t0, v0), (t1, v1) in zip(points, points[1:]):
        if t1 > t0:
            xs.append((t0 + t1) / 2)
            ys.append((v1 - v0) / (t1 - t0))
    return xs, ys


def chart(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in out["results"] if "series" in r]
    fig, axes = plt.subplots(len(results), 1, figsize=(9, 3.2 * len(results)), squeeze=False)
    for ax, res in zip(axes[:, 0], results):
        xs, ys = rate(res["series"]["acked"])
        ax.plot(xs, [y / 1000 for y in ys], color="tab:blue", label="items/s (k)")
        ax.set_ylabel("k items/s", color="tab:blue")
        ceiling = res.get("ceiling", {}).get("rows_per_s")
        if ceiling:
            ax.axhline(ceiling / 1000, color="tab:blue", linestyle=":", label="engine ceiling")
        ax2 = ax.twinx()
        cx, cy = rate(res["series"]["cpu"])
        ax2.plot(cx, cy, color="tab:red", label="CPU (cores)")
        ax2.set_ylabel("CPU cores", color="tab:red")
        ax2.set_ylim(0, max([2.0, *cy]) * 1.1)
        ax.set_title(f"{res['signal']}: {res['items_per_s']:,.0f} items/s, "
                     f"{res['cpu_s_per_100k_total']:.2f} CPU-s/100k, p99 "
                     f"{res['ack_p99_ms']:.0f} ms")
        ax.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def configure(config: dict[str, Any], args: argparse.Namespace) -> None:
    """default_config with PRODUCTION_QUEUE_BATCH and the command line's changes."""
    batch = config["processors"]["batch"]
    if args.send_batch_size is not None:  # the batch processor in front of the exporter, or not
        batch["send_batch_size"] = args.send_batch_size
        for pipeline in config["service"]["pipelines"].values():
            pipeline["processors"] = [p for p in pipeline["processors"] if p != "batch"] + \
                (["batch"] if args.send_batch_size else [])
    if args.batch_timeout is not None:
        batch["timeout"] = args.batch_timeout
    queue = config["exporters"]["clickhouse"].setdefault("sending_queue", {})
    if args.queue == "off":
        queue.clear()
        queue["enabled"] = False
        return
    queue["fsync"] = args.queue
    queue["batch"] = dict(PRODUCTION_QUEUE_BATCH)
    if args.consumers is not None:
        queue["num_consumers"] = args.consumers
    if args.queue_batch == 0:
        queue.pop("batch", None)
        return
    merge = queue["batch"]
    for key, value in (("min_size", args.queue_batch), ("max_size", args.max_size),
                       ("flush_timeout", args.flush_timeout)):
        if value is not None:
            merge[key] = value
    if merge.get("max_size") and merge["max_size"] < merge.get("min_size", 8192):
        merge["max_size"] = merge.get("min_size", 8192)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000, help="items per request")
    parser.add_argument("--signals", default="traces,logs,metrics")
    parser.add_argument("--rate", type=float, default=0,
                        help="offered items/s per signal on a fixed schedule (0: clients send "
                             "back to back, the maximum)")
    parser.add_argument("--max-inflight", type=int, default=64,
                        help="with --rate: requests under way at most")
    parser.add_argument("--send-batch-size", type=int, default=None,
                        help="the batch processor's send_batch_size (0: no batch processor; "
                             "default: gatewayproc.default_config's)")
    parser.add_argument("--batch-timeout", default=None,
                        help="the batch processor's timeout (default: default_config's)")
    parser.add_argument("--queue-batch", type=int, default=None,
                        help="sending_queue::batch::min_size in items (0: no batching in the "
                             "queue; default: PRODUCTION_QUEUE_BATCH's)")
    parser.add_argument("--max-size", type=int, default=None,
                        help="sending_queue::batch::max_size in items (default: "
                             "PRODUCTION_QUEUE_BATCH's)")
    parser.add_argument("--flush-timeout", default=None,
                        help="sending_queue::batch::flush_timeout (default: "
                             "PRODUCTION_QUEUE_BATCH's)")
    parser.add_argument("--consumers", type=int, default=None,
                        help="sending_queue::num_consumers (default: default_config's)")
    parser.add_argument("--ceiling-seconds", type=float, default=10,
                        help="how long to measure the engine alone (0: skip)")
    parser.add_argument("--queue", default="batch", choices=["batch", "always", "never", "off"],
                        help="the exporter's sending queue: its fsync policy, or off")
    parser.add_argument("--queue-dir", default=None,
                        help="put the sending queue's log in a new directory under this one, "
                             "e.g. on another disk than the store; /dev/shm shows what the "
                             "log's fsync costs (tmpfs: nothing, and nothing is durable)")
    parser.add_argument("--no-half-rate", action="store_true",
                        help="skip the second phase of each signal: a fixed offered rate of half "
                             "the sustained maximum, for the acknowledgement latency there")
    parser.add_argument("--server", action="store_true",
                        help="write to a ClickHouse server instead of the embedded store: "
                             "tests/chserver.py (the ClickHouse engine behind the server's HTTP "
                             "interface, a process of its own), so the CPU and RSS reported are "
                             "the gateway's alone; no ceiling step")
    parser.add_argument("--results", default="loadtests/results")
    args = parser.parse_args()
    run_id = time.strftime("%Y%m%d-%H%M%S")
    out: dict[str, Any] = {"run": run_id, "cpus": psutil.cpu_count(), "results": []}
    with tempfile.TemporaryDirectory(prefix="otelgw-bench-") as tmp, \
            contextlib.ExitStack() as stack:
        gw = Gateway(Path(tmp))
        configure(gw.config, args)
        if args.queue_dir and args.queue != "off":
            queue_dir = stack.enter_context(tempfile.TemporaryDirectory(
                prefix="otelgw-bench-queue-", dir=args.queue_dir))
            gw.config["exporters"]["clickhouse"]["sending_queue"]["directory"] = queue_dir
        if args.server:
            from tests.chserver import ChServer

            server = ChServer(Path(tmp) / "server", free_port()).start()
            stack.callback(server.stop)
            gw.config["exporters"]["clickhouse"]["endpoint"] = server.url
            args.ceiling_seconds = 0  # the engine's ceiling is measured on the embedded store
        out["store"] = "server" if args.server else "embedded"
        # where the disk's own stalls come from: online discard shows here (see DurableQueue)
        queue = gw.config["exporters"]["clickhouse"]["sending_queue"].get("directory") or tmp
        out["filesystems"] = {what: mount._asdict() | {"options": sorted(mount.options)}
                              for what, path in (("store", tmp), ("queue", queue))
                              if (mount := mount_of(Path(path))) is not None}
        gw.config_path.write_text(yaml.safe_dump(gw.config, sort_keys=False))
        gw.start()
        out["config"] = {k: gw.config[k] for k in ("processors", "exporters")}
        out["pipeline"] = gw.config["service"]["pipelines"]["traces"]
        out["queue"] = args.queue
        out["rate"] = args.rate
        try:
            for name in args.signals.split(","):
                signal = Signal(name.strip())
                res = run_signal(gw, signal, args, run_id)
                out["results"].append(res)
                print(json.dumps({k: v for k, v in res.items() if k != "series"}, indent=2))
                if not args.rate and not args.no_half_rate and res["sustained_items_per_s"]:
                    half = argparse.Namespace(**{**vars(args),
                                                 "rate": res["sustained_items_per_s"] / 2})
                    settled = settle(gw)
                    at_half = run_signal(gw, signal, half, run_id, phase="half")
                    at_half["settle_s"] = settled
                    at_half.pop("series")
                    res["half_rate"] = at_half
                    print(json.dumps({"signal": signal.value, "half_rate": at_half}, indent=2))
        finally:
            gw.stop()
        if args.ceiling_seconds > 0:  # the engine alone, on the rows the gateway stored
            for res in out["results"]:
                res["ceiling"] = run_ceiling(gw.data_dir, res["signal"], args.ceiling_seconds)
                if res["ceiling"].get("rows_per_s"):
                    # one item (span, record, point) is one row
                    res["gateway_to_ceiling"] = (res["sustained_items_per_s"]
                                                 / res["ceiling"]["rows_per_s"])
                print(json.dumps({"signal": res["signal"], "ceiling": res["ceiling"],
                                  "gateway_to_ceiling": res.get("gateway_to_ceiling")}))
    Path(args.results).mkdir(parents=True, exist_ok=True)
    path = Path(args.results) / f"bench-{run_id}.json"
    path.write_text(json.dumps(out, indent=2))
    chart(out, path.with_suffix(".png"))
    print(f"results written to {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
