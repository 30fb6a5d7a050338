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
from hub.systems import load_systems
from monitor.api import metrics_router
from monitor.settings import MonitorSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"

# What the operator puts in the environment (or .env) before `docker compose up`.
OPERATOR_ENVIRONMENT = {
    "RABBITMQ_PASSWORD": "s3cret-broker",
    "POSTGRES_PASSWORD": "s3cret-store",
    "GRAFANA_ADMIN_PASSWORD": "s3cret-gf",
}
NGINX_CONF = PurePosixPath("/etc/nginx/nginx.conf")

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


def serves(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if command_of(s)[:1] == ["serve"]}


def hub_containers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every container of the hub's image (serve, worker, the migration step)."""
    return {name: s for name, s in services.items() if s.get("build") == "."}


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


def parse_cli(name: str, argv: list[str]) -> Any:
    """The click context of `jghub argv...`, through command groups (`db upgrade`)."""
    command = cli_command(argv[0])
    rest = argv[1:]
    while getattr(command, "commands", None):
        assert rest, f"{name}: `jghub {' '.join(argv)}` names no subcommand"
        assert rest[0] in command.commands, f"{name}: `jghub {' '.join(argv)}`: no such command"
        command, rest = command.commands[rest[0]], rest[1:]
    return command.make_context(name, rest, resilient_parsing=False)


def hub_environment(service: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in service["environment"].items()}


# -- services and commands -----------------------------------------------------------------------


def test_every_part_of_the_deployment_is_a_service(services: dict[str, dict[str, Any]]) -> None:
    assert {"rabbitmq", "postgres", "migrate", "nginx", "prometheus", "grafana"} <= services.keys()
    assert len(serves(services)) == 2, sorted(services)
    assert len(workers(services)) == 2, sorted(services)


def test_the_hubs_serve_and_the_workers_work_with_commands_the_cli_has(
    services: dict[str, dict[str, Any]],
) -> None:
    entrypoint = _dockerfile_instruction("ENTRYPOINT")
    assert yaml.safe_load(entrypoint) == ["jghub"]
    for name, service in hub_containers(services).items():
        # click parses the arguments exactly as the container would pass them.
        context = parse_cli(name, command_of(service))
        assert context.command.name in {"serve", "worker", "upgrade"}, name
        if context.command.name == "worker":
            assert context.params["metrics_port"] > 0, f"{name} must expose its own metrics"


def test_the_store_is_migrated_once_before_any_hub_starts(
    services: dict[str, dict[str, Any]],
) -> None:
    containers = hub_containers(services)
    migrating = []
    for name, service in containers.items():
        context = parse_cli(name, command_of(service))
        hub, _ = _settings_from(hub_environment(service))
        if (
            context.command.name == "upgrade"
            or context.params.get("migrate")
            or (hub.database_migrate)
        ):
            migrating.append(name)
    assert migrating == ["migrate"], f"one migration step, not {migrating}"
    assert services["migrate"].get("restart") == "no", "a one-shot step must not restart"
    postgres_ready = services["migrate"]["depends_on"]["postgres"]["condition"]
    assert postgres_ready == "service_healthy"
    assert services["postgres"]["healthcheck"]["test"]
    for name, service in containers.items():
        if name != "migrate":
            condition = service["depends_on"]["migrate"]["condition"]
            assert condition == "service_completed_successfully", f"{name} may race the migration"


