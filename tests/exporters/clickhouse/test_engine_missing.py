"""A server-only install (no chdb-core) says what to do instead of a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from exporters.clickhouse.engines.embedded import EmbeddedEngine
from gateway.errors import ConfigError


def test_missing_embedded_engine_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "chdb", None)  # import chdb → ImportError
    with pytest.raises(ConfigError) as err:
        EmbeddedEngine(str(tmp_path))
    assert "chdb-core" in str(err.value) and "endpoint" in str(err.value)
