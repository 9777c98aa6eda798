"""Errors that travel between pipeline stages.

    GatewayError
     ├── PermanentError    the data itself is wrong; retrying cannot help (HTTP 400, INVALID_ARGUMENT)
     └── RetryableError    the gateway or its store cannot take it now (HTTP 503, UNAVAILABLE)
          └── RefusedError a limit refused it (memory, queue); HTTP 429, RESOURCE_EXHAUSTED

Receivers map these to status codes as the OTLP specification says; a retry_after, when set,
becomes the Retry-After header / google.rpc.RetryInfo.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error a stage raises on purpose."""


class PermanentError(GatewayError):
    """The request cannot be stored as it is; the client must not retry it unchanged.

    `stored_in_part`: the destination may have kept part of it before refusing (a materialized
    view or a constraint failed after other views had written their rows). Sent again in pieces,
    that part would be stored twice."""

    def __init__(self, message: str, stored_in_part: bool = False) -> None:
        super().__init__(message)
        self.stored_in_part = stored_in_part


class RetryableError(GatewayError):
    """The request was not taken; the same request may succeed later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RefusedError(RetryableError):
    """A limit (memory, queue capacity) refused the request; back off and retry."""


class ConfigError(GatewayError):
    """The configuration is invalid; `problems` holds every problem, each with its path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = problems