def test_no_volume_is_shared_by_two_hub_containers(services: dict[str, dict[str, Any]]) -> None:
    """Nothing a hub needs lives in its data folder (issue #14): each has its own or none."""
    mounted_by: dict[str, list[str]] = {}
    for name, service in hub_containers(services).items():
        for volume in service.get("volumes", []):
            source, _, mode = [*volume.split(":"), "", ""][:3]
            if mode != "ro":
                mounted_by.setdefault(source, []).append(name)
    shared = {source: names for source, names in mounted_by.items() if len(names) > 1}
    assert not shared, f"writable volumes shared by hub containers: {shared}"


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
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    included = re.search(r"^include = \[(.*)\]$", pyproject, re.MULTILINE)
    assert included is not None, "pyproject.toml names no packages"
    packages = {name.strip(' "*') for name in included.group(1).split(",")}
    assert {"store", "centre", "hub"} <= packages
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
    postgres = services["postgres"]["environment"]
    for name, service in hub_containers(services).items():
        hub, monitor = _settings_from(hub_environment(service))
        assert hub.amqp_url is not None, f"{name} would use the embedded bus"
        assert urlsplit(hub.amqp_url).hostname == "rabbitmq"
        assert urlsplit(hub.amqp_url).port in container_ports(services["rabbitmq"])
        assert urlsplit(hub.amqp_url).password == OPERATOR_ENVIRONMENT["RABBITMQ_PASSWORD"]
        # Every hub on the one PostgreSQL store, as the postgres service creates it.
        assert hub.database_url is not None, f"{name} would use its own SQLite store"
        database = urlsplit(hub.database_url)
        assert database.scheme == "postgresql" and database.hostname == "postgres"
        assert database.port == 5432 and "PGPORT" not in postgres
        assert database.username == postgres["POSTGRES_USER"]
        assert database.password == OPERATOR_ENVIRONMENT["POSTGRES_PASSWORD"]
        assert database.path == f"/{postgres['POSTGRES_DB']}"
        # Per-container samples: a shared folder would mix processes with the same pid.
        assert monitor.metrics_dir is not None
        assert hub.data_dir not in monitor.metrics_dir.parents
        assert str(hub.systems_file).startswith("/app/"), "the Dockerfile copies config to /app"
        assert not hub.trusted_proxies, "nginx passes no client address nor certificate subject"


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
    for name in hub_containers(resolve(services, OPERATOR_ENVIRONMENT)):
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
        marker = {"POSTGRES_PASSWORD": "from-the-environment"}
        password = urlsplit(interpolate(environment["JGHUB_DATABASE_URL"], marker)).password
        assert password == marker["POSTGRES_PASSWORD"], "the store password is in the file"
    for service, variable in (
        ("rabbitmq", "RABBITMQ_DEFAULT_PASS"),
        ("postgres", "POSTGRES_PASSWORD"),
        ("grafana", "GF_SECURITY_ADMIN_PASSWORD"),
    ):
        value = services[service]["environment"][variable]
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", value), f"{service}.{variable}: {value}"


# -- ports, scraping and dashboards --------------------------------------------------------------


def test_the_hub_port_agrees_with_its_settings_and_prometheus(
    services: dict[str, dict[str, Any]],
) -> None:
    ports = set()
    for name, service in serves(services).items():
        hub, _ = _settings_from(hub_environment(service))
        assert hub.host == "0.0.0.0"
        assert {str(hub.port)} == {str(port) for port in service["expose"]}, name
        assert "ports" not in service, f"{name} is reached through nginx only"
        ports.add(hub.port)
    (port,) = ports
    # The image's default and HubSettings' default agree, so `docker run` without compose works.
    assert f"JGHUB_PORT={HubSettings.model_fields['port'].default}" in DOCKERFILE.read_text(
        encoding="utf-8"
    )
    jobs = _prometheus_jobs(services)
    route_paths = {getattr(r, "path", None) for r in metrics_router(CollectorRegistry()).routes}
    assert jobs["jghub"]["metrics_path"] in route_paths
    # Every replica on its own: through nginx Prometheus would see one or the other at random.
    serve_targets = sorted(f"{name}:{port}" for name in serves(services))
    assert sorted(_compose_targets(services, jobs["jghub"])) == serve_targets
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


# -- the entry point in front of the replicas -----------------------------------------------------


