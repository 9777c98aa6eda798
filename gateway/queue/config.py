"""`sending_queue` and `retry_on_failure`: the Collector exporterhelper's options (v0.129, with
its `sending_queue::batch`), plus what a queue on disk needs (`directory`, `fsync`,
`drain_timeout`).

An exporter embeds both models in its config; a subclass may change a default (the ClickHouse
exporter runs fewer consumers than the Collector's 10, as its inserts are large).
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import Field, model_validator

from gateway.config.types import ComponentConfig, Duration


class Fsync(enum.Enum):
    ALWAYS = "always"
    BATCH = "batch"
    NEVER = "never"


class BatchSettings(ComponentConfig):
    """`sending_queue::batch`: consumers merge queued requests into larger exports. Requests are
    acknowledged as they enter the queue, so batching here adds no latency for clients (the
    batch processor holds them until their batch is exported)."""

    flush_timeout: Duration = Field(0.2, gt=0, description=(
        "Longest a queued request waits for others to share its export with."))
    min_size: int = Field(8192, ge=0, description=(
        "An export goes out as soon as it holds this much, in `sizer` units."))
    max_size: int = Field(0, ge=0, description=(
        "Upper bound of an export, in `sizer` units (0: none). otelgw: while every consumer "
        "is busy, exports waiting for one are merged further, up to this size (not with 0), "
        "so exports grow with the load. Requests are merged, never split: a single request "
        "larger than this is exported alone (split large requests with the batch processor's "
        "send_batch_max_size)."))
    sizer: Literal["items", "bytes"] = Field("items", description=(
        "What `min_size` and `max_size` count: `items` (spans, data points, log records) or "
        "`bytes` (of the serialized OTLP requests)."))

    @model_validator(mode="after")
    def _check(self) -> BatchSettings:
        if self.max_size and self.max_size < self.min_size:
            raise ValueError(f"max_size ({self.max_size}) must be 0 or at least min_size "
                             f"({self.min_size})")
        return self


class QueueSettings(ComponentConfig):
    enabled: bool = Field(True, description=(
        "Queue batches on disk (a write-ahead log) and acknowledge them once they are in it; "
        "consumers insert them and retry. false: no queue, an acknowledgement waits for the "
        "insert (and its retries)."))
    num_consumers: int = Field(10, ge=1, le=64, description="Concurrent exports from the queue.")
    queue_size: int = Field(1000, ge=1, description=(
        "Capacity of the queue, in `sizer` units. At the capacity a new batch is refused with a "
        "retryable error (HTTP 429 / gRPC RESOURCE_EXHAUSTED with a retry delay) unless "
        "`block_on_overflow`; a single batch larger than the capacity is taken while the queue "
        "is empty."))
    sizer: Literal["requests", "items", "bytes"] = Field("requests", description=(
        "What `queue_size` counts: `requests` (batches, as the batch processor hands them on), "
        "`items` (spans, data points, log records) or `bytes` (of the serialized OTLP requests)."))
    block_on_overflow: bool = Field(False, description=(
        "At the capacity, wait for room instead of refusing (the client waits). `blocking`, "
        "its name before v0.123, is read too."))
    wait_for_result: bool = Field(False, description=(
        "Accepted for compatibility; must be false with the queue on disk, as in the Collector "
        "with `storage`. For acknowledgements after the store has the data, set `enabled: "
        "false`."))
    storage: str = Field("", description=(
        "Id of a storage extension (`file_storage` or `file_storage/<name>`, listed in "
        "service::extensions) in whose directory the queue lives (subdirectory "
        "`exporter_<type>[_<name>]`), as in the Collector; empty: the queue lives in "
        "`directory`."))
    directory: str = Field("", description=(
        "otelgw: the queue's directory when `storage` is empty; empty: a default chosen by the "
        "exporter (the ClickHouse exporter: `<path>/queue/<exporter id>`). Batches refused as "
        "permanently invalid by the destination go to its `dead_letter` subdirectory."))
    dead_letter_limit_mib: int = Field(1024, ge=0, description=(
        "otelgw: the most the `dead_letter` subdirectory holds, in MiB; beyond it its oldest "
        "batches are deleted (logged, counted in "
        "otelgw_exporter_dead_letters_deleted_batches_total), so refused data cannot fill the "
        "disk the queue needs. 0: no limit."))
    fsync: Fsync = Field(Fsync.BATCH, description=(
        "otelgw: when a batch counts as written. `batch`: after an fsync of the log that covers "
        "it; batches that arrive while one fsync runs share the next (group commit), so it "
        "survives a crash of the machine. `always`: one fsync per batch, never shared (slowest; "
        "the same guarantee). `never`: once the operating system has the write; it survives a "
        "crash of the gateway, not of the machine. Except with `never`, a batch inserted into "
        "the embedded store leaves the log only after a sync of the store (once a second)."))
    drain_timeout: Duration = Field(15.0, ge=0, description=(
        "otelgw: on shutdown, how long consumers go on exporting what is queued; what is left "
        "stays on disk and is sent after the next start."))
    batch: BatchSettings | None = Field(None, description=(
        "Merge consecutive queued requests of a signal into one export (absent: each request "
        "is exported alone; present, even empty, turns merging on with the defaults below). "
        "A merged export keeps one deduplication identity across retries and restarts. "
        "Ignored when `enabled` is false."))

    @model_validator(mode="before")
    @classmethod
    def _blocking(cls, data: Any) -> Any:
        # `blocking` was renamed `block_on_overflow` in v0.123 and is still read in v0.129
        if isinstance(data, dict) and "blocking" in data:
            data = dict(data)
            blocking = data.pop("blocking")
            if "block_on_overflow" in data and data["block_on_overflow"] != blocking:
                raise ValueError("blocking (deprecated) and block_on_overflow disagree: "
                                 "set block_on_overflow only")
            data["block_on_overflow"] = blocking
        if isinstance(data, dict) and "batch" in data and data["batch"] is None:
            # `batch:` with nothing under it turns batching on with its defaults
            data = {**data, "batch": {}}
        return data

    @model_validator(mode="after")
    def _check(self) -> QueueSettings:
        if self.enabled and self.wait_for_result:
            raise ValueError("wait_for_result is not supported with the queue on disk (as "
                             "with `storage` in the Collector); set enabled: false to "
                             "acknowledge only what the destination stored")
        if self.storage and self.directory:
            raise ValueError("set either storage (a storage extension) or directory, not both")
        b = self.batch
        if self.enabled and b is not None and b.sizer == self.sizer \
                and b.min_size > self.queue_size:
            raise ValueError(f"batch::min_size ({b.min_size}) must be at most queue_size "
                             f"({self.queue_size}): a batch that size could never form")
        return self


class RetrySettings(ComponentConfig):
    enabled: bool = Field(True, description=(
        "Retry exports that failed for a transient reason. With the queue on, a batch whose "
        "export failed and may not be retried goes to the dead-letter directory."))
    initial_interval: Duration = Field(5.0, ge=0, description="Wait before the first retry.")
    randomization_factor: float = Field(0.5, ge=0, le=1, description=(
        "Jitter: each wait is drawn from interval × [1 - factor, 1 + factor]."))
    multiplier: float = Field(1.5, ge=1, description="Growth of the wait between retries.")
    max_interval: Duration = Field(30.0, ge=0, description="Longest wait between retries.")
    max_elapsed_time: Duration = Field(300.0, ge=0, description=(
        "Give up on a batch after trying this long (0: never). Without the queue the client "
        "then gets a retryable error. With the queue a batch is kept and retried while the "
        "destination fails for every batch (an outage); it goes to the dead-letter directory "
        "when it failed this long while other batches were exported (it is the problem)."))
