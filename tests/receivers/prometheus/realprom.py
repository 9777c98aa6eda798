"""The real Prometheus (/usr/bin/prometheus) as a test oracle: `Served` puts bodies on loopback,
`RealPrometheus` scrapes them (or anything else) and answers HTTP API queries."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from loadtests.gatewayproc import free_port, stop_process

PROMETHEUS = shutil.which("prometheus")


class Served:
    """Bodies served on loopback, one path each, with their Content-Type."""

    def __init__(self, bodies: dict[str, tuple[bytes, str]]) -> None:
        handler_bodies = bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body, ctype = handler_bodies.get(self.path, (b"", "text/plain"))
                self.send_response(200 if self.path in handler_bodies else 404)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RealPrometheus:
    """/usr/bin/prometheus scraping `jobs` once a second; query() its HTTP API."""

    def __init__(self, workdir: Path, jobs: list[dict]) -> None:
        self.port = free_port()
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                  "scrape_configs": jobs}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc = subprocess.Popen(
            [PROMETHEUS or "", f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}", "--log.level=error",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.jobs = {job["job_name"] for job in jobs}

    def query(self, path: str, **params: str) -> object:
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def wait_scraped(self, timeout: float = 40) -> dict[str, dict[str, float]]:
        """job → {"up": 0/1, "samples": scrape_samples_scraped} once every job was scraped."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.proc.stderr.read().decode()}")
            try:
                got: dict[str, dict[str, float]] = {}
                for metric, key in (("up", "up"), ("scrape_samples_scraped", "samples")):
                    for item in self.query("/api/v1/query", query=metric)["result"]:  # type: ignore
                        got.setdefault(item["metric"]["job"], {})[key] = float(item["value"][1])
                if set(got) >= self.jobs and all(len(v) == 2 for v in got.values()):
                    return got
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("prometheus did not scrape every job in time")
            time.sleep(0.3)

    def close(self) -> None:
        stop_process(self.proc)  # type: ignore[arg-type]
