"""Factory of the `memory_limiter` processor."""

from gateway.component import Factory, Kind
from processors.memory_limiter.config import MemoryLimiterConfig
from processors.memory_limiter.processor import MemoryLimiterProcessor

factory = Factory(kind=Kind.PROCESSOR, type="memory_limiter", config_model=MemoryLimiterConfig,
                  create=MemoryLimiterProcessor, mutates_data=False)
