"""`receivers.prometheus` configuration: the Collector's receiver options around a Prometheus
configuration (`config:`), with Prometheus's names, defaults and checks (config/config.go of the
Prometheus release the pinned Collector vendors, v3.4).

Scrape settings left out of a scrape config take the `global` value, as Prometheus does; the
validated config holds the resolved values, so the rest of the receiver never looks at `global`.
"""

from __future__ import annotations

import glob
import re
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from gateway.config.types import ComponentConfig
from receivers.prometheus.discovery.file import FileSDConfig
from receivers.prometheus.discovery.kubernetes import KubernetesSDConfig
from receivers.prometheus.discovery.static import StaticConfig
from receivers.prometheus.httpconfig import (
    ByteSize,
    HTTPClientConfig,
    PromConfig,
    PromDuration,
    format_prom_duration,
    parse_prom_duration,
)
from receivers.prometheus.relabel import RelabelConfig

ScrapeProtocol = Literal["PrometheusProto", "PrometheusText0.0.4", "PrometheusText1.0.0",
                         "OpenMetricsText0.0.1", "OpenMetricsText1.0.0"]
PROTOCOL_HEADERS: dict[str, str] = {
    "PrometheusProto": "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
                       "encoding=delimited",
    "PrometheusText0.0.4": "text/plain;version=0.0.4",
    "PrometheusText1.0.0": "text/plain;version=1.0.0",
    "OpenMetricsText0.0.1": "application/openmetrics-text;version=0.0.1",
    "OpenMetricsText1.0.0": "application/openmetrics-text;version=1.0.0",
}
DEFAULT_PROTOCOLS: list[ScrapeProtocol] = ["OpenMetricsText1.0.0", "OpenMetricsText0.0.1",
                                           "PrometheusText1.0.0", "PrometheusText0.0.4"]
_SUPPORTED_SD = ("static_configs", "file_sd_configs", "kubernetes_sd_configs")
_NAME_VALIDATION = Literal["", "utf8", "legacy"]
_NAME_ESCAPING = Literal["", "allow-utf-8", "underscores", "dots", "values"]


def _check_protocols(value: list[str] | None) -> list[str] | None:
    if value is None:
        return value
    if not value:
        raise ValueError("scrape_protocols cannot be empty")
    if len({p.lower() for p in value}) != len(value):
        raise ValueError(f"duplicated protocol in scrape_protocols, got {value}")
    return value


def _check_label_names(value: dict[str, str]) -> dict[str, str]:
    for name in value:
        if not name:
            raise ValueError("a label name must not be empty")
    return value


class GlobalConfig(PromConfig):
    scrape_interval: PromDuration = Field(60.0, gt=0, description="How often targets are "
                                                                  "scraped by default.")
    scrape_timeout: PromDuration = Field(10.0, ge=0, description="Default per-scrape timeout "
                                                                 "(at most scrape_interval).")
    scrape_protocols: list[ScrapeProtocol] = Field(
        default_factory=lambda: list(DEFAULT_PROTOCOLS),
        description="Exposition formats offered in the Accept header, preferred first.")
    evaluation_interval: PromDuration = Field(60.0, description="Accepted; no rules run here.")
    rule_query_offset: PromDuration = Field(0.0, description="Accepted; no rules run here.")
    external_labels: dict[str, str] = Field(default_factory=dict,
                                            description="Labels added to every scraped sample "
                                                        "(they win over the sample's own).")
    query_log_file: str = Field("", description="Accepted; there is no query engine.")
    scrape_failure_log_file: str = Field("", description="File that failed scrapes are "
                                                         "appended to, one line each.")
    body_size_limit: ByteSize = Field(0, description="Default largest uncompressed body "
                                                     "(0: no limit).")
    sample_limit: int = Field(0, ge=0, description="Default samples per scrape (0: no limit).")
    target_limit: int = Field(0, ge=0, description="Default targets per job (0: no limit).")
    label_limit: int = Field(0, ge=0, description="Default labels per sample (0: no limit).")
    label_name_length_limit: int = Field(0, ge=0, description="Default longest label name.")
    label_value_length_limit: int = Field(0, ge=0, description="Default longest label value.")
    keep_dropped_targets: int = Field(0, ge=0, description="Accepted (no target UI here).")
    metric_name_validation_scheme: _NAME_VALIDATION = Field(
        "", description="utf8 (default) or legacy metric and label name validation.")
    metric_name_escaping_scheme: _NAME_ESCAPING = Field(
        "", description="Accepted; names are stored as scraped.")
    convert_classic_histograms_to_nhcb: bool = Field(False, description="Not supported (must "
                                                                        "stay false).")

    _labels = field_validator("external_labels")(_check_label_names)
    _protocols = field_validator("scrape_protocols")(_check_protocols)

    @model_validator(mode="before")
    @classmethod
    def _timeout_default(cls, data: Any) -> Any:
        # An unset timeout is 10s, or the interval when that is shorter (Prometheus's rule).
        if isinstance(data, dict) and data.get("scrape_interval") and \
                data.get("scrape_timeout") in (None, "0", 0):
            data = dict(data)
            data["scrape_timeout"] = format_prom_duration(min(10.0, _seconds(
                data["scrape_interval"])))
        return data

    @model_validator(mode="after")
    def _check(self) -> GlobalConfig:
        if self.scrape_timeout > self.scrape_interval:
            raise ValueError(f"global scrape_timeout {format_prom_duration(self.scrape_timeout)} "
                             f"is greater than scrape_interval "
                             f"{format_prom_duration(self.scrape_interval)}")
        if self.convert_classic_histograms_to_nhcb:
            raise ValueError("convert_classic_histograms_to_nhcb is not supported by otelgw")
        return self