def nginx_directives(service: dict[str, Any]) -> tuple[Path, list[tuple[str, list[str]]]]:
    """The host file nginx reads and its directives in order, as (name, arguments)."""
    conf = _host_path_of(service, NGINX_CONF)
    assert conf.is_file(), f"nginx reads {NGINX_CONF}, mounted from {conf}, which is missing"
    text = re.sub(r"#[^\n]*", "", conf.read_text(encoding="utf-8"))
    directives = []
    for statement in re.split(r"[;{}]", text):
        words = statement.split()
        if words:
            directives.append((words[0], words[1:]))
    return conf, directives


def test_nginx_round_robins_every_serve_replica_and_nothing_else(
    services: dict[str, dict[str, Any]],
) -> None:
    _, directives = nginx_directives(services["nginx"])
    # `server host:port` in the upstream block (a `server {` block has no argument).
    upstreams = sorted(args[0] for name, args in directives if name == "server" and args)
    expected = []
    for name, service in serves(services).items():
        hub, _ = _settings_from(hub_environment(service))
        expected.append(f"{name}:{hub.port}")
    assert upstreams == sorted(expected)
    balancing = {"ip_hash", "hash", "sticky", "least_conn"} & {name for name, _ in directives}
    assert not balancing, f"any replica may take any request; no stickiness: {balancing}"
    (listen,) = [args[0] for name, args in directives if name == "listen"]
    assert int(listen) in container_ports(services["nginx"])
    # A request that reached a hub is not sent to the other one again (a push is not repeated).
    (retry,) = [args for name, args in directives if name == "proxy_next_upstream"]
    assert set(retry) <= {"error", "timeout"}, retry
    for name in serves(services):
        assert services["nginx"]["depends_on"][name], f"nginx starts before {name}"


def test_nginx_passes_no_client_identity_the_hubs_would_not_check(
    services: dict[str, dict[str, Any]],
) -> None:
    _, directives = nginx_directives(services["nginx"])
    headers = {args[0].lower(): args[1:] for name, args in directives if name == "proxy_set_header"}
    # The hubs never read X-Forwarded-For and believe X-Client-Subject only from
    # JGHUB_TRUSTED_PROXIES (unset here, see above): a client's own must not pass through.
    assert headers.get("x-forwarded-for") == ['""']
    assert headers.get("x-client-subject") == ['""']


def test_nginx_limits_are_no_looser_than_the_hubs(services: dict[str, dict[str, Any]]) -> None:
    _, directives = nginx_directives(services["nginx"])
    found = {name: args for name, args in directives}
    hub, _ = _settings_from(hub_environment(next(iter(serves(services).values()))))
    systems = load_systems(hub.systems_file.relative_to("/app")).systems
    largest = max(system.max_body_bytes or hub.max_body_bytes for system in systems)
    assert _nginx_size(found["client_max_body_size"][0]) == largest
    assert _nginx_seconds(found["client_header_timeout"][0]) <= hub.header_timeout_s
    assert _nginx_seconds(found["client_body_timeout"][0]) <= hub.body_timeout_s
    assert "limit_conn" in found and "limit_req" in found, "per-client limits belong to the proxy"


def _nginx_size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    return int(text[:-1]) * units[text[-1].lower()] if text[-1].isalpha() else int(text)


def _nginx_seconds(text: str) -> float:
    return float(text.removesuffix("s"))


def test_nginx_accepts_its_configuration(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    nginx = shutil.which("nginx") or next(
        (str(path) for path in (Path("/usr/sbin/nginx"),) if path.exists()), None
    )
    if nginx is None:
        skip_or_fail("nginx is not installed (apt-get install -y nginx-light)")
    conf, _ = nginx_directives(services["nginx"])
    # The replicas' names resolve only inside compose: the same file with loopback addresses.
    text = conf.read_text(encoding="utf-8")
    for name in serves(services):
        text = text.replace(f"{name}:", "127.0.0.1:")
    (tmp_path / "nginx.conf").write_text(text.replace("/tmp/nginx.pid", str(tmp_path / "pid")))
    done = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
         "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


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
