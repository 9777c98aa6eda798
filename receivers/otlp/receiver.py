"""The `otlp` receiver component: one gRPC and one HTTP server shared by all its pipelines."""

from __future__ import annotations

from gateway.component import ComponentID, Consumer, Host
from gateway.signals import Signal
from receivers.otlp.auth import resolve
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
        ingest = Ingest(self.id, self.consumers, host.telemetry, self.cfg.limits)
        grpc_cfg, http_cfg = self.cfg.protocols.grpc, self.cfg.protocols.http
        where = f"receivers::{self.id}::protocols"
        # every authenticator resolves before a listener opens
        if grpc_cfg is not None:
            auth = grpc_cfg.auth and resolve(host, grpc_cfg.auth, f"{where}::grpc::auth")
            self.grpc = OtlpGrpcServer(grpc_cfg, ingest, auth)
        if http_cfg is not None:
            auth = http_cfg.auth and resolve(host, http_cfg.auth, f"{where}::http::auth")
            self.http = OtlpHttpServer(http_cfg, ingest, auth)
        try:
            if self.grpc is not None:
                await self.grpc.start()
            if self.http is not None:
                await self.http.start()
        except BaseException:
            await self.shutdown()  # a listener that did open closes again
            raise

    async def shutdown(self) -> None:
        # Stop accepting; requests in flight finish (their batches are flushed downstream).
        if self.http is not None:
            await self.http.stop()
        if self.grpc is not None:
            await self.grpc.stop()
