"""`otelgw run --workers N`: N processes share the push receivers' ports, so a many-core node is
used by a gateway whose Python side runs on one core per process.

Shape:

- The owner (worker 0, the process started by the user) runs the whole configuration: pull
  receivers (prometheus scraping, Kubernetes discovery), every exporter (the embedded store can
  only be opened by one process), the prometheus exporter's :8889, health_check and the
  self-telemetry endpoint :8888. It starts N-1 workers (`otelgw run` again with hidden flags).
- A worker runs only the push receivers (otlp, fluentforward), bound with SO_REUSEPORT to the same
  ports (the owner's listeners set it too once N > 1, so the kernel spreads connections over all
  N), and their pipelines' processors (memory_limiter, k8sattributes, batch, …). Each pipeline
  ends in a handover exporter (handover.py): the processed batch goes to the owner over a Unix
  socket, the owner feeds it to that pipeline's exporters, skipping processors already run, and
  answers; the worker answers its client only then. An acknowledgement still means "durable in
  the owner's write-ahead queue", and a refusal (queue full, store down) reaches the client as
  429 / RESOURCE_EXHAUSTED or 503 / UNAVAILABLE, exactly as from the owner.
- With a ClickHouse server (`endpoint:` set) a worker runs that clickhouse exporter itself, with
  a sending queue of its own (`<queue directory>-w<K>`); only the other exporters (prometheus)
  go through the owner. A queue left behind by a worker that no longer exists (a restart with
  fewer workers) is adopted by the owner, which drains it into ClickHouse.

Why processes and a socket rather than threads or a shared queue: CPython's receiver work
(HTTP/2 and HTTP parsing, upb decoding, processors) holds the GIL; only processes use the
other cores. Handing over the already batched, serialized request costs one copy per batch
(not per span), and keeps the owner's write-ahead queue the one place data becomes durable.

k8sattributes in every worker means N informers (N watches on the API server, N copies of the
pod cache); for the handful of workers one node has this is acceptable, and it keeps the pod
lookup next to the peer address it needs.

Lifecycle: the owner says "otelgw is running" (and health_check reports ready) once every worker
listens. SIGTERM to the owner drains the workers first (they stop accepting and finish their
handovers), then the owner. A worker that dies is restarted with a backoff, and logged; a worker
whose owner dies exits (PR_SET_PDEATHSIG, and the handover socket closing).

Self-telemetry: each worker sends a snapshot of its metrics over the same socket every second
(and a last one when it stops); the owner's :8888 sums them with its own, so
otelcol_receiver_accepted_spans_total is the gateway's total. Counters of a worker that exited
are kept (they never go down); its gauges are dropped.
"""

from __future__ import annotations

_owner: int | None = None  # the owner's pid, once this process is one of several


def share_ports(owner: int) -> None:
    """From now on this process is one of the gateway's processes, started by `owner`: its push
    listeners bind with SO_REUSEPORT (set before they start)."""
    global _owner
    _owner = owner


def shared_ports() -> bool:
    """Whether listeners share their port with the gateway's other processes (--workers > 1)."""
    return _owner is not None


def owner_pid() -> int | None:
    """The pid of the process that started the gateway's workers; None with one process."""
    return _owner
