"""The prometheus receiver in a real gateway process, scraping real targets into ClickHouse.

One gateway (prometheus → batch → clickhouse) scrapes, every second:
- node:     a real node_exporter (relabel_configs add env=ci, a metric_relabel_config drops
            node_scrape_collector_*);
- captures: the shared Linkerd, Traefik and OpenMetrics captures, served by a test HTTP target;
- counter:  a counter that goes 10 → 20 → 5 → 7 (a reset) and one with _created;
- bad:      targets that time out, answer 500, garbage, a truncated body, a body over
            body_size_limit, too many samples, duplicate series, and one good target beside them;
- flappy:   a target one of whose series goes away;
- pods:     a pod found through kubernetes_sd_configs (the test Kubernetes API server), whose
            rows must carry the pod's k8s.* resource attributes.
The tests read the rows back through the gateway's query endpoint.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtests.gatewayproc import Gateway, default_config, free_port, stop_process
from tests.k8sapi import FakeKubeAPI
from tests.receivers.prometheus.test_convert import OM, Exposition
from tests.receivers.prometheus.test_scrape_loop import (
    TargetServer,
    body,
    sequence,
    slow,
    truncated,
)

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or (
    "/usr/bin/prometheus-node-exporter" if Path("/usr/bin/prometheus-node-exporter").exists()
    else None)
CAPTURES = {"linkerd": ("linkerd-proxy.prom", "text/plain; version=0.0.4"),
            "traefik": ("traefik.prom", "text/plain; version=0.0.4"),
            "om": ("openmetrics-sample.txt", OM)}
BAD = ["slow", "http500", "garbage", "truncated", "big", "many"]


def _wait_url(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def node_exporter() -> Iterator[str]:
    if NODE_EXPORTER is None:
        pytest.skip("prometheus-node-exporter is not installed (Debian package "
                    "prometheus-node-exporter; `make system-deps` installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
         *(f"--collector.{c}" for c in ("meminfo", "cpu", "uname", "loadavg"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_url(f"http://127.0.0.1:{port}/metrics")
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(proc)


def _static(address: str, **paths: str) -> list[dict[str, Any]]:
    """One static target per path, told apart by their instance label."""
    return [{"targets": [address], "labels": {"__metrics_path__": path, "instance": name}}
            for name, path in paths.items()]


def _config(gw: Gateway, node: str, targets: TargetServer, kubeconfig: Path) -> dict[str, Any]:
    a = targets.address
    every = {"scrape_interval": "1s", "scrape_timeout": "500ms"}
    jobs = [
        {"job_name": "node", "scrape_interval": "1s", "scrape_timeout": "1s",
         "static_configs": [{"targets": [node]}],
         "relabel_configs": [{"target_label": "env", "replacement": "ci"}],
         "metric_relabel_configs": [{"source_labels": ["__name__"],
                                     "regex": "node_scrape_collector_.*", "action": "drop"}]},
        {"job_name": "captures", **every, "static_configs": _static(
            a, **{k: f"/{k}" for k in CAPTURES})},
        {"job_name": "counter", **every, "static_configs": _static(
            a, reset="/reset", created="/created")},
        {"job_name": "bad", **every, "body_size_limit": "1KB", "sample_limit": 50,
         "static_configs": _static(a, good="/good", dupes="/dupes",
                                   **{n: f"/{n}" for n in BAD})},
        {"job_name": "flappy", **every, "static_configs": _static(a, flappy="/flappy")},
        {"job_name": "pods", **every,
         "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": str(kubeconfig)}],
         "relabel_configs": [
             {"source_labels": ["__meta_kubernetes_pod_container_port_name"],
              "regex": "metrics", "action": "keep"},
             {"replacement": "/pod", "target_label": "__metrics_path__"},
             {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"}]},
    ]
    cfg = default_config(gw.data_dir, gw.ports)
    cfg["receivers"] = {"prometheus": {"config": {"scrape_configs": jobs}}}
    cfg["processors"] = {"batch": {"timeout": "1s"}}
    cfg["service"]["pipelines"] = {"metrics": {
        "receivers": ["prometheus"], "processors": ["batch"], "exporters": ["clickhouse"]}}
    return cfg


def _serve_captures(targets: TargetServer, shared_data: Path) -> None:
    """The captures are served from the test that needs them (shared_data skips when the
    captures are absent); until then those targets answer 404."""
    for name, (file, ctype) in CAPTURES.items():
        if f"/{name}" not in targets.routes:
            targets.routes[f"/{name}"] = body((shared_data / "prometheus" / file).read_bytes(),
                                              ctype)


@pytest.fixture(scope="module")
def targets() -> Iterator[TargetServer]:
    srv = TargetServer().start()
    srv.routes["/reset"] = sequence(*(f"# TYPE r_total counter\nr_total {v}\n"
                                      for v in (10, 20, 5, 7)))
    srv.routes["/created"] = body("# TYPE c counter\nc_total 4\nc_created 1700000000.25\n"
                                  "# EOF\n", OM)
    srv.routes["/good"] = body("# TYPE ok gauge\nok 1\n")
    srv.routes["/dupes"] = body('d{a="1"} 1\nd{a="1"} 2\n')
    srv.routes["/slow"] = slow(2.0)
    srv.routes["/http500"] = body("internal error", status=500)
    srv.routes["/garbage"] = body("<html>\n<h1>Welcome to nginx!</h1>\n</html>\n", "text/html")
    srv.routes["/truncated"] = truncated('ok 1\npartial{a="b"} 1')
    srv.routes["/big"] = body("# " + "x" * 2000 + "\nok 1\n")
    srv.routes["/many"] = body("".join(f"s{i} {i}\n" for i in range(60)))
    srv.routes["/flappy"] = body("stays 1\nvanishes 2\n")
    srv.routes["/pod"] = body("# TYPE app_requests_total counter\napp_requests_total 42\n")
    yield srv
    srv.stop()


def _pod(port: int) -> dict[str, Any]:
    return {"metadata": {"name": "web-5d8f7c-x2x", "namespace": "shop", "uid": "7f1c-uid",
                         "labels": {"app": "web"}, "ownerReferences": [
                             {"kind": "ReplicaSet", "name": "web-5d8f7c", "controller": True,
                              "apiVersion": "apps/v1", "uid": "rs-uid"}]},
            "spec": {"nodeName": "worker-3", "containers": [
                {"name": "web", "ports": [{"name": "metrics", "containerPort": port,
                                           "protocol": "TCP"},
                                          {"name": "http", "containerPort": 1,
                                           "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": "127.0.0.1", "hostIP": "10.0.0.3"}}


@pytest.fixture(scope="module")
def kube(targets: TargetServer) -> Iterator[FakeKubeAPI]:
    api = FakeKubeAPI().start()
    api.add("pods", _pod(targets.port))
    yield api
    api.stop()


@pytest.fixture(scope="module")
def gw(node_exporter: str, targets: TargetServer, kube: FakeKubeAPI,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("prom-gw")
    g = Gateway(tmp)
    g.config = _config(g, node_exporter, targets, kube.write_kubeconfig(tmp / "kubeconfig"))
    g.config_path.write_text(yaml.safe_dump(g.config, sort_keys=False))
    g.start()
    try:
        assert g.wait_count("otel_metrics_gauge", 3, "MetricName = 'up' AND "
                            "ServiceName = 'node' AND Value = 1", timeout=20) >= 3, g.logs()
        yield g
    finally:
        code = g.stop()
        assert code == 0, g.logs()[-3000:]


def _latest(gw: Gateway, table: str, where: str, cols: str) -> list[dict[str, Any]]:
    """The newest non-stale row of each series matching `where`."""
    return gw.rows(f"SELECT MetricName, Attributes, {cols} FROM {table} WHERE {where} AND "
                   f"Flags = 0 ORDER BY TimeUnix DESC LIMIT 1 BY MetricName, Attributes")


def _node_metrics(node: str) -> str:
    with urllib.request.urlopen(f"http://{node}/metrics", timeout=5) as r:
        return r.read().decode()


# ---- node_exporter ---------------------------------------------------------------------


def test_node_exporter_values_resource_and_relabeling(gw: Gateway, node_exporter: str) -> None:
    text = _node_metrics(node_exporter)
    memtotal = next(float(line.split()[-1]) for line in text.splitlines()
                    if line.startswith("node_memory_MemTotal_bytes "))
    (row,) = gw.rows("SELECT Value, Attributes, ResourceAttributes, ServiceName FROM "
                     "otel_metrics_gauge WHERE MetricName = 'node_memory_MemTotal_bytes' "
                     "ORDER BY TimeUnix DESC LIMIT 1")
    assert row["Value"] == memtotal
    assert row["Attributes"] == {"env": "ci"}  # added by relabel_configs
    assert row["ServiceName"] == "node"
    assert row["ResourceAttributes"] == {
        "service.name": "node", "service.instance.id": node_exporter,
        "server.port": node_exporter.rsplit(":", 1)[1], "url.scheme": "http"}
    cpu_series = {line.split(" ")[0] for line in text.splitlines()
                  if line.startswith("node_cpu_seconds_total{")}
    rows = _latest(gw, "otel_metrics_sum", "MetricName = 'node_cpu_seconds_total'",
                   "IsMonotonic, AggregationTemporality, StartTimeUnix, TimeUnix")
    assert len(rows) == len(cpu_series) > 0
    assert all(r["IsMonotonic"] and r["AggregationTemporality"] == 2 and
               r["StartTimeUnix"] < r["TimeUnix"] for r in rows)
    assert gw.count("otel_metrics_gauge", "MetricName LIKE 'node_scrape_collector_%'") == 0
    assert "node_scrape_collector_success" in text  # it was there to drop


def test_up_rows_for_the_node_target(gw: Gateway, node_exporter: str) -> None:
    rows = gw.rows("SELECT Value, instance, Attributes FROM otel_metrics_gauge "
                   "WHERE MetricName = 'up' AND ServiceName = 'node'")
    assert len(rows) >= 3
    assert {r["Value"] for r in rows} == {1}
    assert {r["instance"] for r in rows} == {node_exporter}


# ---- captures --------------------------------------------------------------------------


@pytest.mark.parametrize("instance", list(CAPTURES))
def test_capture_histograms_and_counters_in_clickhouse(gw: Gateway, targets: TargetServer,
                                                       shared_data: Path, instance: str) -> None:
    _serve_captures(targets, shared_data)
    file, ctype = CAPTURES[instance]
    exp = Exposition((shared_data / "prometheus" / file).read_text(), ctype == OM)
    where = f"ServiceName = 'captures' AND instance = '{instance}'"
    assert gw.wait_count("otel_metrics_gauge", 2, f"{where} AND MetricName = 'up' AND "
                         f"Value = 1") >= 2
    rows = _latest(gw, "otel_metrics_histogram", where,
                   "BucketCounts, ExplicitBounds, Count, Sum, StartTimeUnix, TimeUnix, "
                   "Exemplars.FilteredAttributes AS ex")
    got = {(r["MetricName"], tuple(sorted(r["Attributes"].items()))): r for r in rows}
    expected = exp.histograms()
    assert len(got) == len(expected) > 0
    for (fam, key), h in expected.items():
        r = got[(fam, key)]
        bounds, counts = exp.expected_histogram(h)
        assert (r["ExplicitBounds"], r["BucketCounts"]) == (bounds, counts), (fam, key)
        assert (int(r["Count"]), r["Sum"]) == (h["count"], h["sum"])
        assert [e["dummyID"] for e in r["ex"]] == [lab["dummyID"] for lab, _, _ in
                                                  h["exemplars"]]
    sums = _latest(gw, "otel_metrics_sum", where,
                   "Value, IsMonotonic, AggregationTemporality, StartTimeUnix, TimeUnix")
    values = {(r["MetricName"], tuple(sorted(r["Attributes"].items()))): r for r in sums}
    counters = [(n, exp.key(lab), v) for n, lab, v, _ in exp.samples
                if exp.family(n)[1] == "counter" and not n.endswith("_created")]
    assert counters
    for name, key, value in counters:
        r = values[(name, key)]
        assert r["Value"] == value and r["IsMonotonic"] and r["AggregationTemporality"] == 2
        assert r["StartTimeUnix"] <= r["TimeUnix"]


def test_openmetrics_summary_quantiles(gw: Gateway, targets: TargetServer,
                                      shared_data: Path) -> None:
    _serve_captures(targets, shared_data)
    assert gw.wait_count("otel_metrics_summary", 1, "instance = 'om'") >= 1
    rows = _latest(gw, "otel_metrics_summary", "instance = 'om' AND "
                   "MetricName = 'rpc_durations_seconds'",
                   "Count, Sum, ValueAtQuantiles.Quantile AS q, ValueAtQuantiles.Value AS v")
    normal = next(r for r in rows if r["Attributes"] == {"service": "normal"})
    assert (int(normal["Count"]), normal["Sum"]) == (15, -8.452185437166741e-05)
    assert normal["q"] == [0.5, 0.9, 0.99]
    assert normal["v"] == [-5.066758674917046e-06, 0.0002935723711788224, 0.0003023094636293776]


# ---- start times ---------------------------------------------------------------------


def test_counter_start_time_first_observation_then_reset(gw: Gateway) -> None:
    where = "ServiceName = 'counter' AND MetricName = 'r_total'"
    assert gw.wait_count("otel_metrics_sum", 4, where) >= 4
    rows = gw.rows(f"SELECT Value, toUnixTimestamp64Milli(StartTimeUnix) AS s, "
                   f"toUnixTimestamp64Milli(TimeUnix) AS t FROM otel_metrics_sum "
                   f"WHERE {where} ORDER BY TimeUnix LIMIT 4")
    assert [r["Value"] for r in rows] == [10, 20, 5, 7]
    first, second, reset, after = rows
    assert first["s"] == first["t"] == second["s"] < second["t"]
    assert reset["s"] == reset["t"] > first["s"]
    assert after["s"] == reset["s"] < after["t"]
    (c,) = gw.rows("SELECT toUnixTimestamp64Milli(StartTimeUnix) AS s FROM otel_metrics_sum "
                   "WHERE ServiceName = 'counter' AND MetricName = 'c_total' LIMIT 1")
    assert c["s"] == 1700000000250  # from c_created


# ---- failing targets -------------------------------------------------------------------


def test_bad_targets_report_up_0_and_the_good_one_is_scraped_on_time(gw: Gateway) -> None:
    t0 = time.time()
    time.sleep(3)
    where = "ServiceName = 'bad' AND MetricName = 'up'"
    for name in BAD:
        assert gw.wait_count("otel_metrics_gauge", 2, f"{where} AND instance = '{name}' "
                             f"AND Value = 0") >= 2, name
        assert gw.count("otel_metrics_gauge", f"{where} AND instance = '{name}' "
                        f"AND Value = 1") == 0, name
    (good,) = gw.rows(f"SELECT count() AS n, min(Value) AS lo FROM otel_metrics_gauge WHERE "
                      f"{where} AND instance = 'good' AND TimeUnix >= "
                      f"fromUnixTimestamp64Milli({int(t0 * 1000)}) AND TimeUnix < "
                      f"fromUnixTimestamp64Milli({int((t0 + 3) * 1000)})")
    assert good["lo"] == 1 and good["n"] >= 2, good  # every second, bad neighbours or not
    logs = gw.logs()
    for name, why in (("slow", "timed out"), ("http500", "HTTP status 500"),
                      ("garbage", "cannot parse"), ("truncated", "truncated"),
                      ("big", "body size limit"), ("many", "sample limit exceeded")):
        assert any(f"/{name} " in line and why in line for line in logs.splitlines()), name


def test_duplicate_series_are_dropped_with_a_warning(gw: Gateway) -> None:
    where = "ServiceName = 'bad' AND instance = 'dupes'"
    assert gw.wait_count("otel_metrics_gauge", 2, f"{where} AND MetricName = 'up'") >= 2
    assert {r["Value"] for r in gw.rows(f"SELECT Value FROM otel_metrics_gauge WHERE {where} "
                                        f"AND MetricName = 'up'")} == {1}
    assert {r["Value"] for r in gw.rows(f"SELECT Value FROM otel_metrics_gauge WHERE {where} "
                                        f"AND MetricName = 'd'")} == {1}
    assert "/dupes (job bad): dropped 1 samples of series exposed more than once" in gw.logs()


def test_failed_scrapes_mark_the_targets_series_stale(gw: Gateway) -> None:
    # /big and /many fail from the first scrape on: nothing of theirs but `up` and scrape_*.
    assert gw.count("otel_metrics_gauge", "ServiceName = 'bad' AND instance = 'many' AND "
                    "MetricName LIKE 's%' AND MetricName NOT LIKE 'scrape_%'") == 0


def test_vanished_series_gets_a_no_recorded_value_row(gw: Gateway, targets: TargetServer) -> None:
    where = "ServiceName = 'flappy' AND MetricName = 'vanishes'"
    assert gw.wait_count("otel_metrics_gauge", 2, f"{where} AND Flags = 0") >= 2
    targets.routes["/flappy"] = body("stays 1\n")
    assert gw.wait_count("otel_metrics_gauge", 1, f"{where} AND Flags = 1") == 1
    time.sleep(1.5)
    stale = gw.rows(f"SELECT Value, Flags FROM otel_metrics_gauge WHERE {where} AND Flags = 1")
    assert stale == [{"Value": 0, "Flags": 1}]  # one marker, then nothing
    assert gw.count("otel_metrics_gauge", "ServiceName = 'flappy' AND MetricName = 'stays' AND "
                    "Flags = 1") == 0


# ---- kubernetes_sd -------------------------------------------------------------------


def test_kubernetes_discovered_pod_rows_carry_the_pods_resource(gw: Gateway,
                                                                 targets: TargetServer) -> None:
    where = "ServiceName = 'pods' AND MetricName = 'app_requests_total'"
    assert gw.wait_count("otel_metrics_sum", 1, where) >= 1, gw.logs()[-2000:]
    (row,) = gw.rows(f"SELECT ResourceAttributes, Attributes, Value, node_name, instance "
                     f"FROM otel_metrics_sum WHERE {where} LIMIT 1")
    assert row["ResourceAttributes"] == {
        "service.name": "pods", "service.instance.id": targets.address,
        "server.port": str(targets.port), "url.scheme": "http",
        "k8s.namespace.name": "shop", "k8s.pod.name": "web-5d8f7c-x2x",
        "k8s.pod.uid": "7f1c-uid", "k8s.container.name": "web", "k8s.node.name": "worker-3",
        "k8s.replicaset.name": "web-5d8f7c"}
    # the correlation columns materialized from the resource
    assert (row["node_name"], row["instance"]) == ("worker-3", targets.address)
    assert row["Attributes"] == {"namespace": "shop"} and row["Value"] == 42
    # the pod's other port was not kept by relabel_configs: one target only
    assert gw.count("otel_metrics_gauge", "ServiceName = 'pods' AND MetricName = 'up'") == \
        gw.count("otel_metrics_gauge", f"ServiceName = 'pods' AND MetricName = 'up' AND "
                 f"instance = '{targets.address}'")