def _seconds(value: Any) -> float:
    try:
        return parse_prom_duration(value)
    except ValueError:
        return float("inf")  # reported by the field itself


class ScrapeConfig(HTTPClientConfig):
    job_name: str = Field(..., min_length=1, description="The job label of its targets.")
    honor_labels: bool = Field(False, description="Keep a scraped label that conflicts with a "
                                                  "target label (otherwise it is renamed "
                                                  "exported_<name>).")
    honor_timestamps: bool = Field(True, description="Use the timestamps the target exposes.")
    track_timestamps_staleness: bool = Field(False, description="Mark series with explicit "
                                                                "timestamps stale when they "
                                                                "disappear.")
    params: dict[str, list[str]] = Field(default_factory=dict,
                                         description="URL query parameters of the scrape.")
    scrape_interval: PromDuration | None = Field(None, gt=0, description="How often to scrape "
                                                                         "(default: global).")
    scrape_timeout: PromDuration | None = Field(None, gt=0, description="Per-scrape timeout "
                                                                        "(default: global, at "
                                                                        "most the interval).")
    scrape_protocols: list[ScrapeProtocol] | None = Field(
        None, description="Accept header preference (default: global).")
    fallback_scrape_protocol: ScrapeProtocol | Literal[""] = Field(
        "", description="Format assumed when the response has no usable Content-Type "
                        "(default PrometheusText0.0.4, as the Collector sets it).")
    always_scrape_classic_histograms: bool = Field(False, description="Accepted; classic "
                                                                      "histograms are always "
                                                                      "scraped.")
    convert_classic_histograms_to_nhcb: bool | None = Field(None, description="Not supported "
                                                                              "(must be false).")
    scrape_failure_log_file: str = Field("", description="File failed scrapes are appended to "
                                                         "(default: global).")
    metrics_path: str = Field("/metrics", description="HTTP path of the metrics.")
    scheme: Literal["http", "https"] = Field("http", description="http or https.")
    enable_compression: bool = Field(True, description="Ask for gzip-compressed responses.")
    body_size_limit: ByteSize | None = Field(None, description="Largest uncompressed body; a "
                                                               "larger one fails the scrape (0: "
                                                               "no limit; default: global).")
    sample_limit: int | None = Field(None, ge=0, description="More samples (after metric "
                                                             "relabeling) fail the scrape.")
    target_limit: int | None = Field(None, ge=0, description="More targets fail every scrape "
                                                             "of the job.")
    label_limit: int | None = Field(None, ge=0, description="More labels on a sample fail the "
                                                            "scrape.")
    label_name_length_limit: int | None = Field(None, ge=0, description="Longest label name.")
    label_value_length_limit: int | None = Field(None, ge=0, description="Longest label value.")
    native_histogram_bucket_limit: int = Field(0, ge=0, description="Accepted; native "
                                                                    "histograms are not "
                                                                    "scraped.")
    native_histogram_min_bucket_factor: float = Field(0.0, ge=0, description="Accepted.")
    keep_dropped_targets: int | None = Field(None, ge=0, description="Accepted.")
    metric_name_validation_scheme: _NAME_VALIDATION = Field("", description="utf8 or legacy.")
    metric_name_escaping_scheme: _NAME_ESCAPING = Field("", description="Accepted.")
    relabel_configs: list[RelabelConfig] = Field(default_factory=list,
                                                 description="Target relabeling.")
    metric_relabel_configs: list[RelabelConfig] = Field(default_factory=list,
                                                        description="Relabeling of every "
                                                                    "scraped sample.")
    static_configs: list[StaticConfig] = Field(default_factory=list,
                                               description="Targets listed here.")
    file_sd_configs: list[FileSDConfig] = Field(default_factory=list,
                                                description="Targets read from files.")
    kubernetes_sd_configs: list[KubernetesSDConfig] = Field(
        default_factory=list, description="Targets discovered through the Kubernetes API.")

    _protocols = field_validator("scrape_protocols")(_check_protocols)

    @model_validator(mode="before")
    @classmethod
    def _unsupported_sd(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if isinstance(key, str) and key.endswith("_sd_configs") and \
                        key not in _SUPPORTED_SD:
                    raise ValueError(f"{key} is not supported by otelgw (service discovery "
                                     f"here: {', '.join(_SUPPORTED_SD)})")
        return data

    @model_validator(mode="after")
    def _check(self) -> ScrapeConfig:
        if self.convert_classic_histograms_to_nhcb:
            raise ValueError("convert_classic_histograms_to_nhcb is not supported by otelgw")
        if not self.relabel_configs:  # a URL in targets is a common mistake
            for sc in self.static_configs:
                for target in sc.targets:
                    if "/" in target:
                        raise ValueError(f"{target!r} is not a valid hostname: static targets "
                                         f"are host:port (set scheme and metrics_path apart)")
        if self.scrape_interval is not None and self.scrape_timeout is not None and \
                self.scrape_timeout > self.scrape_interval:
            raise ValueError(f"scrape timeout {format_prom_duration(self.scrape_timeout)} is "
                             f"greater than scrape interval "
                             f"{format_prom_duration(self.scrape_interval)} for scrape config "
                             f"with job name {self.job_name!r}")
        return self

    def resolved(self, g: GlobalConfig) -> ScrapeConfig:
        """This config with every unset setting taken from `global`, as Prometheus does."""
        interval = self.scrape_interval or g.scrape_interval
        timeout = self.scrape_timeout
        if timeout is None:
            timeout = interval if g.scrape_timeout > interval else g.scrape_timeout
        if timeout > interval:
            raise ValueError(f"scrape timeout {format_prom_duration(timeout)} is greater than "
                             f"scrape interval {format_prom_duration(interval)} for scrape "
                             f"config with job name {self.job_name!r}")
        if (self.metric_name_validation_scheme or g.metric_name_validation_scheme) == "legacy" \
                and (self.metric_name_escaping_scheme or g.metric_name_escaping_scheme) \
                == "allow-utf-8":
            raise ValueError("utf8 metric names requested but validation scheme is not set to "
                             "UTF8")

        def pick(name: str) -> Any:
            value = getattr(self, name)
            return getattr(g, name) if value is None or value == "" else value

        limits = ("body_size_limit", "sample_limit", "target_limit", "label_limit",
                  "label_name_length_limit", "label_value_length_limit",
                  "keep_dropped_targets", "scrape_failure_log_file", "scrape_protocols",
                  "metric_name_validation_scheme", "metric_name_escaping_scheme")
        return self.model_copy(update={"scrape_interval": interval, "scrape_timeout": timeout,
                                       **{n: pick(n) for n in limits}})


class PrometheusConfig(PromConfig):
    """The `config:` section: a Prometheus configuration (its scrape part)."""

    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global",
                                  description="Defaults for every scrape config.")
    scrape_config_files: list[str] = Field(default_factory=list,
                                           description="Files (globs) with more scrape_configs.")
    scrape_configs: list[ScrapeConfig] = Field(default_factory=list,
                                               description="The scrape jobs.")
    runtime: dict[str, Any] = Field(default_factory=dict, description="Accepted (ignored).")
    storage: dict[str, Any] = Field(default_factory=dict, description="Accepted (ignored).")
    tracing: dict[str, Any] = Field(default_factory=dict, description="Accepted (ignored).")
    otlp: dict[str, Any] = Field(default_factory=dict, description="Accepted (ignored).")
    alerting: dict[str, Any] = Field(default_factory=dict,
                                     description="Not supported when it lists alertmanagers or "
                                                 "relabel configs.")
    rule_files: list[str] = Field(default_factory=list, description="Not supported.")
    remote_write: list[Any] = Field(default_factory=list, description="Not supported.")
    remote_read: list[Any] = Field(default_factory=list, description="Not supported.")

    @field_validator("global_", mode="before")
    @classmethod
    def _empty_global(cls, value: Any) -> Any:
        return {} if value is None else value  # `global:` with nothing under it

    @field_validator("scrape_configs")
    @classmethod
    def _resolve(cls, value: list[ScrapeConfig], info: ValidationInfo) -> list[ScrapeConfig]:
        g = info.data.get("global_")
        if g is None:  # global itself is invalid; its error is reported
            return value
        files = info.data.get("scrape_config_files") or []
        value = [*value, *_load_scrape_config_files(files)]
        seen: dict[str, int] = {}
        out = []
        for i, sc in enumerate(value):
            if sc.job_name in seen:
                raise ValueError(f"found multiple scrape configs with job name {sc.job_name!r} "
                                 f"(scrape_configs[{seen[sc.job_name]}] and [{i}])")
            seen[sc.job_name] = i
            try:
                out.append(sc.resolved(g))
            except ValueError as exc:
                raise ValueError(f"scrape_configs[{i}]: {exc}") from None
        return out

    @model_validator(mode="after")
    def _unsupported(self) -> PrometheusConfig:
        found = [name for name, value in (("remote_write", self.remote_write),
                                          ("remote_read", self.remote_read),
                                          ("rule_files", self.rule_files),
                                          ("alerting.alertmanagers",
                                           self.alerting.get("alertmanagers")),
                                          ("alerting.alert_relabel_configs",
                                           self.alerting.get("alert_relabel_configs")))
                 if value]
        if found:
            raise ValueError(f"unsupported features: {', '.join(sorted(found))} (the prometheus "
                             f"receiver only scrapes, as in the Collector)")
        return self


