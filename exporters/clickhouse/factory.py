"""Factory of the `clickhouse` exporter."""

from exporters.clickhouse.config import ClickHouseConfig
from exporters.clickhouse.exporter import ClickHouseExporter
from gateway.component import Factory, Kind

factory = Factory(kind=Kind.EXPORTER, type="clickhouse", config_model=ClickHouseConfig,
                  create=ClickHouseExporter)
