"""The Dockerfile and the Kubernetes manifests under deploy/ agree with the code and the
configurations they run.

No Docker engine and no Kubernetes API server run here, so the image is checked by reading the
Dockerfile (stages, user, ports, build context) and by running the gateway the way the server-mode
image does, without chDB; the manifests are checked against the Kubernetes OpenAPI schemas
(the kubernetes-validate package, offline) and against the configurations in config/.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import registry
from gateway.config.loader import load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
ENV = {"CLUSTER_NAME": "prod-eu-1", "CLICKHOUSE_ENDPOINT": "http://clickhouse:8123",
       "CLICKHOUSE_PASSWORD": "secret", "NODE_NAME": "node-1", "HOST_IP": "10.0.0.7"}
PORTS = {4317, 4318, 8889, 8888, 13133}
TIER_CONFIGS = {"otelgw-gateway": "config/kubernetes.yaml", "otelgw-agent": "config/agent.yaml"}


# ---- the Dockerfile ------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str, str]]:
    """(stage, INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str, str]] = []
    stage, pending = "", ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            stage = args.split()[-1] if " AS " in args.upper() else args
        out.append((stage, instr, args.strip()))
    return out


def _stage(name: str) -> list[tuple[str, str]]:
    """The instructions in effect in a stage, its `FROM` ancestors' included."""
    instrs = _instructions()
    own = [(i, a) for s, i, a in instrs if s == name]
    parent = own[0][1].split()[0]
    stages = {s for s, _, _ in instrs}
    return (_stage(parent) if parent in stages else []) + own[1:]


def _last(stage: str, instr: str) -> str:
    values = [a for i, a in _stage(stage) if i == instr]
    assert values, f"no {instr} in stage {stage}"
    return values[-1]


