"""docs/configuration.md is what `python -m gateway.docgen` generates from the config models, and
the generator reads models the way a user reads YAML (aliases, nested paths, Go durations)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from gateway import docgen
from gateway.component import Kind
from gateway.config.types import ComponentConfig, Duration
from gateway.registry import factories

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"


def test_committed_reference_is_the_generated_one() -> None:
    out = subprocess.run([sys.executable, "-m", "gateway.docgen"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out == DOC.read_text(), (
        f"docs/configuration.md is stale: regenerate it with `{docgen.COMMAND}`")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _tables(text: str) -> dict[str, dict[str, list[str]]]:
    """Heading → option → [type, default, description]."""
    out: dict[str, dict[str, list[str]]] = {}
    heading = ""
    for line in text.splitlines():
        if line.startswith("### ") or line.startswith("## "):
            heading = line.lstrip("#").strip()
        elif line.startswith("| `"):
            cells = _cells(line)
            assert len(cells) == 4, line
            out.setdefault(heading, {})[cells[0].strip("`")] = cells[1:]
    return out


def test_every_component_and_option_is_documented() -> None:
    tables = _tables(DOC.read_text())
    for kind in Kind:
        noun = docgen._KIND_NOUNS[kind]
        for f in {f.type: f for f in factories()[kind].values()}.values():
            heading = f"`{f.type}` {noun}"
            assert heading in tables, f"no section for the {f.type} {noun}"
            documented = tables[heading]
            for row in docgen.rows(f.config_model):
                assert row.option in documented, (heading, row.option)


def test_options_users_look_up() -> None:
    tables = _tables(DOC.read_text())
    otlp = tables["`otlp` receiver"]
    assert otlp["protocols.grpc.endpoint"][:2] == ["string", "`localhost:4317`"]
    assert otlp["protocols.http.max_request_body_size"][1] == "`20971520`"
    k8s = tables["`k8sattributes` processor"]
    assert "extract.labels[].from" not in k8s  # documented once, under annotations
    assert k8s["extract.annotations[].from"][1] == "`pod`"  # the alias, not `from_`
    assert k8s["auth_type"][0].startswith("one of `none`, `serviceAccount`")
    assert k8s["wait_for_metadata_timeout"][:2] == ["duration > 0", "`10s`"]
    assert "Same options as `extract.annotations[]`" in k8s["extract.labels"][2]
    # an invalid-by-default component is documented from its fields all the same
    limiter = tables["`memory_limiter` processor"]
    assert limiter["check_interval"][:2] == ["duration", "`0s`"]
    assert limiter["limit_percentage"][0] == "integer ≥ 0, ≤ 100"
    assert tables["`prometheus` exporter"]["endpoint"][1] == "**required**"
    ch = tables["`clickhouse` exporter"]
    assert ch["retry_on_failure.max_elapsed_time"][1] == "`5m`"
    assert ch["password"][0] == "string (secret)"
    prom = tables["`prometheus` receiver"]
    assert prom["config.global.scrape_interval"][:2] == ["duration (Prometheus) > 0", "`1m`"]
    assert "config.scrape_configs[].relabel_configs[].action" in prom
    assert tables["Service"]["service.telemetry.metrics.address"][1] == "`127.0.0.1:8888`"


class _Leaf(ComponentConfig):
    """A leaf."""

    name: str = Field(..., min_length=1, description="Its <name>.")


class _Sample(ComponentConfig):
    from_: Literal["a", "b"] = Field("a", alias="from", description="Where from.")
    every: Duration = Field(90.0, ge=0, description="How often.")
    wait: Duration | None = Field(None, description="Optional wait.")
    tags: list[str] = Field(default_factory=lambda: ["x", "y z"], description="Tags.")
    first: _Leaf | None = Field(None, description="One leaf.")
    many: list[_Leaf] = Field(default_factory=list, description="Leaves.")
    named: dict[str, _Leaf] = Field(default_factory=dict, description="Leaves by name.")
    version: Literal["1.2", ""] = Field("1.2", description="A string that YAML would not keep.")


class _Plain(BaseModel):
    inner: _Sample = Field(default_factory=lambda: _Sample(**{"from": "b"}))


def test_generator_walks_models_as_yaml_is_written() -> None:
    got = {r.option: r for r in docgen.rows(_Plain)}
    assert list(got) == [
        "inner.from", "inner.every", "inner.wait", "inner.tags", "inner.first",
        "inner.first.name", "inner.many", "inner.named", "inner.version"]
    # the parent's default instance gives the children's defaults
    assert (got["inner.from"].type, got["inner.from"].default) == ("one of `a`, `b`", "`b`")
    assert (got["inner.every"].type, got["inner.every"].default) == ("duration ≥ 0", "`1m30s`")
    assert (got["inner.wait"].type, got["inner.wait"].default) == ("duration, optional", "unset")
    assert got["inner.tags"].default == '`[x, "y z"]`'
    assert (got["inner.first.name"].type, got["inner.first.name"].default) == (
        "non-empty string", "**required**")
    assert got["inner.many"].description == "Leaves. Same options as `inner.first`."
    assert got["inner.version"].default == '`"1.2"`'
    line = docgen._table([got["inner.first.name"]])[-1]
    assert line == "| `inner.first.name` | non-empty string | **required** | Its \\<name>. |"


def test_go_duration_formatting() -> None:
    cases = {0: "0s", 0.2: "200ms", 5: "5s", 90: "1m30s", 300: "5m", 3600: "1h",
             2592000: "720h", 5400.5: "1h30m0.5s"}
    assert {s: docgen.go_duration(s) for s in cases} == cases
