"""docker-compose.yml, the Dockerfile and the files they mount agree with the code they deploy.

No Docker engine is needed: the compose file is read as YAML (with compose's ${VAR} interpolation
done here) and checked against the settings models, the CLI, the Prometheus and Grafana files.
`docker compose config` runs too where the compose plugin is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from broker_support import skip_or_fail
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from hub.cli import app as cli_app
from hub.settings import HubSettings
from monitor.api import metrics_router
from monitor.settings import MonitorSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"

# What the operator puts in the environment (or .env) before `docker compose up`.
OPERATOR_ENVIRONMENT = {"RABBITMQ_PASSWORD": "s3cret-broker", "GRAFANA_ADMIN_PASSWORD": "s3cret-gf"}

_VARIABLE = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?|-|\?)(?P<arg>[^}]*))?\}"
)


def interpolate(text: str, environment: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error} substitution."""

    def substitute(found: re.Match[str]) -> str:
        name, op, arg = found.group("name"), found.group("op"), found.group("arg")
        value = environment.get(name)
        if op in (":?", "?") and not value:
            raise AssertionError(f"compose needs {name}: {arg}")
        if op in (":-", "-") and not value:
            return arg or ""
        return value or ""

    return _VARIABLE.sub(substitute, text.replace("$$", "\0")).replace("\0", "$")


def resolve(node: Any, environment: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, environment)
    if isinstance(node, list):
        return [resolve(item, environment) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, environment) for key, value in node.items()}
    return node


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def services(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    resolved: dict[str, dict[str, Any]] = resolve(raw["services"], OPERATOR_ENVIRONMENT)
    return resolved


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else list(command)


def workers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if command_of(s)[:1] == ["worker"]}


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, PurePosixPath]]:
    """(host path in the repository, path in the container) of every ./ volume."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts.append((REPO / source, PurePosixPath(target)))
    return mounts


def container_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(mapping).split(":")[-1].split("/")[0]) for mapping in service["ports"]}


def environment_names() -> set[str]:
    """Every JGHUB_* variable the settings models read, nested options with '__'."""
    names: set[str] = set()
    for model in (HubSettings, MonitorSettings):
        prefix = str(model.model_config.get("env_prefix", ""))
        delimiter = model.model_config.get("env_nested_delimiter")
        for name, field in model.model_fields.items():
            names.add(f"{prefix}{name}".upper())
            nested = field.annotation
            if delimiter and isinstance(nested, type) and issubclass(nested, BaseModel):
                names.update(
                    f"{prefix}{name}{delimiter}{inner}".upper() for inner in nested.model_fields
                )
    return names


def systems_secret_names() -> set[str]:
    """The variables config/systems.yaml names as holding secrets (every `key_env`)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "key_env" and isinstance(value, str):
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load((REPO / "config" / "systems.yaml").read_text(encoding="utf-8")))
    return found


def cli_command(name: str) -> Any:
    """The `jghub <name>` command as click parses it (typer ships its own click)."""
    commands: dict[str, Any] = typer.main.get_command(cli_app).commands  # type: ignore[attr-defined]
    assert name in commands, f"jghub has no command {name!r}"
    return commands[name]