def _dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last pattern matching the path, or one of its parent directories,
    decides; `!` re-includes."""
    allowed = True
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]").replace(r"\[", "[")
        regex = regex.replace(r"\]", "]")
        if any(re.fullmatch(regex, c) for c in candidates):
            allowed = negate
    return allowed


def _listen_ports(config_path: Path) -> set[int]:
    """Ports a configuration listens on beyond loopback (what a container must expose)."""
    cfg = load_config(config_path, env=ENV)
    found: set[int] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("endpoint", "address") and isinstance(item, str):
                    match = re.fullmatch(r"([^/]*):(\d+)", item)
                    if match and match.group(1) not in ("127.0.0.1", "localhost", "[::1]"):
                        found.add(int(match.group(2)))
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for specs in (cfg.receivers, cfg.exporters, cfg.extensions):
        for spec in specs.values():
            walk(spec.config.model_dump())
    walk(cfg.service.telemetry.model_dump())
    return found


def test_dockerfile_stages_run_as_non_root() -> None:
    instrs = _instructions()
    froms = [(s, a) for s, i, a in instrs if i == "FROM"]
    assert [s for s, _ in froms] == ["deps", "build", "build-embedded", "base", "server",
                                    "embedded"]
    base_image = next(a for s, i, a in instrs if i == "ARG" and a.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", base_image), base_image
    # the default target (the last stage) has the embedded store; `server` has not
    assert froms[-1][0] == "embedded"
    for target in ("server", "embedded"):
        user = _last(target, "USER")
        uid, _, gid = user.partition(":")
        assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0, user
        assert f"--uid {uid}" in _last("base", "RUN") and f"--gid {gid}" in _last("base", "RUN")
    installs = {t: " ".join(a for i, a in _stage(t) if i == "RUN") for t in ("server", "embedded")}
    assert "requirements-embedded.txt" not in installs["server"]
    assert "from=build-embedded" not in installs["server"]  # the stage that fetched chDB
    assert "requirements-embedded.txt" in installs["embedded"]
    for target in ("server", "embedded"):  # both install the otelgw wheel built from the source
        assert "from=build,source=/wheels" in installs[target]
        assert re.search(r"pip install --no-index --no-deps \S*otelgw/\*\.whl", installs[target])


def test_exposed_ports_are_the_ports_the_configs_listen_on() -> None:
    exposed = {int(p) for p in _last("base", "EXPOSE").split()}
    assert exposed == PORTS
    assert _listen_ports(ROOT / "config" / "kubernetes.yaml") == PORTS
    assert _listen_ports(ROOT / "config" / "agent.yaml") == PORTS
    assert _listen_ports(DEPLOY / "docker" / "config.yaml") <= exposed


def test_copied_files_exist_and_are_in_the_build_context() -> None:
    copied = []
    for stage, instr, args in _instructions():
        if instr != "COPY" or args.startswith("--from"):
            continue
        sources = args.split()[:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source} in stage {stage}: no such file"
            files = [source] if (ROOT / source).is_file() else [
                str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.*")
                if "__pycache__" not in p.parts]
            assert files and all(_dockerignore_allows(f) for f in files), (source, files[:5])
            copied.append(source.rstrip("/"))
    # every package the gateway imports at run time goes into the wheel
    packages = {m.split(".")[0] for m in registry._FACTORY_MODULES} | {"gateway"}
    assert packages <= set(copied), packages - set(copied)
    assert {"pyproject.toml", "README.md"} <= set(copied)  # the build reads both
    for private in (".git/HEAD", "tests/conftest.py", "data/x", ".venv/bin/python",
                    "gateway/__pycache__/cli.cpython-311.pyc"):
        assert not _dockerignore_allows(private), private


def test_entrypoint_config_and_healthcheck() -> None:
    for target in ("server", "embedded"):
        assert json.loads(_last(target, "ENTRYPOINT")) == [
            "otelgw", "run", "--config", "/etc/otelgw/config.yaml"]
    copies = [a.split() for s, i, a in _instructions() if i == "COPY"]
    assert ["deploy/docker/config.yaml", "/etc/otelgw/config.yaml"] in copies
    cfg = load_config(DEPLOY / "docker" / "config.yaml", env={})
    health = next(s.config for s in cfg.extensions.values() if s.factory.type == "health_check")
    port = health.endpoint.rsplit(":", 1)[1]
    check = _last("base", "HEALTHCHECK")
    assert f"http://127.0.0.1:{port}{health.path}" in check, check
    # the embedded store lives where the image gives the user a writable directory
    clickhouse = next(iter(cfg.exporters.values())).config
    env = _last("base", "ENV")
    assert not clickhouse.endpoint and f"OTELGW_DATA={clickhouse.path}" in env
    assert f"chown otelgw:otelgw {clickhouse.path}" in _last("base", "RUN")
    server = load_config(DEPLOY / "docker" / "config.yaml", env={
        "CLICKHOUSE_ENDPOINT": "http://clickhouse:8123"})
    assert next(iter(server.exporters.values())).config.endpoint == "http://clickhouse:8123"


def test_requirements_split_leaves_only_chdb_out_of_the_server_image() -> None:
    import tomllib

    script = DEPLOY / "docker" / "requirements.py"

    def run(which: str) -> list[str]:
        out = subprocess.run([sys.executable, str(script), str(ROOT / "pyproject.toml"), which],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        return out.split()

    server, embedded = run("server"), run("embedded")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(server + embedded) == sorted(deps)
    assert [d.split(">")[0] for d in embedded] == ["chdb-core"]


def _imports(path: Path) -> set[str]:
    """Top-level modules a file imports, except those it guards with `except ImportError`."""
    tree = ast.parse(path.read_text())
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers):
            guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def _installed_closure(requirements: list[str]) -> set[str]:
    """Canonical names of the distributions `requirements` install, transitively (no extras)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            todo += [Requirement(r) for r in metadata.requires(req.name) or []]
        except metadata.PackageNotFoundError:
            pass
    return seen


def test_runtime_imports_are_installed_by_the_image() -> None:
    """The images install pyproject.toml's dependencies and nothing else: every third-party
    module the gateway imports must come from them (an optional one is guarded)."""
    import tomllib
    from importlib import metadata

    from packaging.utils import canonicalize_name

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    installed = _installed_closure(deps)
    local = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    owners = metadata.packages_distributions()
    missing = {}
    for package in sorted({m.split(".")[0] for m in registry._FACTORY_MODULES} | {"gateway"}):
        for path in (ROOT / package).rglob("*.py"):
            for module in _imports(path) - local - set(sys.stdlib_module_names):
                dists = {canonicalize_name(d) for d in owners.get(module, [module])}
                if not dists & installed:
                    missing.setdefault(module, str(path.relative_to(ROOT)))
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"


_BLOCK_CHDB = """\
import sys

class _NoChdb:
    def find_spec(self, name, path=None, target=None):
        if name == "chdb" or name.startswith("chdb."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoChdb())
"""


