"""`extensions.health_check` configuration, with the Collector's names and defaults."""

from __future__ import annotations

from pydantic import Field

from gateway.config.types import ComponentConfig, Duration


class ResponseBody(ComponentConfig):
    healthy: str = Field("", description="Body returned while healthy (default: a JSON status).")
    unhealthy: str = Field("", description="Body returned while not healthy.")


class CheckCollectorPipeline(ComponentConfig):
    enabled: bool = Field(False, description="Accepted for compatibility; not implemented (the "
                                             "Collector's README advises against it too).")
    interval: Duration = Field(300.0, description="Accepted for compatibility.")
    exporter_failure_threshold: int = Field(5, ge=1, description="Accepted for compatibility.")


class HealthCheckConfig(ComponentConfig):
    endpoint: str = Field("localhost:13133", description="host:port to serve the health check "
                                                         "on (Kubernetes probes need 0.0.0.0).")
    path: str = Field("/", pattern="^/", description="Path of the health check.")
    response_body: ResponseBody | None = Field(None, description="Static bodies that replace "
                                                                 "the default JSON status.")
    check_collector_pipeline: CheckCollectorPipeline = Field(
        default_factory=CheckCollectorPipeline, description="Accepted for compatibility.")
