"""OTLP → Prometheus names: the cases the contrib translator (v0.129.0) documents in its tests,
plus label names, escaping and label values (pdata AsString)."""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from exporters.prometheus.names import clean_up, escape, job_instance, label_name, label_value
from exporters.prometheus.names import metric_name as name

GAUGE = [
    ("system.filesystem.usage", "By", "system_filesystem_usage_bytes"),
    ("\t system.filesystem.usage       ", "  By\t", "system_filesystem_usage_bytes"),
    ("system.network.dropped", "{packets}", "system_network_dropped"),
    ("system.network.dropped", "packets", "system_network_dropped_packets"),
    ("system.network.packets.dropped", "packets", "system_network_packets_dropped"),
    ("system.network.packets", "packets", "system_network_packets"),
    ("hw.gpu.memory.utilization", "1", "hw_gpu_memory_utilization_ratio"),
    ("hw.fan.speed_ratio", "1", "hw_fan_speed_ratio"),
    ("hw.cpu.speed_limit", "Hz", "hw_cpu_speed_limit_hertz"),
    ("broken.metric.speed", "km/h", "broken_metric_speed_km_per_hour"),
    ("astro.light.speed_limit", "m/s", "astro_light_speed_limit_meters_per_second"),
    ("broken.metric.success_ratio", "%", "broken_metric_success_ratio_percent"),
    ("broken.metric.success_percent", "%", "broken_metric_success_percent"),
    ("test.metric.no_unit", "", "test_metric_no_unit"),
    ("test.metric.spaces", "   \t  ", "test_metric_spaces"),
    ("unsupported.metric.temperature", "°F", "unsupported_metric_temperature_F"),
    ("unsupported.metric.weird", "+=.:,!* & #", "unsupported_metric_weird"),
    ("unsupported.metric.redundant", "__test $/°C", "unsupported_metric_redundant_test_per_C"),
    ("active_directory.ds.replication.object.rate", "{objects}/s",
     "active_directory_ds_replication_object_rate_per_second"),
    ("active_directory.ds.name_cache.hit_rate", "%",
     "active_directory_ds_name_cache_hit_rate_percent"),
    ("active_directory.ds.ldap.bind.last_successful.time", "ms",
     "active_directory_ds_ldap_bind_last_successful_time_milliseconds"),
    ("apache.current_connections", "connections", "apache_current_connections"),
    ("apache.workers", "connections", "apache_workers_connections"),
    ("system.cpu.utilization", "1", "system_cpu_utilization_ratio"),
    ("system.cpu.load_average.15m", "1", "system_cpu_load_average_15m_ratio"),
    ("memcached.operation_hit_ratio", "%", "memcached_operation_hit_ratio_percent"),
    ("mongodbatlas.process.asserts", "{assertions}/s", "mongodbatlas_process_asserts_per_second"),
    ("mongodbatlas.process.journaling.data_files", "MiBy",
     "mongodbatlas_process_journaling_data_files_mebibytes"),
    ("mongodbatlas.process.network.io", "By/s", "mongodbatlas_process_network_io_bytes_per_second"),
    ("mongodbatlas.process.oplog.rate", "GiBy/h",
     "mongodbatlas_process_oplog_rate_gibibytes_per_hour"),
    ("mongodbatlas.process.db.query_targeting.scanned_per_returned", "{scanned}/{returned}",
     "mongodbatlas_process_db_query_targeting_scanned_per_returned"),
    ("nginx.requests", "requests", "nginx_requests"),
    ("nginx.connections_accepted", "connections", "nginx_connections_accepted"),
    ("nsxt.node.memory.usage", "KBy", "nsxt_node_memory_usage_kilobytes"),
    ("redis.latest_fork", "us", "redis_latest_fork_microseconds"),
    ("3.14 digits", "", "_3_14_digits"),
    ("envoy__rule_engine_zlib_buf_error", "", "envoy_rule_engine_zlib_buf_error"),
    (":foo::bar", "", "foo_bar"),
    ("crypto.bitcoin.value", "$", "crypto_bitcoin_value"),  # `$` is not a unit in v0.129.0
]

