"""Factory of the `health_check` extension."""

from extensions.health_check.config import HealthCheckConfig
from extensions.health_check.extension import HealthCheck
from gateway.component import Factory, Kind

factory = Factory(kind=Kind.EXTENSION, type="health_check", config_model=HealthCheckConfig,
                  create=HealthCheck)
