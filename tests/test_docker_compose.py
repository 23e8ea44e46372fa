"""docker/compose.yaml, checked as far as a machine without a Docker engine allows.

* ``docker-compose config`` (Debian's docker-compose v1 validates a file without an engine): the file is
  valid with the example env file, and refuses to start without the secrets;
* a YAML parse: the two nodes point at each other's sync ports, have their own database and Redis, share
  the same secret variable, publish 8000/8001 with a /healthz healthcheck, and every environment variable
  the file sets on a node is one the settings actually read.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is in requirements/dev.txt; run `make install`")

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker" / "compose.yaml"
ENV_EXAMPLE = ROOT / "docker" / "pair.env.example"
NODES = ("main", "backup")
#: variables read by something other than our settings modules
READ_ELSEWHERE = {"DJANGO_SETTINGS_MODULE", "BMS_OPERATOR_PASSWORD"}  # Django itself; manage.py createoperator
#: how the settings read the environment: os.environ.get("X"...), os.environ["X"], required("X"), flag("X"...)
ENV_READ = re.compile(
    r"""(?:os\.environ(?:\.get)?\(|os\.environ\[|\brequired\(|\bflag\()\s*["']([A-Z][A-Z0-9_]*)["']"""
)
INTERPOLATION = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


def settings_env_names() -> set[str]:
    sources = [*sorted((ROOT / "bms" / "settings").glob("*.py")), ROOT / "redundancy" / "config.py"]
    return {name for path in sources for name in ENV_READ.findall(path.read_text(encoding="utf-8"))}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env(services: dict, name: str) -> dict[str, str]:
    environment = services[name].get("environment") or {}
    assert isinstance(environment, dict), f"{name}: write environment as a mapping"
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def strings(value) -> list[str]:
    """Every string in a parsed YAML document (comments are not part of it)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return []


def our_image_services(services: dict) -> list[str]:
    return [name for name, service in services.items() if service.get("image", "").startswith("bms-node")]


def example_env() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def resolve(value: str, values: dict[str, str]) -> str:
    """Compose-style interpolation of ``${X}``, ``${X:-default}``, ``${X:?message}`` with ``values``."""

    def one(match: re.Match) -> str:
        name, rest = match.group(1), match.group(0)[2 + len(match.group(1)) : -1]
        if name in values and values[name] != "":
            return values[name]
        return rest[2:] if rest.startswith(":-") else ""

    return INTERPOLATION.sub(one, value)


# --- docker-compose ---------------------------------------------------------------------------------------------

needs_docker_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (Debian package docker-compose; .ci/run installs it)",
)


def docker_compose(*args: str, env_file: Path | None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key not in example_env()}
    command = ["docker-compose", "--project-directory", str(COMPOSE.parent), "-f", str(COMPOSE)]
    if env_file is not None:
        command += ["--env-file", str(env_file)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=60, env=environment, cwd=COMPOSE.parent
    )


@needs_docker_compose
def test_docker_compose_accepts_the_file_with_the_example_env():
    result = docker_compose("config", "-q", env_file=ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr


@needs_docker_compose
def test_docker_compose_accepts_the_witness_profile_and_lists_every_service():
    result = docker_compose("--profile", "witness", "config", "--services", env_file=ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) >= {"main", "backup", "simulator", "witness", "main-db", "backup-db"}


@needs_docker_compose
def test_docker_compose_refuses_to_run_without_the_secrets(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = docker_compose("config", "-q", env_file=empty)
    assert result.returncode != 0
    assert "pair.env" in result.stderr  # the message says where the secret belongs


# --- the file's content -----------------------------------------------------------------------------------------


def test_the_nodes_point_at_each_others_sync_ports(services):
    for node, partner in (NODES, NODES[::-1]):
        mine, theirs = env(services, node), env(services, partner)
        host, _, port = mine["BMS_PARTNER_ADDRESS"].rpartition(":")
        assert host == partner, f"{node} must dial the {partner} service"
        assert port == theirs["BMS_SYNC_PORT"], f"{node} must dial {partner}'s sync port"
        assert theirs["BMS_SYNC_HOST"] == "0.0.0.0", f"{partner} must listen for the sync link beyond loopback"
        assert mine["BMS_NODE_NAME"] == node and mine["BMS_PARTNER_NAME"] == partner
        assert set(services[node]["networks"]) & set(services[partner]["networks"]), "no network in common"
        public = resolve(mine["BMS_PUBLIC_URL"], example_env())
        assert resolve(theirs["BMS_PARTNER_URL"], example_env()) == public, f"{partner} must know {node}'s address"


def test_each_node_has_its_own_database_and_redis(services):
    seen = {}
    for node in NODES:
        variables = env(services, node)
        database = urlparse(resolve(variables["DATABASE_URL"], example_env()))
        redis = urlparse(variables["REDIS_URL"])
        assert database.scheme == "postgresql" and redis.scheme == "redis"
        assert "postgres" in services[database.hostname]["image"]
        assert "redis" in services[redis.hostname]["image"]
        for dependency in (database.hostname, redis.hostname):
            assert dependency in services[node]["depends_on"], f"{node} must wait for {dependency}"
        seen[node] = (database.hostname, redis.hostname)
    assert seen["main"][0] != seen["backup"][0], "the nodes share a database"
    assert seen["main"][1] != seen["backup"][1], "the nodes share a Redis"
    volumes = [services[seen[node][0]]["volumes"] for node in NODES]
    assert volumes[0] != volumes[1], "the databases share a volume"


def test_the_secrets_come_from_the_env_file_and_are_the_same_variable(services):
    example = example_env()
    users = [name for name in our_image_services(services) if "BMS_SYNC_SECRET" in env(services, name)]
    assert set(NODES) <= set(users)
    references = {env(services, name)["BMS_SYNC_SECRET"] for name in users}
    assert len(references) == 1, f"the nodes must use one sync secret variable, got {references}"
    assert INTERPOLATION.fullmatch(references.pop()).group(1) == "BMS_SYNC_SECRET"
    for node in NODES:
        assert INTERPOLATION.fullmatch(env(services, node)["DJANGO_SECRET_KEY"]), "a literal secret in compose.yaml"
        assert ":${" in env(services, node)["DATABASE_URL"], "the database password must come from the env file"
    required = {name for text in strings(services) for name in re.findall(r"\$\{([A-Z][A-Z0-9_]*):\?", text)}
    assert {"BMS_SYNC_SECRET", "DJANGO_SECRET_KEY"} <= required
    assert required <= set(example), f"pair.env.example lacks {required - set(example)}"
    for name in required:
        assert "CHANGE-ME" in example[name], f"pair.env.example must hold a placeholder for {name}, not a secret"
    assert len(example["BMS_SYNC_SECRET"]) >= 16  # passes the length check, so `config` and a first try work


def test_web_ports_and_healthchecks(services):
    published = {}
    for node in NODES:
        service = services[node]
        assert "--port 8000" in " ".join(service["command"]), f"{node} must serve on the container's port 8000"
        (mapping,) = service["ports"]
        host, _, container = str(mapping).partition(":")
        assert container == "8000"
        published[node] = host
        check = " ".join(service["healthcheck"]["test"])
        assert "http://127.0.0.1:8000/healthz" in check
    assert published == {"main": "8000", "backup": "8001"}


def test_every_variable_set_on_a_node_is_read_by_the_settings(services):
    known = settings_env_names() | READ_ELSEWHERE
    assert {"DATABASE_URL", "REDIS_URL", "BMS_SYNC_SECRET", "BMS_PARTNER_ADDRESS"} <= known  # the scan works
    for name in our_image_services(services):
        unknown = set(env(services, name)) - known
        assert not unknown, f"{name} sets {sorted(unknown)}, which no settings module reads"


def test_production_settings_get_what_they_require(services):
    production = (ROOT / "bms" / "settings" / "production.py").read_text(encoding="utf-8")
    required = set(re.findall(r"""\brequired\(\s*["']([A-Z0-9_]+)["']""", production))
    assert required, "the scan of production.py found nothing"
    for node in NODES:
        variables = env(services, node)
        assert variables["DJANGO_SETTINGS_MODULE"] == "bms.settings.production"
        for name in required:
            assert resolve(variables.get(name, ""), example_env()), f"{node} lacks {name}"
