"""Locust users for otelgw: OTLP/HTTP (protobuf, JSON, gzip) and OTLP/gRPC.

    locust -f loadtests/locustfile.py --headless -u 8 -r 4 -t 30s \
        --host http://127.0.0.1:4318 --grpc-target 127.0.0.1:4317 \
        --csv loadtests/results/locust --html loadtests/results/locust.html \
        [--otlp-batch 500] [--otlp-rate 2] [--otlp-signals traces,metrics,logs] \
        [OtlpHttpProtobufUser OtlpHttpJsonUser OtlpGrpcUser]

Every user sends realistic requests from loadtests/payloads.py (seeded, pre-serialized before the
run so the load generator measures the gateway, not protobuf encoding). `--otlp-rate` is requests
per second per user (0: as fast as possible). A 2xx with a partial_success is still a success in
OTLP terms; anything else counts as a failure with the status and the gateway's message.
"""

from __future__ import annotations

import gzip
import itertools
import time
from typing import Any

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import FastHttpUser, User, constant, constant_throughput, events, task
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from loadtests import payloads

grpc_gevent.init_gevent()  # grpcio's blocking calls must yield to locust's gevent loop

MAKERS = {"traces": payloads.traces, "metrics": payloads.metrics, "logs": payloads.logs}
STUBS = {"traces": (trace_service_pb2_grpc.TraceServiceStub, "ExportTraceServiceRequest"),
         "metrics": (metrics_service_pb2_grpc.MetricsServiceStub, "ExportMetricsServiceRequest"),
         "logs": (logs_service_pb2_grpc.LogsServiceStub, "ExportLogsServiceRequest")}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--otlp-batch", type=int, default=500, help="items per request")
    parser.add_argument("--otlp-rate", type=float, default=0,
                        help="requests/s per user (0: unthrottled)")
    parser.add_argument("--otlp-signals", default="traces,metrics,logs")
    parser.add_argument("--otlp-gzip", action="store_true", help="gzip the HTTP bodies")
    parser.add_argument("--otlp-cluster", default="locust",
                        help="k8s.cluster.name of the data (→ cluster_id), to find the rows")
    parser.add_argument("--grpc-target", default="127.0.0.1:4317", help="OTLP/gRPC host:port")


_cache: dict[tuple[str, int, str], list[Any]] = {}


def messages(signal: str, batch: int, cluster: str) -> list[Any]:
    key = (signal, batch, cluster)
    if key not in _cache:
        _cache[key] = [MAKERS[signal](batch, seed=s, cluster=cluster) for s in range(4)]
    return _cache[key]


def _wait_time(user: Any) -> float:
    rate = user.environment.parsed_options.otlp_rate
    return constant_throughput(rate)(user) if rate > 0 else constant(0)(user)


class _OtlpHttpUser(FastHttpUser):
    abstract = True
    wait_time = _wait_time
    content_type = "application/x-protobuf"
    encoding = "protobuf"

    def encode(self, message: Any) -> bytes:
        raise NotImplementedError

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.headers = {"Content-Type": self.content_type}
        if opts.otlp_gzip:
            self.headers["Content-Encoding"] = "gzip"
        self.bodies = {}
        for signal in opts.otlp_signals.split(","):
            bodies = [self.encode(m) for m in messages(signal, opts.otlp_batch, opts.otlp_cluster)]
            if opts.otlp_gzip:
                bodies = [gzip.compress(b, 1) for b in bodies]
            self.bodies[signal] = itertools.cycle(bodies)
        self.signals = itertools.cycle(self.bodies)

    @task
    def export(self) -> None:
        signal = next(self.signals)
        name = f"{signal} {self.encoding}"
        with self.client.post(f"/v1/{signal}", data=next(self.bodies[signal]),
                              headers=self.headers, name=name, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200] if resp.text else ''}")


class OtlpHttpProtobufUser(_OtlpHttpUser):
    def encode(self, message: Any) -> bytes:
        return bytes(message.SerializeToString())


class OtlpHttpJsonUser(_OtlpHttpUser):
    content_type = "application/json"
    encoding = "json"

    def encode(self, message: Any) -> bytes:
        return payloads.to_otlp_json(message)


class OtlpGrpcUser(User):
    """OTLP/gRPC through grpcio's blocking stubs; locust's request events record each call."""

    wait_time = _wait_time

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.channel = grpc.insecure_channel(opts.grpc_target, options=[
            ("grpc.max_send_message_length", 64 * 2**20)])
        self.calls = {}
        for signal in opts.otlp_signals.split(","):
            stub_type, _ = STUBS[signal]
            self.calls[signal] = (stub_type(self.channel).Export, itertools.cycle(
                messages(signal, opts.otlp_batch, opts.otlp_cluster)))
        self.signals = itertools.cycle(self.calls)

    def on_stop(self) -> None:
        self.channel.close()

    @task
    def export(self) -> None:
        signal = next(self.signals)
        call, requests = self.calls[signal]
        request = next(requests)
        started = time.perf_counter()
        error: Exception | None = None
        try:
            call(request, timeout=30)
        except grpc.RpcError as exc:  # status and message, as the gateway sent them
            error = Exception(f"{exc.code().name}: {exc.details()}")  # type: ignore[attr-defined]
        self.environment.events.request.fire(
            request_type="grpc", name=f"{signal} grpc",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=request.ByteSize(), exception=error, context={})
