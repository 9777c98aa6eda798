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
