"""otelgw and Prometheus scrape the same real node_exporter: same series, same values.

Both scrape every second; then every gauge and counter series Prometheus has is compared with
the rows otelgw stored (metric name + labels), and stable gauges must carry equal values.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from loadtests.gatewayproc import Gateway, default_config, free_port, stop_process, wait_http

NODE_EXPORTER = shutil.which("prometheus-node-exporter")
PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    not (NODE_EXPORTER and PROMETHEUS),
    reason="needs node_exporter and Prometheus (Debian packages prometheus-node-exporter, "
           "prometheus; `make system-deps` installs them)")

# Values that do not move between two scrapes a second apart.
STABLE = ["node_memory_MemTotal_bytes", "node_filesystem_size_bytes", "node_uname_info",
          "node_exporter_build_info", "node_memory_SwapTotal_bytes"]
COLLECTORS = ["meminfo", "filesystem", "uname", "cpu", "loadavg", "stat"]




def prom_api(base: str, path: str, **params: str) -> object:
    with urllib.request.urlopen(f"{base}{path}?{urllib.parse.urlencode(params)}",
                                timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture(scope="module")
def node_exporter() -> Iterator[str]:
    port = free_port()
    args = [NODE_EXPORTER or "", f"--web.listen-address=127.0.0.1:{port}",
            "--collector.disable-defaults", *(f"--collector.{c}" for c in COLLECTORS)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics")
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(proc)


def scrape_config(target: str) -> dict[str, object]:
    return {"job_name": "node", "scrape_interval": "1s", "scrape_timeout": "1s",
            "static_configs": [{"targets": [target]}]}


@pytest.fixture(scope="module")
def both(node_exporter: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[Gateway, str]]:
    tmp = tmp_path_factory.mktemp("vs-prometheus")
    gw = Gateway(tmp / "gw")
    cfg = default_config(gw.data_dir, gw.ports)
    cfg["receivers"] = {"prometheus": {"config": {"scrape_configs": [
        scrape_config(node_exporter)]}}}
    cfg["service"]["pipelines"] = {"metrics": {
        "receivers": ["prometheus"], "processors": ["batch"], "exporters": ["clickhouse"]}}
    gw.config = cfg
    gw.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    port = free_port()
    prom_cfg = Path(tmp / "prometheus.yml")
    prom_cfg.write_text(yaml.safe_dump({"scrape_configs": [scrape_config(node_exporter)]}))
    prom = subprocess.Popen([PROMETHEUS or "", f"--config.file={prom_cfg}",
                             f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        gw.start()
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/-/ready")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # a few scrapes on both sides
            up = prom_api(base, "/api/v1/query", query='count_over_time(up{job="node"}[1m])')
            ours = gw.count("otel_metrics_gauge", "MetricName = 'up' AND Value = 1")
            if up and up["result"] and float(  # type: ignore[index]
                    up["result"][0]["value"][1]) >= 3 and ours >= 3:  # type: ignore[index]
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"no three successful scrapes on both sides:\n{gw.logs()[-3000:]}")
        yield gw, base
    finally:
        stop_process(prom)
        gw.stop()


def _ours(gw: Gateway, table: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    rows = gw.rows(f"SELECT MetricName AS name, Attributes AS labels, "
                   f"argMax(Value, TimeUnix) AS value FROM {table} "
                   f"WHERE ServiceName = 'node' AND Flags = 0 GROUP BY name, labels")
    return {(r["name"], tuple(sorted(r["labels"].items()))): float(r["value"]) for r in rows}


def test_same_gauge_and_counter_series(both: tuple[Gateway, str]) -> None:
    gw, base = both
    metadata = prom_api(base, "/api/v1/metadata")
    simple = {name for name, entries in metadata.items()  # type: ignore[union-attr]
              if entries[0]["type"] in ("gauge", "counter", "unknown")}
    series = prom_api(base, "/api/v1/series", **{"match[]": '{job="node"}'})
    theirs = {(s["__name__"], tuple(sorted((k, v) for k, v in s.items()
                                           if k not in ("__name__", "job", "instance"))))
              for s in series if s["__name__"] in simple}  # type: ignore[union-attr]
    ours = set(_ours(gw, "otel_metrics_gauge")) | set(_ours(gw, "otel_metrics_sum"))
    # The synthetic scrape series are Prometheus's own (no metadata): compare them by name.
    assert {n for n, _ in theirs} - {n for n, _ in ours} == set()
    assert theirs - ours == set(), "series Prometheus has and otelgw does not"
    assert {k for k in ours if k[0] in simple} - theirs == set(), \
        "series otelgw has and Prometheus does not"


def test_stable_gauges_have_equal_values(both: tuple[Gateway, str]) -> None:
    gw, base = both
    ours = _ours(gw, "otel_metrics_gauge")
    compared = 0
    for name in STABLE:
        result = prom_api(base, "/api/v1/query", query=f'{name}{{job="node"}}')
        for s in result["result"]:  # type: ignore[index]
            labels = tuple(sorted((k, v) for k, v in s["metric"].items()
                                  if k not in ("__name__", "job", "instance")))
            assert ours.get((name, labels)) == float(s["value"][1]), (name, labels)
            compared += 1
    assert compared >= 4, "too few stable series to compare"


def test_up_and_scrape_series_agree(both: tuple[Gateway, str]) -> None:
    gw, base = both
    ours = _ours(gw, "otel_metrics_gauge")
    assert ours[("up", ())] == 1.0
    theirs = prom_api(base, "/api/v1/query", query='scrape_samples_scraped{job="node"}')
    # Both parse the same exposition: the same number of samples per scrape, give or take
    # series that come and go between scrapes (none with these collectors).
    assert ours[("scrape_samples_scraped", ())] == float(
        theirs["result"][0]["value"][1])  # type: ignore[index]
