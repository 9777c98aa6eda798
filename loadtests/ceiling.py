"""The ceiling: the embedded engine inserting prepared columnar blocks, no gateway in front.

    python -m loadtests.ceiling --path DATA --signal traces [--seconds 10] [--rows 8192]

Reads up to `--rows` rows that a gateway stored under DATA (so the ceiling inserts exactly the
rows the gateway produced), keeps them as one ClickHouse Native block per table, creates the same
schema in a scratch database of that store, and inserts the blocks over and over from two
threads (the gateway's default insert concurrency on two cores) for `--seconds`. Prints one JSON
line: rows/s and CPU seconds per 100k rows. The gateway/ceiling ratio in loadtests.bench says how
much of the engine's speed the gateway leaves on the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import threading
import time

import psutil

from exporters.clickhouse.engines.embedded import EmbeddedEngine
from exporters.clickhouse.ingest import EMBEDDED_INSERT_SETTINGS, schema_ddl
from exporters.clickhouse.schema import SchemaOptions

TABLES = {"traces": ["otel_traces"], "logs": ["otel_logs"],
          "metrics": ["otel_metrics_gauge", "otel_metrics_sum", "otel_metrics_histogram"]}
SCRATCH = "otelgw_ceiling"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", required=True)
    parser.add_argument("--signal", choices=sorted(TABLES), required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    # the gateway's engine settings, so that the two insert alike
    engine = EmbeddedEngine(args.path, insert_connections=args.threads,
                            insert_settings=EMBEDDED_INSERT_SETTINGS)
    for stmt in schema_ddl(dataclasses.replace(SchemaOptions(), database=SCRATCH)):
        engine.command(stmt)
    tables = TABLES[args.signal]
    per_table = max(1, args.rows // len(tables))
    blocks = []
    for table in tables:
        n = int(engine.query(f"SELECT count() FROM (SELECT 1 FROM default.{table} "
                             f"LIMIT {per_table})", "TSV"))
        if n:
            blocks.append((f"INSERT INTO {SCRATCH}.{table}", n, engine.query(
                f"SELECT * FROM default.{table} LIMIT {per_table}", "Native")))
    if not blocks:
        raise SystemExit(f"no {args.signal} rows under {args.path} to build the block from")
    inserted = 0
    lock = threading.Lock()
    deadline = time.monotonic() + args.seconds

    def worker(offset: int) -> None:
        nonlocal inserted
        i = offset
        while time.monotonic() < deadline:
            sql, n, block = blocks[i % len(blocks)]
            # the tables deduplicate by the data's hash (non_replicated_deduplication_window):
            # without this, every block after the first would be written and then dropped
            engine.insert(sql, block, "Native", {"deduplicate_insert": "disable"})
            with lock:
                inserted += n
            i += 1

    proc = psutil.Process()
    cpu0 = sum(proc.cpu_times()[:2])
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    stored = sum(int(engine.query(f"SELECT count() FROM {SCRATCH}.{table}", "TSV"))
                 for table in tables)
    engine.command(f"DROP DATABASE IF EXISTS {SCRATCH}")
    print(json.dumps({"signal": args.signal, "block_rows": sum(b[1] for b in blocks),
                      "block_bytes": sum(len(b[2]) for b in blocks), "rows": inserted,
                      "stored_rows": stored,
                      "elapsed_s": elapsed, "rows_per_s": inserted / elapsed,
                      "cpu_s_per_100k": cpu * 1e5 / inserted if inserted else None}))


if __name__ == "__main__":
    main()
