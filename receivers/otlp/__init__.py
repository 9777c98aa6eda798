"""`otlp` receiver: OTLP/gRPC on 4317 and OTLP/HTTP (protobuf and JSON) on 4318."""