def _load_scrape_config_files(patterns: list[str]) -> list[ScrapeConfig]:
    out = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            try:
                with open(path, encoding="utf-8") as f:
                    doc = yaml.safe_load(f) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ValueError(f"scrape_config_files: cannot read {path}: {exc}") from None
            if not isinstance(doc, dict) or set(doc) - {"scrape_configs"}:
                raise ValueError(f"scrape_config_files: {path} must hold only scrape_configs")
            for j, item in enumerate(doc.get("scrape_configs") or []):
                try:
                    out.append(ScrapeConfig.model_validate(item))
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(p) for p in first["loc"])
                    raise ValueError(f"scrape_config_files: {path}: scrape_configs[{j}]"
                                     f"{'.' + where if where else ''}: {first['msg']}") from None
    return out


class TargetAllocatorConfig(PromConfig):
    """Present only to say clearly that it is not supported."""

    model_config = PromConfig.model_config | {"extra": "allow"}


class PrometheusReceiverConfig(ComponentConfig):
    config: PrometheusConfig = Field(default_factory=PrometheusConfig,
                                     description="A Prometheus configuration: global and "
                                                 "scrape_configs. Write $$ for a literal $.")
    trim_metric_suffixes: bool = Field(False, description="Trim unit and _total suffixes from "
                                                          "metric names (experimental upstream).")
    use_start_time_metric: bool = Field(False, description="Take the start time of cumulative "
                                                           "points from the target's "
                                                           "process_start_time_seconds.")
    start_time_metric_regex: str = Field("", description="Regex of the start time metric's name "
                                                         "(default: process_start_time_seconds).")
    report_extra_scrape_metrics: bool = Field(False, description="Also report "
                                                                 "scrape_timeout_seconds, "
                                                                 "scrape_sample_limit and "
                                                                 "scrape_body_size_bytes.")
    target_allocator: TargetAllocatorConfig | None = Field(None, description="Not supported by "
                                                                             "otelgw.")
    api_server: dict[str, Any] | None = Field(None, description="Not supported (must be absent "
                                                                "or disabled).")

    @field_validator("start_time_metric_regex")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> PrometheusReceiverConfig:
        if self.target_allocator is not None:
            raise ValueError("target_allocator is not supported by otelgw: list the jobs under "
                             "config.scrape_configs (kubernetes_sd_configs discovers pods and "
                             "services without the OpenTelemetry Operator)")
        if self.api_server and self.api_server.get("enabled"):
            raise ValueError("api_server (the Prometheus API for debugging) is not supported by "
                             "otelgw")
        return self
