"""Factory of the `resource` processor."""

from gateway.component import Factory, Kind
from processors.resource.config import ResourceConfig
from processors.resource.processor import ResourceProcessor

factory = Factory(kind=Kind.PROCESSOR, type="resource", config_model=ResourceConfig,
                  create=ResourceProcessor, mutates_data=True)
