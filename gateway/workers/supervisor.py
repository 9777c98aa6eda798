"""The owner's side of --workers: starts the workers, restarts one that dies, drains them first on
shutdown, takes their batches (handover.HandoverServer) and adds up their self-metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

from gateway.component import ComponentID, Consumer
from gateway.errors import GatewayError
from gateway.pipeline import Fanout
from gateway.signals import Signal
from gateway.workers.handover import HandoverServer

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0   # seconds for a worker to listen, at start-up
STOP_GRACE = 60.0      # seconds for a worker to drain before it is killed
MAX_BACKOFF = 30.0     # seconds between restarts of a worker that keeps dying
STABLE_AFTER = 60.0    # a worker that ran this long restarts at once again


class Supervisor:
    def __init__(self, config_path: str, workers: int, exporters: dict[ComponentID, Any],
                 telemetry: Any) -> None:
        self.config_path = config_path
        self.workers = workers
        self.exporters = exporters
        self.telemetry = telemetry
        self._dir = Path(tempfile.mkdtemp(prefix="otelgw-"))  # 0700: only we reach the socket
        self.socket_path = str(self._dir / "handover.sock")
        self.server = HandoverServer(self.socket_path, self._route, self._on_event, self._count)
        self._routes: dict[tuple[str, tuple[str, ...]], Consumer] = {}
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._ready: dict[int, asyncio.Event] = {k: asyncio.Event() for k in self._indexes()}
        self._tasks: list[asyncio.Task[None]] = []
        self._failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._running = False
        self._stopping = False
        self._stop_event = asyncio.Event()  # cuts a restart's backoff short
        self._items = telemetry.metric(
            Counter, "otelgw_worker_handover_items",
            "Items a worker process handed over to the owner's exporters", ["worker", "signal"])
        self._restarts = telemetry.metric(
            Counter, "otelgw_worker_restarts", "Times a worker process was restarted", ["worker"])
        self._up = telemetry.metric(Gauge, "otelgw_workers_ready",
                                    "Worker processes that listen now (the owner not counted)", [])

    def _indexes(self) -> range:
        return range(1, self.workers)

    async def start(self) -> None:
        await self.server.start()
        self._tasks = [asyncio.create_task(self._supervise(k)) for k in self._indexes()]
        waits = [asyncio.ensure_future(e.wait()) for e in self._ready.values()]
        done, _ = await asyncio.wait([asyncio.gather(*waits), self._failed],
                                     timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if self._failed in done:
            raise GatewayError(self._failed.result())
        if not all(e.is_set() for e in self._ready.values()):
            late = [k for k, e in self._ready.items() if not e.is_set()]
            raise GatewayError(f"worker(s) {late} did not start within {START_TIMEOUT:g}s")
        self._running = True

    async def _supervise(self, worker: int) -> None:
        backoff = 1.0
        while not self._stopping:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "run", "--config", self.config_path,
                "--worker-index", str(worker), "--owner-socket", self.socket_path)
            self._procs[worker] = proc
            if self._stopping:  # stop() began while it was being started: it drains too
                log.info("worker %d (pid %d) started as the gateway stops; stopping it", worker,
                         proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = await proc.wait()
            self._ready[worker].clear()
            if self._stopping:
                return
            if not self._running:
                if not self._failed.done():
                    self._failed.set_result(f"worker {worker} exited with {code} while starting "
                                            "(its log lines are above)")
                return
            if time.monotonic() - started > STABLE_AFTER:
                backoff = 1.0
            log.error("worker %d (pid %d) exited with %s; restarting it in %gs", worker,
                      proc.pid, _describe(code), backoff)
            self._restarts.labels(worker=str(worker)).inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _route(self, pipeline: str, exporters: tuple[str, ...]) -> Consumer:
        route = self._routes.get((pipeline, exporters))
        if route is None:
            route = Fanout([(self.exporters[ComponentID.parse(e)], False) for e in exporters])
            self._routes[(pipeline, exporters)] = route
        return route

    def _count(self, worker: int, sig: Signal, items: int) -> None:
        self._items.labels(worker=str(worker), signal=sig.value).inc(items)

    def _on_event(self, worker: int, op: str, header: dict[str, Any]) -> None:
        if worker not in self._ready:
            return  # not one of ours (a connection that never said hello)
        if op == "ready":
            self._ready[worker].set()
            proc = self._procs.get(worker)
            log.info("worker %d (pid %s) is ready", worker, proc.pid if proc else "?")
        elif op == "metrics" and isinstance(header.get("families"), list):
            self.telemetry.set_remote(worker, header["families"])
        elif op == "closed":
            self.telemetry.retire_remote(worker)
        self._up.set(sum(e.is_set() for e in self._ready.values()))

    async def stop(self) -> None:
        """Workers drain first (their last batches still come in here), then the socket closes.
        A worker being started (restarted) meanwhile is stopped the same way, once it runs."""
        self._stopping = True
        self._stop_event.set()
        for proc in self._procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        # each supervising task returns once its worker exited (or never started)
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE)
            for proc in self._procs.values():
                if proc.returncode is None:
                    log.error("worker (pid %d) did not drain within %gs; killing it", proc.pid,
                              STOP_GRACE)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            if late:
                await asyncio.wait(late, timeout=5)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def _describe(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"
