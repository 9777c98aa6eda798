"""Run a real otelgw process for tests: free loopback ports, its own data dir, logs to a file.

Tests talk to it the way users do: OTLP over gRPC/HTTP, SQL over its ClickHouse-compatible query
endpoint, signals to stop it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml


# The checkout these modules are in. Child processes import otelgw from it: they run from
# other directories, where `python -m gateway.cli` would import whatever otelgw the interpreter
# has installed (an editable install of another checkout, when benchmarking a git worktree).
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def source_env(**extra: str) -> dict[str, str]:
    """This process's environment, with SOURCE_ROOT first on PYTHONPATH."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(SOURCE_ROOT), path) if p),
            **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    """Until `url` answers with a success status (a 503 from a starting server retries)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM,
                 timeout: float = 60) -> int:
    """Signal a child process, kill it if it outlives `timeout`; its exit code (0 if none)."""
    if proc is None:
        return 0
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# `sending_queue::batch` as recommended for production on 2 cores (loadtests/bench.py runs with
# it): an INSERT costs ~0.2 CPU-s however small (ClickHouse plans the flattening views on each),
# so 64k items per INSERT, or what came within a second at lower rates. Its INSERTs hold a few
# hundred MiB more in the embedded engine than 8k-item ones: a memory_limiter's limit_mib needs
# that room.
PRODUCTION_QUEUE_BATCH = {"flush_timeout": "1s", "min_size": 65536, "max_size": 65536}


def default_config(data_dir: Path, ports: dict[str, int]) -> dict[str, Any]:
    """The production shape with test-sized INSERTs: requests go straight into the exporter's
    queue on disk, acknowledged within milliseconds, and the queue merges them into INSERTs of
    up to 8192 items (PRODUCTION_QUEUE_BATCH for the production size; tests that measure memory
    keep the process near its idle size with these). The batch processor is defined for tests
    that put it into a pipeline; in front of a merging queue it only delays acknowledgements."""
    return {
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": f"127.0.0.1:{ports['grpc']}"},
            "http": {"endpoint": f"127.0.0.1:{ports['http']}"}}}},
        "processors": {"batch": {"send_batch_size": 8192, "timeout": "50ms"}},
        "exporters": {"clickhouse": {
            "path": str(data_dir),
            "sending_queue": {"batch": {"flush_timeout": "200ms", "min_size": 8192,
                                        "max_size": 8192}},
            "query_endpoint": {"enabled": True, "endpoint": f"127.0.0.1:{ports['query']}"}}},
        "service": {
            "telemetry": {"metrics": {"address": f"127.0.0.1:{ports['metrics']}"}},
            "pipelines": {s: {"receivers": ["otlp"], "processors": [],
                              "exporters": ["clickhouse"]}
                          for s in ("traces", "metrics", "logs")}},
    }


class Gateway:
    def __init__(self, workdir: Path, config: dict[str, Any] | None = None,
                 ports: dict[str, int] | None = None, workers: int = 1) -> None:
        self.workdir = workdir
        self.workers = workers  # `otelgw run --workers N`
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = ports or {k: free_port() for k in ("grpc", "http", "query", "metrics")}
        self.data_dir = workdir / "data"
        self.config = config or default_config(self.data_dir, self.ports)
        self.config_path = workdir / "otelgw.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.log_path = workdir / "otelgw.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['query']}"

    def start(self, timeout: float = 60) -> Gateway:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config_path),
             *(["--workers", str(self.workers)] if self.workers > 1 else [])],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
            env=source_env(PYTHONUNBUFFERED="1"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"otelgw exited with {self.proc.returncode}:\n{self.logs()}")
            if "otelgw is running" in self.logs()[offset:]:
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"otelgw did not start in {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        code = stop_process(self.proc, sig, timeout)
        self.proc = None
        return code

    def sql(self, query: str, fmt: str = "JSONEachRow") -> bytes:
        url = f"{self.query_url}/?" + urllib.parse.urlencode({"default_format": fmt})
        req = urllib.request.Request(url, data=query.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            return bytes(resp.read())

    def rows(self, query: str) -> list[dict[str, Any]]:
        out = self.sql(query + " FORMAT JSONEachRow")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def count(self, table: str, where: str = "1") -> int:
        return int(self.rows(f"SELECT count() AS n FROM {table} WHERE {where}")[0]["n"])

    def self_metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The samples of its :8888/metrics: {(sample name, sorted label pairs): value}."""
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.ports['metrics']}/metrics"
        with urllib.request.urlopen(url, timeout=30) as resp:
            text = resp.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(text) for s in fam.samples}

    def wait_count(self, table: str, expected: int, where: str = "1",
                   timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        n = -1
        while time.monotonic() < deadline:
            n = self.count(table, where)
            if n >= expected:
                return n
            time.sleep(0.1)
        return n
