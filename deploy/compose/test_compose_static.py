"""The Docker side cannot run here (no engine): these checks keep it honest statically."""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from api_service.config import Settings as ApiSettings
from auth_service.config import Settings as AuthSettings
from devstack.launcher import TEMPLATE, TEMPLATE_VARIABLES, WEB_FILES
from realtime_service.config import Settings as RealtimeSettings

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SERVICES = {
    "auth": (AuthSettings, 8001),
    "api": (ApiSettings, 8002),
    "realtime": (RealtimeSettings, 8003),
}
# Read by the entry point (servicekit.forwarded), not by the settings classes.
UVICORN_VARIABLES = {"FORWARDED_ALLOW_NETWORK_OF"}


def tool(name: str) -> str:
    """A command installed in this virtualenv, found whether or not it is on PATH."""
    return str(Path(sys.executable).parent / name)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    assert validate(COMPOSE).returncode == 0, validate(COMPOSE).stdout
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE.read_text().replace("condition: service_healthy", "condition: soon", 1)
    )
    assert validate(broken).returncode != 0, "the validator accepts anything"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_service_builds_from_its_own_dockerfile(name: str) -> None:
    build = compose()["services"][name]["build"]
    assert (ROOT / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).is_file()
    assert build["dockerfile"] == f"{name}-service/Dockerfile"
    # The service and its runtime libraries only: no dev group, no development package (which
    # the build context leaves out as well; tests/test_compose.py checks the built image).
    dockerfile = (ROOT / build["dockerfile"]).read_text()
    assert f"uv sync --frozen --no-dev --no-editable --package {name}-service\n" in dockerfile
    assert "devstack" not in dockerfile
    assert "libs/devstack/" in (ROOT / ".dockerignore").read_text().splitlines()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_variable_a_service_gets_is_a_setting(name: str) -> None:
    settings_class, _ = SERVICES[name]
    known = {field.upper() for field in settings_class.model_fields} | UVICORN_VARIABLES
    given = set(compose()["services"][name]["environment"])
    assert given <= known, f"{name} gets variables its settings ignore: {given - known}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_ports_agree_between_dockerfile_compose_nginx_and_prometheus(name: str) -> None:
    _, port = SERVICES[name]
    dockerfile = (ROOT / f"{name}-service" / "Dockerfile").read_text()
    assert f"EXPOSE {port}" in dockerfile
    assert f"--port {port}" in dockerfile
    assert f"127.0.0.1:{port}/readyz" in dockerfile
    nginx_env = compose()["services"]["nginx"]["environment"]
    assert nginx_env[f"{name.upper()}_SERVERS"] == f"server edge-{name}:{port} resolve;"
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    job = next(job for job in prometheus["scrape_configs"] if job["job_name"] == name)
    assert job["dns_sd_configs"][0] == {"names": [name], "type": "A", "port": port}


def test_upstream_names_in_the_template_match_the_services() -> None:
    template = (ROOT / "deploy" / "nginx" / "nginx.conf.template").read_text()
    upstreams = set(re.findall(r"upstream (\w+) \{", template))
    assert upstreams == set(SERVICES)
    for name in SERVICES:
        assert f"proxy_pass http://{name};" in template
    jwks = compose()["services"]["api"]["environment"]["JWKS_URL"]
    assert jwks == f"http://auth:{SERVICES['auth'][1]}/auth/.well-known/jwks.json"


def test_the_nginx_container_gets_exactly_the_template_variables() -> None:
    environment = set(compose()["services"]["nginx"]["environment"])
    assert environment - {"NGINX_ENVSUBST_OUTPUT_DIR"} == set(TEMPLATE_VARIABLES)


def test_scalable_services_have_no_container_name_and_no_published_port() -> None:
    services = compose()["services"]
    for name in (*SERVICES, "postgres"):
        assert "container_name" not in services[name]
        assert "ports" not in services[name], f"{name} would not scale with a host port"


@pytest.mark.parametrize(
    "dockerfile",
    [*(f"{name}-service/Dockerfile" for name in sorted(SERVICES)), "deploy/gateway/Dockerfile"],
)
def test_dockerfiles_are_hadolint_clean(dockerfile: str) -> None:
    result = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", str(ROOT / dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


GATEWAY_DOCKERFILE = ROOT / "deploy" / "gateway" / "Dockerfile"
# The maintained stable nginx line (even minor numbers are nginx's stable branches).
GATEWAY_BASE = "nginx:1.30"


