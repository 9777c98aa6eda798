"""Scrape targets for benchmarks and tests: one process serving a fixed exposition on many ports.

    python -m loadtests.scrapetargets --body node.prom --ports 9101,9102 [--content-type …]

Every port answers GET /metrics with the same body (a real node_exporter capture, say), so N
targets cost the scrapers N scrapes but cost the machine one idle process.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import subprocess
import time
import urllib.request
from pathlib import Path

from aiohttp import web

from loadtests.gatewayproc import free_port, stop_process

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"


def capture_node_exporter(timeout: float = 20) -> bytes:
    """One /metrics body from a real node_exporter started on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    return bytes(r.read())
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
    finally:
        stop_process(proc)


async def serve(body: bytes, ports: list[int], content_type: str) -> None:
    zipped = gzip.compress(body, 1)

    async def metrics(request: web.Request) -> web.Response:
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=zipped, headers={"Content-Type": content_type,
                                                      "Content-Encoding": "gzip"})
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for port in ports:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    print("serving", len(ports), "targets", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--body", required=True, type=Path)
    parser.add_argument("--ports", required=True)
    parser.add_argument("--content-type", default="text/plain; version=0.0.4; charset=utf-8")
    args = parser.parse_args()
    ports = [int(p) for p in args.ports.split(",")]
    asyncio.run(serve(args.body.read_bytes(), ports, args.content_type))


if __name__ == "__main__":
    main()
