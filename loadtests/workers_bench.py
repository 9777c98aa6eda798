"""Traces throughput and CPU of `otelgw run --workers N` for several N, embedded store.

    python -m loadtests.workers_bench [--workers 1,2] [--seconds 15] [--concurrency 16]

For each N: a fresh gateway (loadtests.gatewayproc's default configuration with the production
INSERT size, PRODUCTION_QUEUE_BATCH), OTLP/HTTP clients
sending pre-serialized 1000-span requests back to back over `concurrency` connections (spread
over the processes by the kernel), then spans/s acknowledged, CPU seconds of all the gateway's
processes per 100k spans, and rows stored = spans acknowledged. The clients run in this process,
on the same cores, for every N alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from gateway.signals import Signal, count_items
from loadtests.bench import MAKE, drive
from loadtests.gatewayproc import PRODUCTION_QUEUE_BATCH, Gateway


def gateway_cpu(pid: int) -> float:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(t.user + t.system for t in (p.cpu_times() for p in procs))


def run(workers: int, seconds: float, concurrency: int, workdir: Path) -> dict[str, Any]:
    gw = Gateway(workdir / f"w{workers}", workers=workers)
    # the production INSERT size, as loadtests.bench uses
    gw.config["exporters"]["clickhouse"]["sending_queue"]["batch"] = dict(PRODUCTION_QUEUE_BATCH)
    gw.config_path.write_text(yaml.safe_dump(gw.config, sort_keys=False))
    gw.start()
    try:
        bodies = [MAKE[Signal.TRACES](1000, seed=s, cluster="wbench").SerializeToString()
                  for s in range(8)]
        items = count_items(Signal.TRACES, Signal.TRACES.request_type.FromString(bodies[0]))
        assert gw.proc is not None
        cpu0, started = gateway_cpu(gw.proc.pid), time.monotonic()
        result = asyncio.run(drive(f"{gw.http_url}/v1/traces", bodies, items, seconds,
                                   concurrency))
        acked = result["acked_items"]
        stored = gw.wait_count("otel_traces", acked, timeout=120)
        cpu = gateway_cpu(gw.proc.pid) - cpu0
        until_stored = time.monotonic() - started
    finally:
        gw.stop()
    return {"workers": workers, "acked_spans": acked, "stored_rows": stored,
            "spans_per_s": round(acked / result["elapsed_s"]),
            "stored_spans_per_s": round(acked / until_stored),
            "cpu_s_per_100k": round(cpu * 1e5 / acked, 3) if acked else None,
            "ack_p50_ms": result["ack_p50_ms"], "ack_p99_ms": result["ack_p99_ms"],
            "failed_requests": result["failed_requests"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated process counts")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="otelgw-wbench-") as tmp:
        for n in (int(w) for w in args.workers.split(",")):
            print(json.dumps(run(n, args.seconds, args.concurrency, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