def test_the_gateway_is_built_from_the_repository_with_nothing_mounted() -> None:
    """Compose runs the gateway image, which holds the template, the page and the client,
    each copied from its one source: the files the native launcher serves (WEB_FILES)."""
    gateway = compose()["services"]["nginx"]
    assert "image" not in gateway
    assert (ROOT / gateway["build"]["context"]).resolve() == ROOT
    assert ROOT / gateway["build"]["dockerfile"] == GATEWAY_DOCKERFILE
    assert "volumes" not in gateway, "the image carries the gateway's files"
    copies = dict(re.findall(r"^COPY (\S+) (\S+)$", GATEWAY_DOCKERFILE.read_text(), re.MULTILINE))
    web_root = Path(gateway["environment"]["WEB_ROOT"])
    expected = {
        str(TEMPLATE.relative_to(ROOT)): "/etc/nginx/templates/nginx.conf.template",
        **{
            str(source.relative_to(ROOT)): str(web_root / name)
            for name, source in WEB_FILES.items()
        },
    }
    assert copies == expected
    # The build context keeps them, though .dockerignore leaves the rest of deploy/ and
    # clients/ out.
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for source in expected:
        assert f"!{source}" in ignored, source


IMAGE_DEFAULTS = {
    "postgres": ("POSTGRES_IMAGE", "postgres:16-bookworm"),
    "nginx-exporter": ("NGINX_EXPORTER_IMAGE", "nginx/nginx-prometheus-exporter:1.4"),
    "postgres-exporter": (
        "POSTGRES_EXPORTER_IMAGE",
        "prometheuscommunity/postgres-exporter:v0.17.1",
    ),
    "prometheus": ("PROMETHEUS_IMAGE", "prom/prometheus:v3.5.0"),
    "grafana": ("GRAFANA_IMAGE", "grafana/grafana:12.1.0"),
    "nats": ("NATS_IMAGE", "nats:2.11-alpine"),
}


def test_every_image_name_comes_from_a_variable_with_the_upstream_default() -> None:
    services = compose()["services"]
    # Every upstream image, a service added later included.
    assert {name for name, service in services.items() if "image" in service} == set(IMAGE_DEFAULTS)
    for name, (variable, default) in IMAGE_DEFAULTS.items():
        assert services[name]["image"] == f"${{{variable}:-{default}}}"
    for name in SERVICES:
        args = services[name]["build"]["args"]
        assert args == {"PYTHON_IMAGE": "${PYTHON_IMAGE:-python:3.11-slim-bookworm}"}
        dockerfile = (ROOT / f"{name}-service" / "Dockerfile").read_text()
        assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm\n" in dockerfile
        froms = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
        assert froms == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"], "both stages"
    gateway_build = services["nginx"]["build"]
    assert gateway_build["args"] == {"NGINX_IMAGE": f"${{NGINX_IMAGE:-{GATEWAY_BASE}}}"}
    gateway_dockerfile = GATEWAY_DOCKERFILE.read_text()
    assert f"ARG NGINX_IMAGE={GATEWAY_BASE}\n" in gateway_dockerfile
    assert re.findall(r"^FROM (\S+)", gateway_dockerfile, re.MULTILINE) == ["${NGINX_IMAGE}"]
    documented = (ROOT / ".env.example").read_text()
    assert f"NGINX_IMAGE={GATEWAY_BASE}\n" in documented
    for variable, _ in [*IMAGE_DEFAULTS.values(), ("PYTHON_IMAGE", "")]:
        assert f"{variable}=" in documented, f"{variable} is not in .env.example"


def test_only_the_gateway_is_published_beyond_this_machine() -> None:
    published = {
        name: service["ports"]
        for name, service in compose()["services"].items()
        if "ports" in service
    }
    assert published.pop("nginx") == ["${GATEWAY_PORT:-8080}:8080"]
    assert published == {
        "prometheus": ["127.0.0.1:${PROMETHEUS_PORT:-9090}:9090"],
        "grafana": ["127.0.0.1:${GRAFANA_PORT:-3000}:3000"],
        "mailcatcher": ["127.0.0.1:${MAIL_VIEWER_PORT:-8025}:8025"],
    }


