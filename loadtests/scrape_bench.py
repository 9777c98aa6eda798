"""Scrape benchmark: samples scraped per CPU-second, otelgw against Prometheus, in one run.

    python -m loadtests.scrape_bench [--targets 50] [--interval 1] [--seconds 30]

Captures one /metrics body from a real node_exporter, serves it on N loopback ports (one idle
process, loadtests/scrapetargets.py), then for the same window lets each scraper work alone:
1. otelgw: prometheus receiver → batch → embedded ClickHouse. Scrapes and samples come from the
   rows it stored (`up` and `scrape_samples_scraped`), CPU from the process (gateway + engine)
   and from its event-loop thread (the Python side).
2. Prometheus (Debian package) with its TSDB: samples from its own
   prometheus_tsdb_head_samples_appended_total, CPU from the process.
Both count the 5 synthetic series per scrape as samples, as Prometheus does. Writes JSON under
loadtests/results/.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import yaml

from loadtests.bench import CpuSampler
from loadtests.gatewayproc import (Gateway, default_config, free_port, stop_process,
                                   wait_http)
from loadtests.scrapetargets import capture_node_exporter

PROMETHEUS = "/usr/bin/prometheus"
SYNTHETIC = 5  # up, scrape_duration_seconds, scrape_samples_scraped, …_post_metric_relabeling, …_series_added




def scrape_config(args: argparse.Namespace, ports: list[int]) -> dict[str, Any]:
    # Prometheus durations are whole numbers with a unit
    return {"job_name": "node", "scrape_interval": f"{round(args.interval * 1000)}ms",
            "scrape_timeout": f"{round(min(args.interval, 10) * 1000)}ms",
            "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}]}


def run_gateway(tmp: Path, args: argparse.Namespace, ports: list[int]) -> dict[str, Any]:
    gw = Gateway(tmp / "gateway")
    cfg = default_config(gw.data_dir, gw.ports)
    cfg["receivers"] = {"prometheus": {"config": {"scrape_configs": [scrape_config(args, ports)]}}}
    # scrapes are small requests: let batches fill (as config/scrape-*.yaml do)
    cfg["processors"]["batch"] = {"send_batch_size": 16384, "timeout": "1s"}
    cfg["service"]["pipelines"] = {"metrics": {"receivers": ["prometheus"],
                                               "processors": ["batch"],
                                               "exporters": ["clickhouse"]}}
    gw.config = cfg
    gw.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    gw.start()
    try:
        if gw.wait_count("otel_metrics_gauge", len(ports), "MetricName = 'up'",
                         timeout=60) < len(ports):
            raise RuntimeError("the gateway did not scrape every target:\n" + gw.logs()[-3000:])
        assert gw.proc is not None
        with CpuSampler(gw.proc.pid) as cpu:
            t0, (cpu0, main0) = time.time(), cpu.times()
            time.sleep(args.seconds)
            t1, (cpu1, main1) = time.time(), cpu.times()
        time.sleep(args.interval + 1)  # the window's last batches reach the store
        window = f"TimeUnix >= fromUnixTimestamp64Milli({int(t0 * 1000)}) " \
                 f"AND TimeUnix < fromUnixTimestamp64Milli({int(t1 * 1000)})"
        row = gw.rows("SELECT countIf(MetricName = 'up') AS scrapes, "
                      "countIf(MetricName = 'up' AND Value = 1) AS up, "
                      "sumIf(Value, MetricName = 'scrape_samples_scraped') AS samples "
                      f"FROM otel_metrics_gauge WHERE {window}")[0]
    finally:
        gw.stop()
    scrapes = int(row["scrapes"])
    samples = float(row["samples"]) + SYNTHETIC * scrapes
    cpu_s, main_s = cpu1 - cpu0, main1 - main0
    return {"scraper": "otelgw", "scrapes": scrapes, "scrapes_up": int(row["up"]),
            "samples": samples, "samples_per_s": samples / (t1 - t0), "cpu_s": cpu_s,
            "event_loop_cpu_s": main_s, "samples_per_cpu_s": samples / cpu_s if cpu_s else None,
            "samples_per_event_loop_cpu_s": samples / main_s if main_s else None,
            "peak_rss_mib": cpu.peak_rss / 2**20}


def appended(url: str) -> float:
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    return sum(float(m.group(1)) for m in re.finditer(
        r"^prometheus_tsdb_head_samples_appended_total(?:\{[^}]*\})? (\S+)$", text, re.M))


def run_prometheus(tmp: Path, args: argparse.Namespace, ports: list[int]) -> dict[str, Any]:
    port = free_port()
    cfg_path = tmp / "prometheus.yml"
    cfg_path.write_text(yaml.safe_dump({"scrape_configs": [scrape_config(args, ports)]}))
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={cfg_path}",
                             f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_http(url)
        time.sleep(args.interval * 2)  # every target scraped once: series created
        sampler = CpuSampler(proc.pid)
        with sampler:
            t0, s0, (cpu0, _) = time.time(), appended(url), sampler.times()
            time.sleep(args.seconds)
            t1, s1, (cpu1, _) = time.time(), appended(url), sampler.times()
    finally:
        stop_process(proc)
    samples, cpu_s = s1 - s0, cpu1 - cpu0
    return {"scraper": "prometheus", "samples": samples, "samples_per_s": samples / (t1 - t0),
            "cpu_s": cpu_s, "samples_per_cpu_s": samples / cpu_s if cpu_s else None,
            "peak_rss_mib": sampler.peak_rss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--interval", type=float, default=1.0, help="scrape interval, seconds")
    parser.add_argument("--seconds", type=float, default=30, help="measured window")
    parser.add_argument("--results", default="loadtests/results")
    args = parser.parse_args()
    if not shutil.which("prometheus-node-exporter"):
        sys.exit("needs node_exporter (Debian package prometheus-node-exporter): make system-deps")
    body = capture_node_exporter()
    run_id = time.strftime("%Y%m%d-%H%M%S")
    out: dict[str, Any] = {"run": run_id, "cpus": psutil.cpu_count(), "targets": args.targets,
                           "interval_s": args.interval, "window_s": args.seconds,
                           "body_bytes": len(body),
                           "body_samples": sum(1 for line in body.splitlines()
                                               if line.strip() and not line.startswith(b"#")),
                           "results": []}
    with tempfile.TemporaryDirectory(prefix="otelgw-scrape-bench-") as name:
        tmp = Path(name)
        (tmp / "node.prom").write_bytes(body)
        ports = [free_port() for _ in range(args.targets)]
        targets = subprocess.Popen([sys.executable, "-m", "loadtests.scrapetargets",
                                    "--body", str(tmp / "node.prom"),
                                    "--ports", ",".join(map(str, ports))],
                                   stdout=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{ports[-1]}/metrics")
            out["results"].append(run_gateway(tmp, args, ports))
            print(json.dumps(out["results"][-1], indent=2), flush=True)
            if shutil.which("prometheus"):
                out["results"].append(run_prometheus(tmp, args, ports))
                print(json.dumps(out["results"][-1], indent=2), flush=True)
            else:
                print("prometheus not installed: comparison skipped (make system-deps)")
        finally:
            stop_process(targets)
    Path(args.results).mkdir(parents=True, exist_ok=True)
    path = Path(args.results) / f"scrape-bench-{run_id}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"results written to {path}")


if __name__ == "__main__":
    main()
