"""Factory of the `batch` processor."""

from gateway.component import Factory, Kind
from processors.batch.config import BatchConfig
from processors.batch.processor import BatchProcessor

factory = Factory(kind=Kind.PROCESSOR, type="batch", config_model=BatchConfig,
                  create=BatchProcessor)
