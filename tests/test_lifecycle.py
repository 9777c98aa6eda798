"""SIGTERM drains (the request in flight is answered and stored, exit 0), a restart keeps the
stored data, and every listener says where it listens."""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from loadtests.gatewayproc import Gateway, default_config, free_port


def _logs(service: str, n: int) -> bytes:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    a = rl.resource.attributes.add()
    a.key, a.value.string_value = "service.name", service
    sl = rl.scope_logs.add()
    for i in range(n):
        r = sl.log_records.add()
        r.time_unix_nano = 1_767_225_600 * 10**9 + i
        r.body.string_value = f"line {i}"
    return req.SerializeToString()


def _post(url: str, body: bytes, out: list[int]) -> None:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-protobuf"})
    out.append(urllib.request.urlopen(req, timeout=60).status)


def test_sigterm_drains_and_restart_keeps_data(tmp_path: Path) -> None:
    ports = {k: free_port() for k in ("grpc", "http", "query", "metrics")}
    config = default_config(tmp_path / "data", ports)
    # a batch that would wait 60 s: only the shutdown flush can store it in time
    config["processors"]["batch"] = {"send_batch_size": 100000, "timeout": "60s"}
    gw = Gateway(tmp_path, config, ports).start()
    logs = gw.logs()
    for needle in (f"OTLP/gRPC listening on 127.0.0.1:{ports['grpc']}",
                   f"OTLP/HTTP listening on 127.0.0.1:{ports['http']}",
                   f"query endpoint (read-only) on http://127.0.0.1:{ports['query']}",
                   f"Prometheus metrics on http://127.0.0.1:{ports['metrics']}/metrics"):
        assert needle in logs

    statuses: list[int] = []
    client = threading.Thread(target=_post, args=(f"{gw.http_url}/v1/logs",
                                                   _logs("drain", 500), statuses))
    client.start()
    time.sleep(1.0)  # the request is in, waiting for its batch
    started = time.monotonic()
    assert gw.stop(signal.SIGTERM) == 0
    client.join(10)
    assert statuses == [200]
    assert time.monotonic() - started < 30
    assert "otelgw stopped" in gw.logs()

    again = Gateway(tmp_path, config, ports).start()
    try:
        assert again.count("otel_logs", "ServiceName = 'drain'") == 500
    finally:
        assert again.stop() == 0
