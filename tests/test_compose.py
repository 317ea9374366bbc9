"""docker-compose.yml, Dockerfile and .env.example, checked without a Docker engine.

The compose file cannot run here, so its structure is checked against the code: services,
the provider queues of `workers.celery_app`, start-up order, healthchecks, and that every
environment name it (or .env.example) uses is a field of `shared.settings.Settings`.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values
from pydantic import SecretStr

from shared.providers.catalog import check_default_provider
from shared.settings import MissingSecretKey, Settings
from workers.celery_app import queue_names

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"

# Read by docker compose only (interpolated into docker-compose.yml), never by the app.
COMPOSE_ONLY_VARIABLES = {"POSTGRES_PASSWORD"}
SETTINGS_FIELDS = set(Settings.model_fields)
BUILT_IN_QUEUES = {"echo", "ollama", "anthropic", "openai"}
WORKER_SERVICES = {f"worker-{queue}" for queue in BUILT_IN_QUEUES}
REQUIRED_SERVICES = {"postgres", "redis", "migrate", "api", "flower", "ollama", *WORKER_SERVICES}
SECRET_NAME = re.compile(r"(?:^|_)(?:KEY|SECRET|PASSWORD|TOKEN)$")
# ${VAR}, ${VAR:-default}, ${VAR:?error}; `$$` is compose's escape for a literal `$`.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services that run the Switchboard image (built from the Dockerfile)."""
    return {name: spec for name, spec in services.items() if "build" in spec}


def env_example() -> dict[str, str | None]:
    return dotenv_values(ENV_EXAMPLE)


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def consumed_queues(spec: dict[str, Any]) -> set[str]:
    args = argv(spec["command"])
    assert "-Q" in args, f"worker command without -Q: {args}"
    return set(args[args.index("-Q") + 1].split(","))


def depends_on(spec: dict[str, Any]) -> dict[str, str]:
    deps = spec.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (cond or {}).get("condition", "service_started") for name, cond in deps.items()}


def healthcheck_text(spec: dict[str, Any]) -> str:
    test = spec.get("healthcheck", {}).get("test")
    assert test, "no healthcheck"
    return test if isinstance(test, str) else " ".join(test)