def test_no_fixed_addresses_so_that_two_copies_share_an_engine() -> None:
    networks = compose()["networks"]
    assert all(network is None or "ipam" not in network for network in networks.values())
    services = compose()["services"]
    for service in services.values():
        attached = service.get("networks", [])
        if isinstance(attached, dict):
            assert all(not (how or {}).get("ipv4_address") for how in attached.values())
    # Forwarded headers are trusted from the edge network, which holds nothing but the
    # gateway and the services.
    members = {name for name, service in services.items() if "edge" in service["networks"]}
    assert members == {"nginx", *SERVICES}
    for name in SERVICES:
        alias = services[name]["networks"]["edge"]["aliases"]
        assert alias == [f"edge-{name}"]
        assert services[name]["environment"]["FORWARDED_ALLOW_NETWORK_OF"] == f"edge-{name}"


def test_postgres_is_healthy_only_once_it_accepts_tcp_connections() -> None:
    test = compose()["services"]["postgres"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"]
    assert test[test.index("-h") + 1] == "127.0.0.1"


def test_nginx_closes_its_streams_before_docker_kills_it() -> None:
    template = (ROOT / "deploy" / "nginx" / "nginx.conf.template").read_text()
    shutdown = re.search(r"worker_shutdown_timeout (\d+)s;", template)
    assert shutdown is not None
    grace = compose()["services"]["nginx"]["stop_grace_period"]
    assert int(grace.removesuffix("s")) >= int(shutdown.group(1)) + 3


MAIL_DOCKERFILE = ROOT / "deploy" / "local" / "mailcatcher.Dockerfile"


def default_of(value: str) -> str:
    """A compose value's default: `${SMTP_HOST:-mailcatcher}` -> `mailcatcher`."""
    match = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    assert match is not None, f"{value} does not come from a variable with a default"
    return match.group(1)


def test_auth_mails_the_development_mail_catcher_unless_told_otherwise() -> None:
    services = compose()["services"]
    auth = services["auth"]["environment"]
    assert auth["SMTP_HOST"] == "${SMTP_HOST:-mailcatcher}"
    assert "mailcatcher" in services
    assert auth["PUBLIC_URL"] == "${PUBLIC_URL:-http://localhost:8080}"
    # The catcher listens where auth sends, and its web view where compose publishes it.
    command = re.search(r"^CMD (\[.*\])$", MAIL_DOCKERFILE.read_text(), re.MULTILINE)
    assert command is not None
    arguments = yaml.safe_load(command.group(1))
    smtp_port = arguments[arguments.index("--port") + 1]
    http_port = arguments[arguments.index("--http-port") + 1]
    # Every address of its container: auth reaches it over the network, the host through the
    # port published on 127.0.0.1 only.
    assert arguments[arguments.index("--host") + 1] == "0.0.0.0"  # noqa: S104
    assert default_of(auth["SMTP_PORT"]) == smtp_port
    assert services["mailcatcher"]["ports"] == [
        f"127.0.0.1:${{MAIL_VIEWER_PORT:-8025}}:{http_port}"
    ]
    assert f"EXPOSE {smtp_port} {http_port}" in MAIL_DOCKERFILE.read_text()
    documented = (ROOT / ".env.example").read_text()
    for variable in ("SMTP_HOST=mailcatcher", f"SMTP_PORT={smtp_port}", "MAIL_VIEWER_PORT="):
        assert variable in documented


def test_the_mail_catcher_builds_on_the_services_base_image_with_the_locked_aiosmtpd() -> None:
    build = compose()["services"]["mailcatcher"]["build"]
    assert build["args"] == {"PYTHON_IMAGE": "${PYTHON_IMAGE:-python:3.11-slim-bookworm}"}
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == MAIL_DOCKERFILE
    dockerfile = MAIL_DOCKERFILE.read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm\n" in dockerfile
    assert re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE) == ["${PYTHON_IMAGE}"]
    assert "\nHEALTHCHECK " in dockerfile
    assert "\nUSER 10001\n" in dockerfile
    # The versions the tests run the catcher with: those of uv.lock.
    lock = (ROOT / "uv.lock").read_text()
    pinned = dict(re.findall(r"\b([\w-]+)==([\w.]+)", dockerfile))
    assert set(pinned) == {"aiosmtpd", "atpublic", "attrs"}
    for name, version in pinned.items():
        assert f'name = "{name}"\nversion = "{version}"\n' in lock, name
    result = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", str(MAIL_DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
