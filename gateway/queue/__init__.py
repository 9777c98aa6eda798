"""Sending queues for exporters: a write-ahead log on disk (wal), the queue that exports from it
with retries and a dead-letter directory (durable), the merging of queued batches into larger
exports (batcher), and their Collector-compatible settings
(config: `sending_queue`, `retry_on_failure`)."""
