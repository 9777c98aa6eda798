"""Factory of the `attributes` processor."""

from gateway.component import Factory, Kind
from processors.attributes.config import AttributesConfig
from processors.attributes.processor import AttributesProcessor

factory = Factory(kind=Kind.PROCESSOR, type="attributes", config_model=AttributesConfig,
                  create=AttributesProcessor, mutates_data=True)