def test_required_services_exist(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= REQUIRED_SERVICES, REQUIRED_SERVICES - set(services)


def test_every_app_service_reads_one_env_file(app_services: dict[str, dict[str, Any]]) -> None:
    assert {"api", "migrate", "flower", *WORKER_SERVICES} <= set(app_services)
    for name, spec in app_services.items():
        env_file = spec.get("env_file")
        assert env_file in (".env", [".env"]), f"{name}: env_file is {env_file!r}"
        environment = spec.get("environment", {})
        assert "postgres:5432" in environment["DATABASE_URL"], name
        assert environment["REDIS_URL"].startswith("redis://redis:6379"), name


def test_worker_services_cover_every_built_in_provider_queue(
    services: dict[str, dict[str, Any]],
) -> None:
    queues = set(
        queue_names(Settings(_env_file=None, ECHO_ENABLED=True, OPENAI_COMPATIBLE_PROVIDERS=[]))
    )
    assert queues == BUILT_IN_QUEUES  # a new built-in provider needs a worker service here
    workers = {name: spec for name, spec in services.items() if name.startswith("worker-")}
    covered: set[str] = set()
    for name, spec in workers.items():
        consumed = consumed_queues(spec)
        assert consumed == {name.removeprefix("worker-")}, f"{name} consumes {consumed}"
        covered |= consumed
    assert queues <= covered, f"no worker service for {queues - covered}"


def test_workers_run_the_celery_app_with_gevent_and_prefetch_one(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in WORKER_SERVICES:
        args = argv(services[name]["command"])
        assert args[:4] == ["celery", "-A", "workers.celery_app", "worker"], name
        assert args[args.index("-P") + 1] == "gevent", name
        assert args[args.index("-c") + 1].startswith("${WORKER_CONCURRENCY"), name
        assert "--prefetch-multiplier=1" in args, name
        assert "healthcheck" in services[name], name


def test_api_starts_after_healthy_stores_and_migrations(
    services: dict[str, dict[str, Any]],
) -> None:
    api = depends_on(services["api"])
    assert api.get("postgres") == "service_healthy"
    assert api.get("redis") == "service_healthy"
    assert api.get("migrate") == "service_completed_successfully"
    migrate = services["migrate"]
    command = " ".join(argv(migrate["command"]))
    assert command in ("switchboard migrate", "alembic upgrade head")
    assert depends_on(migrate).get("postgres") == "service_healthy"
    assert str(migrate.get("restart", "no")) == "no"  # a one-shot job
    assert "api.main:app" in argv(services["api"]["command"])
    for name in WORKER_SERVICES:
        assert depends_on(services[name]).get("migrate") == "service_completed_successfully"


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    assert "pg_isready" in healthcheck_text(services["postgres"])
    assert "redis-cli ping" in healthcheck_text(services["redis"])
    api_check = healthcheck_text(services["api"])
    assert "/healthz" in api_check and "urllib" in api_check


def test_redis_keeps_queued_jobs_across_restarts(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    args = argv(redis["command"])
    assert args[args.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert redis["image"].startswith("redis:7")
    postgres_version = services["postgres"]["image"].split(":")[1].split("-")[0]
    assert int(postgres_version) >= 15


def test_flower_on_port_5555(services: dict[str, dict[str, Any]]) -> None:
    flower = services["flower"]
    args = argv(flower["command"])
    assert args[:4] == ["celery", "-A", "workers.celery_app", "flower"]
    assert "--port=5555" in args
    assert any(str(port).endswith("5555:5555") for port in flower["ports"])


def test_ollama_is_optional(services: dict[str, dict[str, Any]]) -> None:
    ollama = services["ollama"]
    assert ollama["profiles"] == ["ollama"]
    assert ollama["image"].startswith("ollama/ollama")
    assert ollama.get("volumes")
    # Only services without a profile start by default; nothing else may need ollama.
    for name, spec in services.items():
        assert "ollama" not in depends_on(spec), f"{name} depends on the optional ollama"
        if name != "ollama":
            assert "profiles" not in spec, name


def test_compose_env_names_are_settings_fields(
    app_services: dict[str, dict[str, Any]],
) -> None:
    interpolated = set(INTERPOLATION.findall(COMPOSE_FILE.read_text()))
    assert interpolated, "expected ${...} variables in docker-compose.yml"
    unknown = interpolated - SETTINGS_FIELDS - COMPOSE_ONLY_VARIABLES
    assert not unknown, f"not Settings fields: {unknown}"
    for name, spec in app_services.items():
        environment = spec.get("environment", {})
        names = (
            set(environment)
            if isinstance(environment, dict)
            else {entry.split("=", 1)[0] for entry in environment}
        )
        assert names <= SETTINGS_FIELDS, f"{name}: not Settings fields: {names - SETTINGS_FIELDS}"
    # Compose reads .env for interpolation: every variable it needs is listed there.
    assert interpolated <= set(env_example())


def test_env_example_lists_exactly_the_settings() -> None:
    keys = set(env_example())
    assert not COMPOSE_ONLY_VARIABLES & SETTINGS_FIELDS
    assert keys - SETTINGS_FIELDS <= COMPOSE_ONLY_VARIABLES, keys - SETTINGS_FIELDS
    assert keys >= SETTINGS_FIELDS, f"missing from .env.example: {SETTINGS_FIELDS - keys}"


def test_env_example_loads_as_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS_FIELDS:
        monkeypatch.delenv(name, raising=False)
    # The API refuses the example as shipped: SECRET_KEY must be filled in first.
    with pytest.raises(MissingSecretKey, match="SECRET_KEY"):
        Settings(_env_file=ENV_EXAMPLE).secret_key  # noqa: B018
    settings = Settings(_env_file=ENV_EXAMPLE, SECRET_KEY="x" * 40)
    check_default_provider(settings)
    assert settings.ENVIRONMENT == "production"
    assert set(queue_names(settings)) == BUILT_IN_QUEUES


def test_no_secrets_in_the_files() -> None:
    for name, value in env_example().items():
        field = Settings.model_fields.get(name)
        is_secret_type = field is not None and field.annotation in (SecretStr, SecretStr | None)
        if is_secret_type or SECRET_NAME.search(name):
            assert not value, f".env.example sets the secret {name}"
    assert env_example()["OPENAI_COMPATIBLE_PROVIDERS"] == "[]"
    for path in (COMPOSE_FILE, ENV_EXAMPLE, DOCKERFILE):
        text = path.read_text()
        assert not re.search(r"\bsk-[A-Za-z0-9_-]{8,}", text), f"API key in {path.name}"


def test_compose_sets_no_secret_literally(services: dict[str, dict[str, Any]]) -> None:
    for name, spec in services.items():
        environment = spec.get("environment", {})
        assert isinstance(environment, dict), name
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:[?-][^}]*)?\}", str(value)), (
                    f"{name}: {key} is set literally; read it from .env"
                )
            # A password inside a URL must come from .env too.
            match = re.search(r"://[^:/@]+:([^@]+)@", str(value))
            if match:
                assert match.group(1).startswith("${"), f"{name}: {key} has a literal password"


def test_dockerfile_serves_the_api_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert re.search(r"^RUN pip install .*\.", text, re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    starts = re.findall(r"^(?:CMD|ENTRYPOINT)\s+(.+)$", text, re.MULTILINE)
    assert starts and "api.main:app" in starts[-1]


def test_dockerignore_keeps_env_out_of_the_image() -> None:
    ignored = set(DOCKERIGNORE.read_text().split())
    assert {".env", ".venv", ".git"} <= ignored