COUNTER = [
    ("system.io", "By", "system_io_bytes_total"),
    ("network_transmitted_bytes_total", "By", "network_transmitted_bytes_total"),
    ("system.network.dropped", "{packets}", "system_network_dropped_total"),
    ("system.network.dropped", "packets", "system_network_dropped_packets_total"),
    ("system.network.packets.dropped", "packets", "system_network_packets_dropped_total"),
    ("system.network.packets", "packets", "system_network_packets_total"),
    ("objects", "1", "objects_total"),
    ("active_directory.ds.replication.network.io", "By",
     "active_directory_ds_replication_network_io_bytes_total"),
    ("active_directory.ds.replication.sync.object.pending", "{objects}",
     "active_directory_ds_replication_sync_object_pending_total"),
    ("apache.requests", "1", "apache_requests_total"),
    ("bigip.virtual_server.request.count", "{requests}", "bigip_virtual_server_request_count_total"),
    ("system.disk.operation_time", "s", "system_disk_operation_time_seconds_total"),
    (":foo::bar", "", "foo_bar_total"),
    ("total.requests", "", "requests_total"),
]


@pytest.mark.parametrize(("otel", "unit", "prom"), GAUGE)
def test_gauge_names(otel: str, unit: str, prom: str) -> None:
    assert name(otel, unit, "gauge", False, "", True) == prom


@pytest.mark.parametrize(("otel", "unit", "prom"), COUNTER)
def test_counter_names(otel: str, unit: str, prom: str) -> None:
    assert name(otel, unit, "sum", True, "", True) == prom


def test_suffixes_depend_on_the_type() -> None:
    # _total only for monotonic sums, _ratio only for gauges
    assert name("queue.depth", "1", "sum", False, "", True) == "queue_depth"
    assert name("latency", "s", "histogram", False, "", True) == "latency_seconds"
    assert name("latency", "s", "summary", False, "", True) == "latency_seconds"
    assert name("utilization", "1", "histogram", False, "", True) == "utilization"


def test_namespace() -> None:
    assert name("test", "", "gauge", False, "space", True) == "space_test"
    assert name("#test", "", "gauge", False, "space", True) == "space_test"
    assert name("network.io", "By", "sum", True, "system", True) == "system_network_io_bytes_total"
    assert name("3.14 digits", "", "gauge", False, "ns", True) == "ns_3_14_digits"
    assert clean_up("test-space") == "test_space" and clean_up("*+$^=)") == ""


def test_without_suffixes() -> None:
    assert name("system.io", "By", "sum", True, "", False) == "system_io"
    assert name("network.io", "By", "sum", True, "system", False) == "system_network_io"
    assert name("network (I/O)", "By", "sum", True, "system", False) == "system_network_I_O"
    assert name("3.14 digits", "By", "gauge", False, "", False) == "_3_14_digits"
    assert name("envoy__rule_engine_zlib_buf_error", "", "gauge", False, "", False) == \
        "envoy__rule_engine_zlib_buf_error"
    assert name(":foo::bar", "", "sum", True, "", False) == ":foo::bar"


@pytest.mark.parametrize(("key", "label"), [
    ("http.method", "http_method"), ("service.name", "service_name"),
    ("1st", "key_1st"), ("_private", "key_private"), ("__reserved", "__reserved"),
    ("a-b c/d", "a_b_c_d"), ("", ""), ("ümlaut", "ümlaut"),
])
def test_label_names(key: str, label: str) -> None:
    assert label_name(key) == label


def test_escape_for_classic_scrapers() -> None:
    assert escape("http_requests_total") == "http_requests_total"
    assert escape("ümlaut_total") == "_mlaut_total"
    assert escape("another label") == "another_label"


def test_job_and_instance() -> None:
    assert job_instance({"service.name": "api", "service.namespace": "shop",
                         "service.instance.id": "i-1"}) == ("shop/api", "i-1")
    assert job_instance({"service.namespace": "shop"}) == (None, None)
    assert job_instance({"service.name": "api"}) == ("api", None)


def _kv(**kw: object) -> AnyValue:
    return AnyValue(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "text"), [
    (_kv(string_value="GET"), "GET"), (_kv(int_value=-42), "-42"), (_kv(bool_value=True), "true"),
    (_kv(double_value=0.25), "0.25"), (_kv(double_value=1e21), "1e+21"),
    (_kv(double_value=1e-7), "1e-7"), (_kv(double_value=100.0), "100"),
    (_kv(bytes_value=b"\x01\x02"), "AQI="),
    (_kv(array_value=ArrayValue(values=[_kv(string_value="a<b"), _kv(int_value=1)])),
     '["a\\u003cb",1]'),
    (_kv(kvlist_value=KeyValueList(values=[KeyValue(key="z", value=_kv(bool_value=False)),
                                          KeyValue(key="a", value=_kv(double_value=1.5))])),
     '{"a":1.5,"z":false}'),
    (_kv(array_value=ArrayValue(values=[_kv(double_value=float("nan"))])), ""),
    (AnyValue(), ""),
])
def test_label_values_as_pdata_writes_them(value: AnyValue, text: str) -> None:
    assert label_value(value) == text