def hub_processes(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {"hub": services["hub"], **workers(services)}


# -- services and commands -----------------------------------------------------------------------


def test_every_part_of_the_deployment_is_a_service(services: dict[str, dict[str, Any]]) -> None:
    assert {"rabbitmq", "hub", "prometheus", "grafana"} <= services.keys()
    assert len(workers(services)) == 2, sorted(services)


def test_the_hub_serves_and_the_workers_work_with_commands_the_cli_has(
    services: dict[str, dict[str, Any]],
) -> None:
    entrypoint = _dockerfile_instruction("ENTRYPOINT")
    assert yaml.safe_load(entrypoint) == ["jghub"]
    assert command_of(services["hub"])[:1] == ["serve"]
    for name, service in hub_processes(services).items():
        command = cli_command(command_of(service)[0])
        # click parses the arguments exactly as the container would pass them.
        context = command.make_context(name, command_of(service)[1:], resilient_parsing=False)
        assert context.command.name in {"serve", "worker"}
        if command.name == "worker":
            assert context.params["metrics_port"] > 0, f"{name} must expose its own metrics"


# -- files on the host ---------------------------------------------------------------------------


def test_every_mounted_host_path_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for source, target in bind_mounts(service):
            assert source.exists(), f"{name} mounts {source} at {target}, which does not exist"


def test_the_dockerfile_copies_only_files_the_repository_has() -> None:
    copies = [
        line.split()[1:-1]
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.startswith("COPY ")
    ]
    assert copies, "the Dockerfile copies nothing"
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for sources in copies:
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
            assert source not in ignored, f"COPY {source}: .dockerignore leaves it out"
    copied = {source for sources in copies for source in sources}
    packages = {"standard", "mappings", "adapters", "bus", "monitor", "hub"}
    assert packages <= copied, f"packages not copied: {sorted(packages - copied)}"
    assert "config" in copied, "the image needs the systems configuration"
    assert _dockerfile_instruction("USER") not in {"root", "0"}


def _dockerfile_instruction(keyword: str) -> str:
    lines = [
        line[len(keyword) :].strip()
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.startswith(f"{keyword} ")
    ]
    assert lines, f"the Dockerfile has no {keyword}"
    return lines[-1]


# -- settings and secrets ------------------------------------------------------------------------


def test_every_jghub_variable_in_compose_is_a_setting_or_a_system_secret(
    services: dict[str, dict[str, Any]],
) -> None:
    known = environment_names() | systems_secret_names()
    assert "JGHUB_AMQP_URL" in known and "JGHUB_JOURNAL__FLUSH_INTERVAL_S" in known
    for name, service in services.items():
        for variable in service.get("environment", {}):
            if variable.startswith("JGHUB_"):
                assert variable in known, f"{name} sets {variable}, which nothing reads"
    dockerfile_env = re.findall(r"\b(JGHUB_[A-Z0-9_]+)=", DOCKERFILE.read_text(encoding="utf-8"))
    assert dockerfile_env and set(dockerfile_env) <= known


def test_the_compose_environment_is_valid_hub_and_monitor_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in hub_processes(services).items():
        environment = {key: str(value) for key, value in service["environment"].items()}
        hub, monitor = _settings_from(environment)
        assert hub.amqp_url is not None, f"{name} would use the embedded bus"
        assert urlsplit(hub.amqp_url).hostname == "rabbitmq"
        assert urlsplit(hub.amqp_url).port in container_ports(services["rabbitmq"])
        assert urlsplit(hub.amqp_url).password == OPERATOR_ENVIRONMENT["RABBITMQ_PASSWORD"]
        data_volumes = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert data_volumes.get(str(hub.data_dir)) == "hub-data", f"{name}: data_dir not shared"
        # Per-container samples: a shared folder would mix processes with the same pid.
        assert monitor.metrics_dir is not None
        assert hub.data_dir not in monitor.metrics_dir.parents
        assert str(hub.systems_file).startswith("/app/"), "the Dockerfile copies config to /app"


def _settings_from(environment: dict[str, str]) -> tuple[HubSettings, MonitorSettings]:
    saved = {key: value for key, value in os.environ.items() if key.startswith("JGHUB_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(environment)
    try:
        return HubSettings(), MonitorSettings()
    finally:
        for key in environment:
            os.environ.pop(key, None)
        os.environ.update(saved)


def test_secrets_come_from_the_environment_never_from_the_file(raw: dict[str, Any]) -> None:
    secret_names = systems_secret_names()
    services = raw["services"]
    for name in ("hub", *workers(resolve(services, OPERATOR_ENVIRONMENT))):
        environment = services[name]["environment"]
        missing = secret_names - environment.keys()
        assert not missing, f"{name} does not pass {sorted(missing)}"
        for variable in secret_names:
            assert re.fullmatch(rf"\$\{{{variable}(:-)?\}}", environment[variable]), (
                f"{name}: {variable} must be ${{{variable}}} from the environment"
            )
        marker = {"RABBITMQ_PASSWORD": "from-the-environment"}
        password = urlsplit(interpolate(environment["JGHUB_AMQP_URL"], marker)).password
        assert password == marker["RABBITMQ_PASSWORD"], "the broker password is in the file"
    for service, variable in (
        ("rabbitmq", "RABBITMQ_DEFAULT_PASS"),
        ("grafana", "GF_SECURITY_ADMIN_PASSWORD"),
    ):
        value = services[service]["environment"][variable]
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", value), f"{service}.{variable}: {value}"


# -- ports, scraping and dashboards --------------------------------------------------------------


def test_the_hub_port_agrees_with_its_settings_and_prometheus(
    services: dict[str, dict[str, Any]],
) -> None:
    environment = {key: str(value) for key, value in services["hub"]["environment"].items()}
    hub, _ = _settings_from(environment)
    assert hub.host == "0.0.0.0"
    assert hub.port in container_ports(services["hub"])
    # The image's default and HubSettings' default agree, so `docker run` without compose works.
    assert f"JGHUB_PORT={HubSettings.model_fields['port'].default}" in DOCKERFILE.read_text(
        encoding="utf-8"
    )
    jobs = _prometheus_jobs(services)
    route_paths = {getattr(r, "path", None) for r in metrics_router(CollectorRegistry()).routes}
    assert jobs["jghub"]["metrics_path"] in route_paths
    assert _compose_targets(services, jobs["jghub"]) == [f"hub:{hub.port}"]
    worker_targets = _compose_targets(services, jobs["jghub-workers"])
    expected = []
    for name, service in workers(services).items():
        context = cli_command("worker").make_context(name, command_of(service)[1:])
        expected.append(f"{name}:{context.params['metrics_port']}")
    assert sorted(worker_targets) == sorted(expected)
    assert _compose_targets(services, jobs["rabbitmq"]) == ["rabbitmq:15692"]
    assert 15692 in container_ports(services["rabbitmq"])


def _prometheus_jobs(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    config_dir = _host_path_of(services["prometheus"], PurePosixPath("/etc/prometheus"))
    config = yaml.safe_load((config_dir / "prometheus.yml").read_text(encoding="utf-8"))
    return {job["job_name"]: job for job in config["scrape_configs"]}


def _host_path_of(service: dict[str, Any], target: PurePosixPath) -> Path:
    """The host file seen at `target` in the container: the deepest bind mount covering it."""
    covering = [
        (source, mounted)
        for source, mounted in bind_mounts(service)
        if target == mounted or mounted in target.parents
    ]
    assert covering, f"nothing is mounted at {target}"
    source, mounted = max(covering, key=lambda pair: len(pair[1].parts))
    return source / target.relative_to(mounted)


def _compose_targets(services: dict[str, dict[str, Any]], job: dict[str, Any]) -> list[str]:
    """The targets a job scrapes inside compose: its file_sd files as the container sees them."""
    targets: list[str] = []
    for discovery in job["file_sd_configs"]:
        for name in discovery["files"]:
            seen = _host_path_of(services["prometheus"], PurePosixPath("/etc/prometheus") / name)
            assert seen.is_file(), f"{job['job_name']}: {seen} missing"
            # The repository's own targets file exists too (the non-compose deployment).
            assert (REPO / "monitor" / "prometheus" / name).is_file()
            for group in yaml.safe_load(seen.read_text(encoding="utf-8")):
                targets.extend(group["targets"])
    for target in targets:
        assert target.split(":")[0] in services, f"{target} is not a compose service"
    return targets


def test_prometheus_accepts_the_compose_configuration(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        skip_or_fail("promtool is not installed (apt-get install -y prometheus)")
    # Rebuild /etc/prometheus as the container sees it, mounts layered in order.
    etc = tmp_path / "etc-prometheus"
    mounts = sorted(bind_mounts(services["prometheus"]), key=lambda pair: len(pair[1].parts))
    for source, target in mounts:
        if target == PurePosixPath("/etc/prometheus") or PurePosixPath("/etc/prometheus") in (
            target.parents
        ):
            destination = etc / target.relative_to("/etc/prometheus")
            shutil.copytree(source, destination, dirs_exist_ok=True)
    done = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"],
        cwd=etc,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_provisions_the_repository_dashboard_from_prometheus(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    provisioning = _host_path_of(grafana, PurePosixPath("/etc/grafana/provisioning"))
    providers = [
        provider
        for path in sorted((provisioning / "dashboards").glob("*.yml"))
        for provider in yaml.safe_load(path.read_text(encoding="utf-8"))["providers"]
    ]
    assert providers, "no dashboard provider"
    dashboard = REPO / "monitor" / "grafana" / "jghub.json"
    loaded = []
    for provider in providers:
        folder = PurePosixPath(provider["options"]["path"])
        for source, target in bind_mounts(grafana):
            if target.parent == folder or target == folder:
                loaded.append(source.resolve())
    assert dashboard.resolve() in loaded, "Grafana would not load monitor/grafana/jghub.json"
    sources = [
        source
        for path in sorted((provisioning / "datasources").glob("*.yml"))
        for source in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
    ]
    prometheus = [source for source in sources if source["type"] == "prometheus"]
    assert len(prometheus) == 1 and prometheus[0]["isDefault"]
    url = urlsplit(prometheus[0]["url"])
    assert url.hostname == "prometheus" and url.port in container_ports(services["prometheus"])


def test_rabbitmq_enables_management_and_prometheus(services: dict[str, dict[str, Any]]) -> None:
    plugins_file = _host_path_of(
        services["rabbitmq"], PurePosixPath("/etc/rabbitmq/enabled_plugins")
    )
    text = plugins_file.read_text(encoding="utf-8").strip()
    assert text.startswith("[") and text.endswith("].")  # an Erlang term, ended by a dot
    plugins = {name.strip() for name in text[1:-2].split(",")}
    assert {"rabbitmq_management", "rabbitmq_prometheus"} <= plugins


# -- the real tool -------------------------------------------------------------------------------


def test_docker_compose_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed; the checks above read the file without it")
    version = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30
    )
    if version.returncode != 0:
        pytest.skip(f"the docker compose plugin is not installed: {version.stderr.strip()}")
    environment = {**os.environ, **OPERATOR_ENVIRONMENT}
    done = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # Without the broker password compose refuses to start, instead of using a default.
    without = {k: v for k, v in environment.items() if k != "RABBITMQ_PASSWORD"}
    refused = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=REPO,
        env=without,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "RABBITMQ_PASSWORD" in refused.stderr
