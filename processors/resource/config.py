"""`processors.resource` configuration: the Collector's resource processor (contrib v0.129)."""

from __future__ import annotations

from pydantic import Field, model_validator

from gateway.config.types import ComponentConfig
from processors.attributes.config import ActionConfig


class ResourceConfig(ComponentConfig):
    attributes: list[ActionConfig] = Field(
        default_factory=list, description="Actions applied in order to the attributes of each "
        "resource (as in the attributes processor; e.g. upsert k8s.cluster.name to stamp the "
        "cluster, which fills the cluster_id column).")

    @model_validator(mode="after")
    def _check(self) -> ResourceConfig:
        if not self.attributes:
            raise ValueError('missing required field "attributes"')
        return self
