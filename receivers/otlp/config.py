"""`receivers.otlp` configuration, with the Collector's names and defaults.

Each listener takes the Collector's `tls` (mTLS with `client_ca_file`) and `auth` (an
authenticator extension such as `bearertokenauth`), and otelgw's `max_concurrent_requests`.
Credentials and the concurrency limit are checked before a request body is read.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from gateway.config.types import ComponentConfig
from receivers.otlp.limits import OtlpLimits
from receivers.otlp.auth import AuthConfig, HttpAuthConfig
from receivers.otlp.tls_config import TlsServerConfig, check_grpc

# Requests one listener serves at once before it refuses more (retryably); an otelgw setting.
DEFAULT_MAX_CONCURRENT_REQUESTS = 1024
_CONCURRENCY_DOC = ("Requests served at once on this listener; more are refused before their "
                    "body is read, with HTTP 429 + Retry-After / gRPC RESOURCE_EXHAUSTED + "
                    "RetryInfo (0: no limit). An otelgw setting.")


class CorsConfig(ComponentConfig):
    allowed_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS.")
    allowed_headers: list[str] = Field(default_factory=list, description="Extra allowed headers.")
    max_age: int = Field(0, ge=0, description="Preflight cache time in seconds.")


class GrpcConfig(ComponentConfig):
    endpoint: str = Field("localhost:4317", description="host:port to listen on.")
    transport: str = Field("tcp", pattern="^tcp$", description="Only tcp is supported.")
    max_recv_msg_size_mib: int = Field(4, ge=1, description="Largest request message, MiB.")
    max_concurrent_streams: int = Field(0, ge=0, description="Per connection (0: no limit).")
    read_buffer_size: int = Field(524288, ge=0, description="Accepted for compatibility.")
    write_buffer_size: int = Field(0, ge=0, description="Accepted for compatibility.")
    include_metadata: bool = Field(False, description="Pass request metadata to processors.")
    tls: TlsServerConfig | None = Field(None, description="Serve TLS (mTLS with client_ca_file).")
    auth: AuthConfig | None = Field(None, description="Authenticate every request with this "
                                                      "authenticator extension.")
    max_concurrent_requests: int = Field(DEFAULT_MAX_CONCURRENT_REQUESTS, ge=0,
                                         description=_CONCURRENCY_DOC)

    @model_validator(mode="after")
    def _grpc_tls(self) -> "GrpcConfig":
        if self.tls is not None:
            try:
                check_grpc(self.tls)
            except ValueError as exc:
                raise ValueError(f"tls: {exc}") from None
        return self


class HttpConfig(ComponentConfig):
    endpoint: str = Field("localhost:4318", description="host:port to listen on.")
    traces_url_path: str = Field("/v1/traces", description="Path of trace exports.")
    metrics_url_path: str = Field("/v1/metrics", description="Path of metric exports.")
    logs_url_path: str = Field("/v1/logs", description="Path of log exports.")
    max_request_body_size: int = Field(20 * 1024 * 1024, ge=1,
                                       description="Largest body, compressed and decompressed.")
    include_metadata: bool = Field(False, description="Pass request headers to processors.")
    cors: CorsConfig | None = Field(None, description="CORS for browser clients.")
    tls: TlsServerConfig | None = Field(None, description="Serve TLS (mTLS with client_ca_file).")
    auth: HttpAuthConfig | None = Field(None, description="Authenticate every request with this "
                                                          "authenticator extension.")
    max_concurrent_requests: int = Field(DEFAULT_MAX_CONCURRENT_REQUESTS, ge=0,
                                         description=_CONCURRENCY_DOC)


class Protocols(ComponentConfig):
    grpc: GrpcConfig | None = Field(None, description="OTLP/gRPC; listed (even empty) = on.")
    http: HttpConfig | None = Field(None, description="OTLP/HTTP; listed (even empty) = on.")

    @model_validator(mode="before")
    @classmethod
    def _listed_means_on(cls, data: Any) -> Any:
        # `grpc:` with no value turns the protocol on with its defaults, as in the Collector.
        if isinstance(data, dict):
            data = {k: ({} if v is None and k in ("grpc", "http") else v) for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _one(self) -> "Protocols":
        if self.grpc is None and self.http is None:
            raise ValueError("must specify at least one protocol (grpc or http)")
        return self


class OtlpConfig(ComponentConfig):
    protocols: Protocols = Field(default_factory=lambda: Protocols(grpc=GrpcConfig(),
                                                                   http=HttpConfig()))
    limits: OtlpLimits = Field(default_factory=OtlpLimits,
                               description="Bounds on one request beyond its size in bytes: "
                                           "items, attribute value length. An otelgw setting.")
