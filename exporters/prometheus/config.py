"""`exporters.prometheus` configuration: the options of the contrib prometheus exporter v0.129.0
(its confighttp server settings reduced to `endpoint` and `tls`)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.types import ComponentConfig, Duration
from gateway.endpoints import split_host_port

_TLS_VERSIONS = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1,
                 "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
TlsVersion = Literal["1.0", "1.1", "1.2", "1.3"]


class ServerTLS(ComponentConfig):
    cert_file: str = Field(description="PEM certificate (chain) the endpoint presents.")
    key_file: str = Field(description="PEM private key of cert_file.")
    client_ca_file: str = Field("", description="CA bundle that client certificates must chain "
                                                "to; set, it makes client certificates required.")
    min_version: TlsVersion = Field("1.2", description="Lowest TLS version accepted.")
    max_version: TlsVersion | Literal[""] = Field("", description="Highest TLS version "
                                                                  "accepted (empty: newest).")

    @model_validator(mode="after")
    def _files(self) -> ServerTLS:
        for name in ("cert_file", "key_file", "client_ca_file"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ValueError(f"{name} {path!r} does not exist or is not a file")
        if self.max_version and float(self.max_version) < float(self.min_version):
            raise ValueError("max_version is lower than min_version")
        return self

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = _TLS_VERSIONS[self.min_version]
        if self.max_version:
            ctx.maximum_version = _TLS_VERSIONS[self.max_version]
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            ctx.load_verify_locations(self.client_ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


class ResourceToTelemetry(ComponentConfig):
    enabled: bool = Field(False, description="Copy every resource attribute onto every series "
                                             "as a label (they stay in target_info too).")


class PrometheusExporterConfig(ComponentConfig):
    endpoint: str = Field(description="host:port where /metrics is served (required, no "
                                      "default), e.g. 0.0.0.0:8889.")
    tls: ServerTLS | None = Field(None, description="Serve https with this certificate.")
    namespace: str = Field("", description="Prefix of every metric name (`<namespace>_`).")
    const_labels: dict[str, str] = Field(default_factory=dict,
                                         description="Labels added to every exported series.")
    send_timestamps: bool = Field(False, description="Write each sample's timestamp.")
    metric_expiration: Duration = Field(300.0, ge=0, description="How long a series without "
                                                                 "updates stays exposed.")
    resource_to_telemetry_conversion: ResourceToTelemetry = Field(
        default_factory=ResourceToTelemetry, description="Resource attributes as labels.")
    enable_open_metrics: bool = Field(False, description="Answer scrapers that accept "
                                                         "OpenMetrics with it (exemplars).")
    add_metric_suffixes: bool = Field(True, description="Add unit and type suffixes "
                                                        "(_seconds, _total, _ratio, …).")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("endpoint is required: the host:port to serve /metrics on, "
                             "e.g. 0.0.0.0:8889")
        try:
            _, port = split_host_port(value)
        except ValueError:
            port = -1
        if ":" not in value or not 0 <= port <= 65535:
            raise ValueError(f"invalid endpoint {value!r}: expected host:port, "
                             "e.g. 0.0.0.0:8889")
        return value

    @field_validator("const_labels")
    @classmethod
    def _const_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not name or name.startswith("__"):
                raise ValueError(f"const_labels: {name!r} is not a valid label name "
                                 "(names starting with __ are reserved)")
        return value
