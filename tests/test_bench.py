"""The benchmark command runs end to end: both phases per signal, zero loss, the engine's
ceiling, a JSON result and a chart (a short run: the figures themselves are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.files import mount_of

pytestmark = pytest.mark.timeout(300)


def test_a_short_benchmark_run_reports_both_phases(tmp_path: Path) -> None:
    (tmp_path / "queue").mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "loadtests.bench", "--seconds", "2", "--signals", "logs",
         "--concurrency", "2", "--batch", "200", "--ceiling-seconds", "1",
         "--results", str(tmp_path), "--queue-dir", str(tmp_path / "queue")],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stderr[-3000:]
    (result_file,) = tmp_path.glob("bench-*.json")
    assert result_file.with_suffix(".png").stat().st_size > 0
    run = json.loads(result_file.read_text())
    (res,) = run["results"]
    queue = run["config"]["exporters"]["clickhouse"]["sending_queue"]
    assert queue["directory"].startswith(str(tmp_path / "queue")), queue
    # the filesystems the figures were taken on, with their options (online discard stalls)
    assert run["filesystems"]["queue"]["point"] == mount_of(tmp_path / "queue").point
    assert {"store", "queue"} <= run["filesystems"].keys()
    assert "rw" in run["filesystems"]["store"]["options"]
    assert res["phase"] == "max" and res["zero_loss"], res
    assert res["stored_rows"] == res["acked_items"] > 0
    # every acknowledgement waited for a commit of the log; group commits take several
    assert 0 < res["queue_commits"] <= res["acked_items"]
    assert 0 <= res["queue_commits_over_100ms"] <= res["queue_commits"]
    assert 0 < res["sustained_items_per_s"] <= res["items_per_s"]
    half = res["half_rate"]
    assert half["zero_loss"] and half["stored_rows"] == half["acked_items"] > 0, half
    # the second phase offered half the first's sustained rate (a 2 s run: loosely)
    assert half["items_per_s"] < 0.8 * res["sustained_items_per_s"], (half, res)
    assert half["ack_p99_ms"] >= half["ack_p50_ms"] > 0
    # the slowest requests, in the order they were sent, say where the tail is
    slowest = half["slowest"]
    assert len(slowest) >= 10 and max(s["ms"] for s in slowest) >= half["ack_p99_ms"]
    assert [s["sent_at_s"] for s in slowest] == sorted(s["sent_at_s"] for s in slowest)
    assert list((tmp_path / "queue").iterdir()) == []  # the queue's directory is cleaned up
    assert res["ceiling"]["rows_per_s"] > 0 and res["gateway_to_ceiling"] > 0
    # the ceiling stores every row it inserts (the same block again is not deduplicated away)
    assert res["ceiling"]["stored_rows"] == res["ceiling"]["rows"]


def test_the_processes_a_benchmark_starts_run_the_code_of_its_own_checkout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a benchmark of a git worktree measures that worktree's gateway, not another otelgw that
    # the interpreter would find first (here: one on PYTHONPATH; in practice an editable
    # install of another checkout), though the gateway runs in a directory of its own
    from loadtests.gatewayproc import SOURCE_ROOT, source_env

    other = tmp_path / "other" / "gateway"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("")
    (other / "cli.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(other.parent))
    out = subprocess.run([sys.executable, "-c", "import gateway.cli; print(gateway.cli.__file__)"],
                         cwd=tmp_path, env=source_env(), capture_output=True, text=True,
                         timeout=60, check=True)
    assert Path(out.stdout.strip()) == SOURCE_ROOT / "gateway" / "cli.py"
    assert SOURCE_ROOT == Path(__file__).resolve().parents[1]
