"""The prometheus receiver's configuration, loaded the way `otelgw run` loads it: Prometheus's
defaults and checks, and every error reported with its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.component import ComponentID
from gateway.config.loader import load_config_text
from gateway.errors import ConfigError
from receivers.prometheus.config import PrometheusReceiverConfig, ScrapeConfig


def _load(receiver: dict[str, Any]) -> PrometheusReceiverConfig:
    text = yaml.safe_dump({
        "receivers": {"prometheus": receiver},
        "exporters": {"clickhouse": {"path": "/tmp/unused"}},
        "service": {"pipelines": {"metrics": {"receivers": ["prometheus"],
                                              "exporters": ["clickhouse"]}}}})
    cfg = load_config_text(text, env={})
    return cfg.receivers[ComponentID("prometheus")].config  # type: ignore[return-value]


def _problems(receiver: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(receiver)
    return info.value.problems


def _jobs(*jobs: dict[str, Any], **config: Any) -> dict[str, Any]:
    return {"config": {"scrape_configs": list(jobs), **config}}


def test_prometheus_defaults_and_global_inheritance() -> None:
    rc = _load(_jobs({"job_name": "a"}, {"job_name": "b", "scrape_interval": "5s"},
                     {"job_name": "c", "scrape_interval": "2m", "sample_limit": 7},
                     **{"global": {"scrape_interval": "30s", "sample_limit": 100,
                                   "body_size_limit": "10MB",
                                   "external_labels": {"cluster": "eu-1"}}}))
    a, b, c = rc.config.scrape_configs
    assert (a.scrape_interval, a.scrape_timeout) == (30, 10)
    assert (b.scrape_interval, b.scrape_timeout) == (5, 5)  # timeout capped at the interval
    assert (c.scrape_interval, c.scrape_timeout) == (120, 10)
    assert (a.sample_limit, c.sample_limit, a.body_size_limit) == (100, 7, 10 * 1024 * 1024)
    assert a.metrics_path == "/metrics" and a.scheme == "http"
    assert a.honor_timestamps and not a.honor_labels and a.enable_compression
    assert a.scrape_protocols == ["OpenMetricsText1.0.0", "OpenMetricsText0.0.1",
                                  "PrometheusText1.0.0", "PrometheusText0.0.4"]
    assert rc.config.global_.external_labels == {"cluster": "eu-1"}
    default = PrometheusReceiverConfig()  # the factory's default config is valid
    assert default.config.global_.scrape_interval == 60 and not default.config.scrape_configs


def test_dollar_dollar_is_a_literal_dollar_in_relabel_rules() -> None:
    rc = _load(_jobs({"job_name": "a", "relabel_configs": [
        {"source_labels": ["__address__"], "regex": "(.+):\\d+$$",
         "replacement": "$${1}:9100", "target_label": "__address__"}]}))
    rule = rc.config.scrape_configs[0].relabel_configs[0]
    assert (rule.regex, rule.replacement) == ("(.+):\\d+$", "${1}:9100")


@pytest.mark.parametrize("receiver,problem", [
    (_jobs({"job_name": "a"}, {"job_name": "a"}),
     "receivers::prometheus::config::scrape_configs: found multiple scrape configs with job "
     "name 'a'"),
    (_jobs({"job_name": "a", "scrape_interval": "5s", "scrape_timeout": "10s"}),
     "receivers::prometheus::config::scrape_configs::0: scrape timeout 10s is greater than "
     "scrape interval 5s"),
    (_jobs(**{"global": {"scrape_interval": "5s", "scrape_timeout": "6s"}}),
     "receivers::prometheus::config::global: global scrape_timeout 6s is greater than "
     "scrape_interval 5s"),
    (_jobs({"job_name": "a", "scrape_interval": "1.5s"}),
     "receivers::prometheus::config::scrape_configs::0::scrape_interval: not a valid duration "
     "string: '1.5s'"),
    (_jobs({"job_name": "a", "body_size_limit": "ten"}),
     "receivers::prometheus::config::scrape_configs::0::body_size_limit: invalid size 'ten'"),
    (_jobs({"job_name": "a", "consul_sd_configs": [{"server": "x"}]}),
     "receivers::prometheus::config::scrape_configs::0: consul_sd_configs is not supported"),
    (_jobs({"job_name": "a", "static_configs": [{"targets": ["http://h:9100/metrics"]}]}),
     "'http://h:9100/metrics' is not a valid hostname"),
    (_jobs({"job_name": "a", "file_sd_configs": [{"files": ["targets.txt"]}]}),
     "file_sd_configs::0::files: path name 'targets.txt' is not valid for file discovery"),
    (_jobs({"job_name": "a", "scrape_protocols": ["PrometheusText0.0.4", "Bogus"]}),
     "receivers::prometheus::config::scrape_configs::0::scrape_protocols::1"),
    (_jobs({"job_name": "a", "tls_config": {"cert_file": "/nonexistent.pem",
                                            "key_file": "/nonexistent.key"}}),
     "tls_config.cert_file '/nonexistent.pem' does not exist"),
    (_jobs({"job_name": "a", "basic_auth": {"username": "u"}, "bearer_token": "t"}),
     "at most one of basic_auth, oauth2, authorization, bearer_token, bearer_token_file"),
    (_jobs({"job_name": "a", "scrape_intervall": "5s"}),
     "receivers::prometheus::config::scrape_configs::0::scrape_intervall: unknown key"),
    (_jobs({"job_name": "a"}, remote_write=[{"url": "http://x"}]),
     "receivers::prometheus::config: unsupported features: remote_write"),
    ({"target_allocator": {"endpoint": "http://ta", "interval": "30s", "collector_id": "c"}},
     "receivers::prometheus: target_allocator is not supported by otelgw"),
    ({**_jobs({"job_name": "a"}), "start_time_metric_regex": "("},
     "receivers::prometheus::start_time_metric_regex: invalid regular expression"),
])
def test_errors_name_the_path(receiver: dict[str, Any], problem: str) -> None:
    problems = _problems(receiver)
    assert any(problem in p for p in problems), problems


def test_scrape_config_files_add_jobs(tmp_path: Path) -> None:
    (tmp_path / "more.yaml").write_text(yaml.safe_dump({"scrape_configs": [
        {"job_name": "from-file", "static_configs": [{"targets": ["h:1"]}]}]}))
    rc = _load(_jobs({"job_name": "inline"}, scrape_config_files=[str(tmp_path / "*.yaml")]))
    assert [sc.job_name for sc in rc.config.scrape_configs] == ["inline", "from-file"]
    assert isinstance(rc.config.scrape_configs[1], ScrapeConfig)
    (tmp_path / "dup.yaml").write_text(yaml.safe_dump({"scrape_configs": [
        {"job_name": "inline"}]}))
    problems = _problems(_jobs({"job_name": "inline"},
                               scrape_config_files=[str(tmp_path / "*.yaml")]))
    assert any("found multiple scrape configs with job name 'inline'" in p for p in problems)


def test_collector_options_accepted() -> None:
    rc = _load({**_jobs({"job_name": "a"}), "trim_metric_suffixes": True,
                "use_start_time_metric": True, "start_time_metric_regex": "^process_start.*",
                "report_extra_scrape_metrics": True, "api_server": {"enabled": False}})
    assert rc.trim_metric_suffixes and rc.use_start_time_metric and rc.report_extra_scrape_metrics
