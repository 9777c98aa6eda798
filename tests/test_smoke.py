from loadtests.gatewayproc import Gateway


def test_ping_and_tables(gateway: Gateway) -> None:
    tables = {r["name"] for r in gateway.rows("SELECT name FROM system.tables WHERE database = 'default'")}
    assert {"otel_traces", "otel_logs", "otel_metrics_sum", "k8s_events"} <= tables
