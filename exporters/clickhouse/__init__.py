"""`clickhouse` exporter: the contrib exporter's tables, embedded chDB or a ClickHouse server."""