@pytest.mark.timeout(90)
def test_server_mode_runs_without_chdb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the `server` image is: no chdb module. A real gateway writes to a ClickHouse
    server (tests/chserver.py) and the rows arrive."""
    from loadtests import payloads
    from loadtests.gatewayproc import Gateway, default_config, free_port
    from tests.chserver import ChServer

    block = tmp_path / "no-chdb"
    block.mkdir()
    (block / "sitecustomize.py").write_text(_BLOCK_CHDB)
    probe = subprocess.run([sys.executable, "-c", "import chdb"], capture_output=True, text=True,
                           env={"PYTHONPATH": str(block)}, timeout=30)
    assert probe.returncode != 0 and "No module named 'chdb'" in probe.stderr

    ch = ChServer(tmp_path / "ch", free_port(), log_dir=tmp_path).start()  # chDB of its own
    try:
        monkeypatch.setenv("PYTHONPATH", str(block))  # the gateway's environment only
        ports = {k: free_port() for k in ("grpc", "http", "query", "metrics")}
        config = default_config(tmp_path / "data", ports)
        config["exporters"]["clickhouse"] = {"endpoint": ch.url, "database": "otel"}
        config["processors"]["batch"] = {"timeout": "20ms"}
        gw = Gateway(tmp_path / "gw", config, ports).start()
        try:
            request = payloads.traces(50, seed=7)
            spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            body = request.SerializeToString()
            req = urllib.request.Request(f"{gw.http_url}/v1/traces", data=body, method="POST",
                                         headers={"Content-Type": "application/x-protobuf"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                assert resp.status == 200
            deadline, n = time.monotonic() + 20, 0
            while time.monotonic() < deadline:
                n = int(ch.rows("SELECT count() AS n FROM otel_traces", "otel")[0]["n"])
                if n >= spans:
                    break
                time.sleep(0.1)
            assert n == spans == 50
            assert not (tmp_path / "data").exists()  # nothing embedded was opened
        finally:
            assert gw.stop() == 0, gw.logs()
    finally:
        ch.stop()


# ---- the Kubernetes manifests ----------------------------------------------------------------


def _resources() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]
    return docs


def _find(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _resources() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def _configmaps_module() -> Any:
    spec = importlib.util.spec_from_file_location("deploy_configmaps", DEPLOY / "configmaps.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


def test_kustomization_applies_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    manifests = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests
    kinds = sorted(d["kind"] for d in _resources())
    assert kinds == sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                            "ConfigMap", "ConfigMap", "Deployment", "Service",
                            "PodDisruptionBudget", "DaemonSet", "Service"])


@pytest.mark.parametrize("version", ["1.27.0", "latest"])
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    kv = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate (test extra) is not installed")
    version = kv.latest_version() if version == "latest" else version
    errors = []
    for doc in _resources():
        try:
            kv.validate(doc, version, strict=True)  # strict: unknown fields are errors
        except kv.ValidationError as exc:
            where = ".".join(map(str, exc.absolute_path))
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}")
    assert not errors, f"on Kubernetes {version}:\n" + "\n".join(errors)


def test_configmaps_hold_the_config_files_verbatim() -> None:
    module = _configmaps_module()
    for name, path in TIER_CONFIGS.items():
        cm = _find("ConfigMap", name)
        assert cm["data"] == {"config.yaml": (ROOT / path).read_text()}, (
            f"deploy/configmaps.yaml is stale: run python deploy/configmaps.py ({path})")
    stale = [f for f, text in module.expected().items() if (ROOT / f).read_text() != text]
    assert not stale, f"{stale} stale: run python deploy/configmaps.py"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_kustomize_renders_the_config_files() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0 and "unknown command" in out.stderr:
        pytest.skip("this kubectl has no kustomize")
    assert out.returncode == 0, out.stderr
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout)}
    for name, path in TIER_CONFIGS.items():
        assert rendered[("ConfigMap", name)]["data"]["config.yaml"] == (ROOT / path).read_text()


def _env_refs(path: str) -> set[str]:
    """Variables a configuration needs (`${env:X}` without a default)."""
    text = (ROOT / path).read_text().replace("$$", "")
    return set(re.findall(r"\$\{(?:env:)?([A-Za-z_]\w*)\}", text))


def _workloads() -> list[tuple[dict[str, Any], str]]:
    return [(_find("Deployment", "otelgw-gateway"), "config/kubernetes.yaml"),
            (_find("DaemonSet", "otelgw-agent"), "config/agent.yaml")]


@pytest.mark.parametrize("index", [0, 1], ids=["gateway", "agent"])
def test_workload_runs_its_configuration(index: int) -> None:
    workload, config_path = _workloads()[index]
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    cfg = load_config(ROOT / config_path, env=ENV)
    # configuration: the tier's ConfigMap where the image's entrypoint reads it
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_volume = volumes[mounts["/etc/otelgw"]["name"]]
    assert config_volume["configMap"]["name"] in TIER_CONFIGS
    assert TIER_CONFIGS[config_volume["configMap"]["name"]] == config_path
    assert "args" not in container and "command" not in container  # the image's entrypoint
    sha = workload["spec"]["template"]["metadata"]["annotations"]["otelgw.io/config-sha256"]
    assert sha == _configmaps_module().sha256((ROOT / config_path).read_text())
    # environment: every variable the configuration needs; secrets only by reference
    env = {e["name"]: e for e in container["env"]}
    assert _env_refs(config_path) <= set(env), _env_refs(config_path) - set(env)
    for name in ("CLUSTER_NAME", "CLICKHOUSE_ENDPOINT", "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "otelgw-env", name
    # probes on the health_check extension
    health = next(s.config for s in cfg.extensions.values() if s.factory.type == "health_check")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert (ports[get["port"]], get["path"]) == (
            int(health.endpoint.rsplit(":", 1)[1]), health.path), probe
    assert set(ports.values()) == _listen_ports(ROOT / config_path)
    # security: non-root as the image's user, nothing writable but the emptyDirs
    security, own = pod["securityContext"], container["securityContext"]
    uid, _, gid = _last("embedded", "USER").partition(":")
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (int(uid), int(gid))
    assert own["readOnlyRootFilesystem"] is True and own["allowPrivilegeEscalation"] is False
    assert own["capabilities"]["drop"] == ["ALL"]
    writable = {path for path, m in mounts.items() if not m.get("readOnly")}
    workdir = _last("base", "WORKDIR")
    assert writable == {"/tmp", workdir}
    assert all("emptyDir" in volumes[mounts[p]["name"]] for p in writable)
    # the store's directory and the sending queue on disk resolve inside the working directory
    exporter = next(s.config for s in cfg.exporters.values() if s.factory.type == "clickhouse")
    queue_dir = getattr(exporter.sending_queue, "directory", "") or f"{exporter.path}/queue"
    for path in (exporter.path, queue_dir):
        resolved = Path(workdir, path).resolve()
        assert resolved.is_relative_to(workdir), (path, resolved)
    # SIGTERM: the preStop pause, then the queue drains, within the grace period
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = getattr(exporter.sending_queue, "drain_timeout", 0)
    assert pod["terminationGracePeriodSeconds"] >= pause + drain + 10
    # resources: memory_limiter's percentages need a memory limit to be a percentage of
    res = container["resources"]
    assert set(res) == {"requests", "limits"} and {"cpu", "memory"} <= set(res["requests"])
    limiter = next(s.config for s in cfg.processors.values()
                   if s.factory.type == "memory_limiter")
    assert limiter.limit_percentage and "memory" in res["limits"]
    assert pod["serviceAccountName"] == _find("ServiceAccount", "otelgw")["metadata"]["name"]


def test_services_expose_the_pods_ports() -> None:
    for workload, service_name in zip([w for w, _ in _workloads()], ["otelgw", "otelgw-agent"]):
        service = _find("Service", service_name)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        pod_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        service_ports = {p["targetPort"]: p["port"] for p in service["spec"]["ports"]}
        assert service_ports == pod_ports
        assert {p["name"] for p in service["spec"]["ports"]} == set(pod_ports)
    # the agent's Service keeps OTLP on the sender's node
    assert _find("Service", "otelgw-agent")["spec"]["internalTrafficPolicy"] == "Local"


def test_agent_watches_its_own_node() -> None:
    agent = _find("DaemonSet", "otelgw-agent")
    (container,) = agent["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
           for e in container["env"]}
    assert env["NODE_NAME"] == "spec.nodeName" and env["HOST_IP"] == "status.hostIP"
    cfg = load_config(ROOT / "config" / "agent.yaml", env=ENV)
    k8s = next(s.config for s in cfg.processors.values() if s.factory.type == "k8sattributes")
    assert k8s.filter.node_name() == "node-1"
    prom = next(s.config for s in cfg.receivers.values() if s.factory.type == "prometheus")
    (job,) = prom.config.scrape_configs
    assert [sc.targets for sc in job.static_configs] == [["10.0.0.7:9100"]]
    exporter = next(s.config for s in cfg.exporters.values() if s.factory.type == "clickhouse")
    assert exporter.endpoint == "http://clickhouse:8123"  # server mode: the image has no chDB


def test_gateway_replicas_and_disruption_budget() -> None:
    gateway = _find("Deployment", "otelgw-gateway")
    cfg = load_config(ROOT / "config" / "kubernetes.yaml", env=ENV)
    scrapes = any(s.factory.type == "prometheus" for s in cfg.receivers.values())
    # every replica runs the scrape jobs: more than one would store each series twice
    assert not scrapes or gateway["spec"]["replicas"] == 1
    pdb = _find("PodDisruptionBudget", "otelgw-gateway")
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # a budget that one replica could never meet would block every node drain
    assert pdb["spec"].get("maxUnavailable", 0) >= 1 or (
        pdb["spec"].get("minAvailable", 0) < gateway["spec"]["replicas"])
