"""Prometheus `http_config`: how a scrape (or a discovery) authenticates and talks TLS.

Field names and defaults are Prometheus's (common/config/http_config.go), so scrape configs copied
from a prometheus.yml load unchanged.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from gateway.config.types import ComponentConfig


class PromConfig(ComponentConfig):
    """Prometheus configs reject unknown keys too, and are written in snake_case."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BasicAuth(PromConfig):
    username: str = Field("", description="User name.")
    username_file: str = Field("", description="File holding the user name.")
    password: str = Field("", description="Password (never logged).")
    password_file: str = Field("", description="File holding the password.")


class Authorization(PromConfig):
    type: str = Field("Bearer", description="Authorization scheme.")
    credentials: str = Field("", description="Credentials (never logged).")
    credentials_file: str = Field("", description="File holding the credentials, read per request.")


class TLSConfig(PromConfig):
    ca_file: str = Field("", description="CA certificate(s) to verify the server with.")
    ca: str = Field("", description="CA certificate(s), inline PEM.")
    cert_file: str = Field("", description="Client certificate for mTLS.")
    cert: str = Field("", description="Client certificate, inline PEM.")
    key_file: str = Field("", description="Client key for mTLS.")
    key: str = Field("", description="Client key, inline PEM (never logged).")
    server_name: str = Field("", description="Expected server name (SNI and verification).")
    insecure_skip_verify: bool = Field(False, description="Do not verify the server certificate.")
    min_version: str = Field("", description="Lowest TLS version: TLS10, TLS11, TLS12, TLS13.")
    max_version: str = Field("", description="Highest TLS version.")


class HTTPClientConfig(PromConfig):
    basic_auth: BasicAuth | None = Field(None, description="HTTP basic authentication.")
    authorization: Authorization | None = Field(None, description="Authorization header.")
    bearer_token: str = Field("", description="Deprecated form of authorization.credentials.")
    bearer_token_file: str = Field("", description="Deprecated form of "
                                                   "authorization.credentials_file.")
    tls_config: TLSConfig = Field(default_factory=TLSConfig, description="TLS settings.")
    proxy_url: str = Field("", description="HTTP proxy to go through.")
    follow_redirects: bool = Field(True, description="Follow HTTP 3xx redirects.")
    enable_http2: bool = Field(True, description="Accepted for compatibility (HTTP/1.1 is used).")

    @model_validator(mode="after")
    def _one_auth(self) -> HTTPClientConfig:
        given = [n for n, v in (("basic_auth", self.basic_auth),
                                ("authorization", self.authorization),
                                ("bearer_token", self.bearer_token),
                                ("bearer_token_file", self.bearer_token_file)) if v]
        if len(given) > 1:
            raise ValueError(f"at most one of basic_auth, authorization, bearer_token, "
                             f"bearer_token_file may be configured (got {', '.join(given)})")
        return self
