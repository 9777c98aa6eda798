"""The `otlp` receiver component: one gRPC and one HTTP server shared by all its pipelines."""

from __future__ import annotations

from gateway.component import ComponentID, Consumer, Host
from gateway.signals import Signal
from receivers.otlp.common import Ingest
from receivers.otlp.config import OtlpConfig
from receivers.otlp.grpc import OtlpGrpcServer
from receivers.otlp.http import OtlpHttpServer


class OtlpReceiver:
    def __init__(self, cid: ComponentID, cfg: OtlpConfig, consumers: dict[Signal, Consumer]):
        self.id = cid
        self.cfg = cfg
        self.consumers = consumers
        self.grpc: OtlpGrpcServer | None = None
        self.http: OtlpHttpServer | None = None

    async def start(self, host: Host) -> None:
        ingest = Ingest(self.id, self.consumers, host.telemetry)
        if self.cfg.protocols.grpc is not None:
            self.grpc = OtlpGrpcServer(self.cfg.protocols.grpc, ingest)
            await self.grpc.start()
        if self.cfg.protocols.http is not None:
            self.http = OtlpHttpServer(self.cfg.protocols.http, ingest)
            await self.http.start()

    async def shutdown(self) -> None:
        # Stop accepting; requests in flight finish (their batches are flushed downstream).
        if self.http is not None:
            await self.http.stop()
        if self.grpc is not None:
            await self.grpc.stop()
