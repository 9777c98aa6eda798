"""The `fluentforward` receiver component: a forward protocol listener feeding a logs pipeline.

A read's events go into the pipeline as one ExportLogsServiceRequest, counted with the
Collector's receiver metrics (transport "tcp"). An acknowledgement means the pipeline took the
events, as for OTLP: when it refuses them (a limit, the store unavailable) no ack is sent and the
connection is closed, so a client waiting for acks sends the chunk again. Events the pipeline
rejects as permanently invalid are acknowledged and dropped with a log line, as OTLP's 400
tells a client not to retry; retrying could never store them.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Gauge

from gateway.component import ComponentID, Consumer, Host
from gateway.errors import PermanentError, RetryableError
from gateway.payload import Payload, RequestContext
from gateway.signals import Signal
from receivers.fluentforward.config import FluentForwardConfig
from receivers.fluentforward.connection import Counters
from receivers.fluentforward.convert import LogsBuilder
from receivers.fluentforward.server import ForwardServer

log = logging.getLogger(__name__)

# The Collector's own metrics for this receiver: non-monotonic sums there, hence gauges here
# (no _total suffix), with the receiver as a label.
_COUNTERS = {
    "opened": ("otelcol_fluent_opened_connections",
               "Number of connections opened to the fluentforward receiver"),
    "closed": ("otelcol_fluent_closed_connections",
               "Number of connections closed to the fluentforward receiver"),
    "events_parsed": ("otelcol_fluent_events_parsed",
                      "Number of Fluent events parsed successfully"),
    "parse_failures": ("otelcol_fluent_parse_failures",
                       "Number of times Fluent messages failed to be decoded"),
    "records_generated": ("otelcol_fluent_records_generated",
                          "Number of log records generated from Fluent forward input"),
}


class FluentForwardReceiver:
    def __init__(self, cid: ComponentID, cfg: FluentForwardConfig,
                 consumers: dict[Signal, Consumer]) -> None:
        self.id = cid
        self.cfg = cfg
        self.consumer = consumers[Signal.LOGS]
        self.server: ForwardServer | None = None
        self._accepted: Any = None
        self._refused: Any = None
        self._failed: Any = None

    async def start(self, host: Host) -> None:
        tel = host.telemetry
        name = str(self.id)
        counters = Counters(**{
            field: tel.metric(Gauge, metric, doc, ["receiver"]).labels(receiver=name)
            for field, (metric, doc) in _COUNTERS.items()})
        labels = {"receiver": name, "transport": "tcp"}
        self._accepted = tel.receiver_accepted["log_records"].labels(**labels)
        self._refused = tel.receiver_refused["log_records"].labels(**labels)
        self._failed = tel.receiver_failed["log_records"].labels(**labels)
        self.server = ForwardServer(name, self.cfg, self._deliver, counters)
        await self.server.start()

    async def shutdown(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def _deliver(self, builder: LogsBuilder, client_ip: str) -> bool:
        n = builder.count
        payload = Payload(Signal.LOGS, None, builder.request, n,
                          RequestContext(client_address=client_ip))
        try:
            await self.consumer.consume(payload)
        except RetryableError as exc:
            self._refused.inc(n)
            log.warning("receiver %s: %d log records from %s not taken, not acknowledged "
                        "(closing the connection so the client resends): %s",
                        self.id, n, client_ip or "a unix socket client", exc)
            return False
        except PermanentError as exc:
            self._failed.inc(n)
            log.warning("receiver %s: %d log records from %s dropped as invalid: %s",
                        self.id, n, client_ip or "a unix socket client", exc)
            return True
        except Exception:  # a bug downstream must not look like bad input
            self._refused.inc(n)
            log.exception("receiver %s: %d log records from %s not taken after an internal "
                          "error", self.id, n, client_ip or "a unix socket client")
            return False
        self._accepted.inc(n)
        return True
