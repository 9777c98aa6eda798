from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.gatewayproc import Gateway

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway with the default pipelines for the whole session (tests use distinct
    service names so their rows do not mix)."""
    gw = Gateway(tmp_path_factory.mktemp("gateway")).start()
    yield gw
    code = gw.stop()
    assert code == 0, f"otelgw exited with {code}:\n{gw.logs()}"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared captures are not at {SHARED_DATA} (../shared/data)")
    return SHARED_DATA
