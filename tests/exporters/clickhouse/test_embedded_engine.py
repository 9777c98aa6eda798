"""The embedded store's engine configuration (engines/embedded.py ENGINE_CONFIG)."""

from __future__ import annotations

import pytest

from exporters.clickhouse.engines.embedded import MERGE_TREE_SETTINGS, EmbeddedEngine


def _merge_tree_settings(engine: EmbeddedEngine) -> dict[str, tuple[str, str]]:
    names = ", ".join(f"'{n}'" for n in MERGE_TREE_SETTINGS)
    rows = engine.query("SELECT name, value, changed FROM system.merge_tree_settings "
                        f"WHERE name IN ({names})", "TSV").decode().splitlines()
    return {name: (value, changed) for name, value, changed in (r.split("\t") for r in rows)}


# chDB reads `&` in its connection string as the start of another parameter
@pytest.mark.parametrize("name", ["store", "a=b&c store"])
def test_the_store_runs_with_the_merge_settings_of_an_ingest_store(tmp_path, name):
    engine = EmbeddedEngine(str(tmp_path / name))
    try:
        # a second engine on the same path (two exporters) finds the engine configured the same
        other = EmbeddedEngine(str(tmp_path / name))
        try:
            for e in (engine, other):
                assert _merge_tree_settings(e) == {
                    key: (str(value), "1") for key, value in MERGE_TREE_SETTINGS.items()}
        finally:
            other.close()
        # the tables the store creates merge by them (a table's own SETTINGS would override)
        engine.command("CREATE TABLE t (x UInt64) ENGINE = MergeTree ORDER BY x")
        engine.command("INSERT INTO t VALUES (1)")
        assert engine.query("SELECT sum(x) FROM t", "TSV") == b"1\n"
        assert (tmp_path / name / "store").is_dir()  # the store is where it was asked to be
    finally:
        engine.close()


def test_an_insert_of_tens_of_megabytes_is_stored_as_one_compact_part(tmp_path):
    # 64k spans are ~30 MiB uncompressed: over ClickHouse's 10 MiB default for Wide parts (a file
    # or more per column, 137 for otel_traces), under the store's threshold
    wide_from = MERGE_TREE_SETTINGS["min_bytes_for_wide_part"]
    engine = EmbeddedEngine(str(tmp_path / "store"))
    try:
        engine.command("CREATE TABLE t (x UInt64, s String) ENGINE = MergeTree ORDER BY x")
        # one block, so one part (an INSERT is cut into blocks of ~1M rows)
        engine.command("INSERT INTO t SELECT number, concat(toString(number), repeat('x', 16)) "
                       "FROM numbers(1000000) SETTINGS max_insert_block_size = 1000000")
        rows = engine.query("SELECT part_type, data_uncompressed_bytes FROM system.parts "
                            "WHERE table = 't' AND active", "TSV").decode().split()
        assert rows[0] == "Compact" and 20 << 20 < int(rows[1]) < wide_from, rows
    finally:
        engine.close()
