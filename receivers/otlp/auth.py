"""What the OTLP listeners check before they read a request body: the client's credentials
(`auth`, through an authenticator extension) and the listener's concurrency limit.

An authenticator is any started extension with `authenticate(headers)`, which returns when the
request may go on and raises PermissionError(reason) when it may not (see
extensions/bearertokenauth). Unauthenticated requests are answered 401 / UNAUTHENTICATED; a
listener over `max_concurrent_requests` answers 429 with Retry-After / RESOURCE_EXHAUSTED with
a RetryInfo, the retryable refusals of the OTLP specification.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter
from pydantic import Field, field_validator

from gateway.component import ComponentID, Host
from gateway.config.types import ComponentConfig
from gateway.errors import ConfigError

RETRY_AFTER = 1  # seconds a client over the concurrency limit is asked to wait


class AuthConfig(ComponentConfig):
    """The Collector's configauth.Config."""

    authenticator: str = Field(..., description="Id of the authenticator extension, e.g. "
                                                "bearertokenauth; it must be listed in "
                                                "service::extensions.")

    @field_validator("authenticator")
    @classmethod
    def _id(cls, value: str) -> str:
        ComponentID.parse(value)
        return value


class HttpAuthConfig(AuthConfig):
    """The Collector's confighttp.AuthConfig."""

    request_params: list[str] = Field(default_factory=list, description=(
        "Query parameters handed to the authenticator as if they were headers (a parameter wins "
        "over a header of the same name)."))


def resolve(host: Host, cfg: AuthConfig, where: str) -> Any:
    """The started extension `cfg` names, which must be a server authenticator."""
    ext = host.extensions.get(ComponentID.parse(cfg.authenticator))
    if ext is None:
        raise ConfigError([f"{where}::authenticator: failed to resolve authenticator "
                           f"{cfg.authenticator!r}: it is not among the extensions of the service "
                           f"(list it in service::extensions)"])
    if not callable(getattr(ext, "authenticate", None)):
        raise ConfigError([f"{where}::authenticator: {cfg.authenticator!r} is not a server "
                           f"authenticator"])
    return ext


def describe(tls: Any, auth: AuthConfig | None) -> str:
    """How a listener is secured, for its start-up log line."""
    text = "plaintext" if tls is None else ("mTLS" if tls.client_ca_file else "TLS")
    return text + (f", auth: {auth.authenticator}" if auth is not None else ", no auth")


def denied_counter(telemetry: Any) -> Any:
    """otelgw_receiver_requests_denied_total{receiver, transport, reason}: requests refused
    before their body was read (reason: unauthenticated, concurrency_limit)."""
    return telemetry.metric(Counter, "otelgw_receiver_requests_denied",
                            "Requests refused before their body was read, by reason.",
                            ["receiver", "transport", "reason"])


class InFlight:
    """Requests in progress on one listener, against its limit (0: none)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def try_acquire(self) -> bool:
        if self.limit and self.count >= self.limit:
            return False
        self.count += 1
        return True

    def release(self, *_: Any) -> None:
        self.count -= 1
