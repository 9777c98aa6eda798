from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.kube import informer as informer_mod
from loadtests.gatewayproc import Gateway
from tests.k8sapi import FakeKubeAPI

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


@pytest.fixture
def recorded_kube_api(shared_data: Path) -> Iterator[FakeKubeAPI]:
    """The test Kubernetes API server (tests/k8sapi.py) serving the recorded objects."""
    server = FakeKubeAPI()
    server.load_recorded(shared_data / "kubernetes")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fast_informer_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Informers retry within a test's time: 50 ms first, at most 200 ms."""
    monkeypatch.setattr(informer_mod, "BACKOFF_INITIAL", 0.05)
    monkeypatch.setattr(informer_mod, "BACKOFF_CAP", 0.2)
