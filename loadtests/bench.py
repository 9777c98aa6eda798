"""Benchmark: how many items/s one gateway sustains into the embedded store, with zero loss.

    python -m loadtests.bench [--seconds 20] [--concurrency 8] [--batch 1000] [--signals traces,logs]
                              [--queue batch|always|never|off]

Starts a gateway (embedded chDB) on free loopback ports, drives it at its maximum with
pre-serialized OTLP/HTTP protobuf requests from concurrent clients, then checks that the rows in
ClickHouse equal the items acknowledged. Reports items/s, ack latency p50/p99, CPU seconds per
100k items (whole process = gateway + embedded engine; and the event-loop thread alone, the
Python side), and peak RSS. With the sending queue on (`--queue`: its fsync policy; `off`: no
queue, an acknowledgement waits for the INSERT) an acknowledgement means "on disk", so the rate
at which rows reach ClickHouse is reported too (stored_items_per_s: until the last row is
stored). Then measures the ceiling (loadtests/ceiling.py: the engine inserting the same rows
from prepared Native blocks, no gateway) and the gateway/ceiling ratio. Writes a JSON result
and a PNG chart (throughput and CPU over time) under loadtests/results/.
"""

from __future__ import annotations

import argparse
import asyncio
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

from gateway.signals import Signal, count_items
from loadtests import payloads
from loadtests.gatewayproc import Gateway

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


async def drive(url: str, bodies: list[bytes], items: int, seconds: float,
                concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    timeline: list[tuple[float, int]] = []  # (monotonic time, items acknowledged so far)
    acked = failed = 0
    deadline = time.monotonic() + seconds
    headers = {"Content-Type": "application/x-protobuf"}

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal acked, failed
        n = i
        while time.monotonic() < deadline:
            started = time.perf_counter()
            async with session.post(url, data=bodies[n % len(bodies)], headers=headers) as r:
                await r.read()
                if r.status == 200:
                    acked += items
                    latencies.append(time.perf_counter() - started)
                    timeline.append((time.monotonic(), acked))
                else:
                    failed += 1
            n += concurrency

    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        await asyncio.gather(*(client(i, session) for i in range(concurrency)))
    elapsed = time.monotonic() - started
    latencies.sort()
    return {"acked_items": acked, "failed_requests": failed, "elapsed_s": elapsed,
            "timeline": timeline,
            "ack_p50_ms": 1000 * statistics.median(latencies) if latencies else None,
            "ack_p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None}


def run_signal(gw: Gateway, signal: Signal, args: argparse.Namespace, run_id: str) -> dict[str, Any]:
    cluster = f"bench-{run_id}-{signal.value}"
    reqs = [MAKE[signal](args.batch, seed=s, cluster=cluster) for s in range(8)]
    items = count_items(signal, reqs[0])
    bodies = [r.SerializeToString() for r in reqs]
    assert gw.proc is not None
    with CpuSampler(gw.proc.pid) as cpu:
        cpu0, main0 = cpu.times()
        started = time.monotonic()
        result = asyncio.run(drive(f"{gw.http_url}/v1/{signal.value}", bodies, items,
                                   args.seconds, args.concurrency))
        cpu1, main1 = cpu.times()
    where = f"cluster_id = '{cluster}'"
    expected = result["acked_items"]
    if signal is Signal.METRICS:  # a third of the points are gauges
        expected = expected // 3
    stored = gw.wait_count(TABLE[signal], expected, where, timeout=120)
    until_stored = time.monotonic() - started
    acked = result["acked_items"]
    per_100k = 1e5 / acked if acked else 0.0
    t0 = cpu.samples[0]["t"] if cpu.samples else 0.0
    series = {"acked": [(t - t0, n) for t, n in result.pop("timeline")[::10]],
              "cpu": [(s["t"] - t0, s["cpu"]) for s in cpu.samples],
              "rss": [(s["t"] - t0, s["rss"]) for s in cpu.samples]}
    return {
        "signal": signal.value, "batch_items": items, "concurrency": args.concurrency,
        "request_bytes": len(bodies[0]), **result,
        "items_per_s": acked / result["elapsed_s"],
        "stored_items_per_s": acked / until_stored,
        "stored_rows": stored, "expected_rows": expected, "zero_loss": stored == expected,
        "cpu_s_per_100k_total": (cpu1 - cpu0) * per_100k,
        "cpu_s_per_100k_event_loop": (main1 - main0) * per_100k,
        "peak_rss_mib": cpu.peak_rss / 2**20,
        "series": series,
    }


def run_ceiling(data_dir: Path, signal: str, seconds: float) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "loadtests.ceiling", "--path", str(data_dir),
                          "--signal", signal, "--seconds", str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 300)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000, help="items per request")
    parser.add_argument("--signals", default="traces,logs,metrics")
    parser.add_argument("--send-batch-size", type=int, default=8192,
                        help="the gateway's batch send_batch_size (items per INSERT)")
    parser.add_argument("--ceiling-seconds", type=float, default=10,
                        help="how long to measure the engine alone (0: skip)")
    parser.add_argument("--queue", default="batch", choices=["batch", "always", "never", "off"],
                        help="the exporter's sending queue: its fsync policy, or off")
    parser.add_argument("--results", default="loadtests/results")
    args = parser.parse_args()
    run_id = time.strftime("%Y%m%d-%H%M%S")
    out: dict[str, Any] = {"run": run_id, "cpus": psutil.cpu_count(), "results": []}
    with tempfile.TemporaryDirectory(prefix="otelgw-bench-") as tmp:
        gw = Gateway(Path(tmp))
        gw.config["processors"]["batch"] = {"send_batch_size": args.send_batch_size,
                                            "timeout": "200ms"}
        gw.config["exporters"]["clickhouse"]["sending_queue"] = (
            {"enabled": False} if args.queue == "off" else {"fsync": args.queue})
        gw.config_path.write_text(yaml.safe_dump(gw.config, sort_keys=False))
        gw.start()
        out["send_batch_size"] = args.send_batch_size
        out["queue"] = args.queue
        try:
            for name in args.signals.split(","):
                res = run_signal(gw, Signal(name.strip()), args, run_id)
                out["results"].append(res)
                print(json.dumps({k: v for k, v in res.items() if k != "series"}, indent=2))
        finally:
            gw.stop()
        if args.ceiling_seconds > 0:  # the engine alone, on the rows the gateway stored
            for res in out["results"]:
                res["ceiling"] = run_ceiling(gw.data_dir, res["signal"], args.ceiling_seconds)
                if res["ceiling"].get("rows_per_s"):
                    # one item (span, record, point) is one row
                    res["gateway_to_ceiling"] = res["items_per_s"] / res["ceiling"]["rows_per_s"]
                print(json.dumps({"signal": res["signal"], "ceiling": res["ceiling"],
                                  "gateway_to_ceiling": res.get("gateway_to_ceiling")}))
    Path(args.results).mkdir(parents=True, exist_ok=True)
    path = Path(args.results) / f"bench-{run_id}.json"
    path.write_text(json.dumps(out, indent=2))
    chart(out, path.with_suffix(".png"))
    print(f"results written to {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
