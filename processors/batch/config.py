"""`processors.batch` configuration, with the Collector's names and defaults."""

from __future__ import annotations

from pydantic import Field, model_validator

from gateway.config.types import ComponentConfig, Duration


class BatchConfig(ComponentConfig):
    send_batch_size: int = Field(8192, ge=0, description="Items that make a batch be sent at "
                                                         "once, before the timeout.")
    send_batch_max_size: int = Field(0, ge=0, description="Upper bound of a batch; larger "
                                                          "ones are split (0: no bound).")
    timeout: Duration = Field(0.2, ge=0, description="Longest a batch waits before it is sent.")
    metadata_keys: list[str] = Field(default_factory=list,
                                     description="Accepted for compatibility; must be empty.")
    metadata_cardinality_limit: int = Field(1000, ge=0, description="Accepted for compatibility.")

    @model_validator(mode="after")
    def _check(self) -> BatchConfig:
        if self.send_batch_max_size and self.send_batch_max_size < self.send_batch_size:
            raise ValueError("send_batch_max_size must be greater or equal to send_batch_size")
        if self.metadata_keys:
            raise ValueError("metadata_keys (batching per client metadata) is not supported")
        return self
