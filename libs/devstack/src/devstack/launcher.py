"""The native stack: the three services and nginx, from this checkout, without Docker.

    python -m devstack.launcher dev     # foreground; Ctrl-C stops everything
    python -m devstack.launcher up      # background; returns once the gateway answers
    python -m devstack.launcher down

The end-to-end tests start the same stack through `NativeStack`. Every address comes from the
environment (defaults in docs/contract.md §1): GATEWAY_PORT (8080), STATUS_PORT (8081),
AUTH_PORT (8001), API_PORT (8002), REALTIME_PORTS (8003, or a comma list for several replicas),
DATABASE_URL, STACK_RUN_DIR (var/stack). STACK_MONITORING=1 also starts Prometheus
(PROMETHEUS_PORT, 9090) and the nginx and PostgreSQL exporters (NGINX_EXPORTER_PORT 9113,
POSTGRES_EXPORTER_PORT 9187); the default starts them when they are installed. STACK_NATS=1 also
starts a nats-server (Debian's `nats-server` package) on 127.0.0.1:NATS_PORT (4222) and gives
api and realtime its NATS_URL; without it events are signalled through PostgreSQL alone. Without
SMTP_HOST, a local mail catcher (deploy/local/mailcatcher.py, SMTP on MAIL_CATCHER_PORT, default
a free port) saves every message auth-service sends as an .eml file under STACK_RUN_DIR/mail/
and shows them at http://127.0.0.1:MAIL_VIEWER_PORT (8025)."""

import argparse
import asyncio
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import asyncpg
import httpx
import yaml

from devstack import ROOT
from devstack.testing import free_port
from eventlog import MIGRATIONS as LOG_MIGRATIONS
from servicekit.db import asyncpg_dsn
from servicekit.migrate import main as migrate

TEMPLATE = ROOT / "deploy" / "nginx" / "nginx.conf.template"
# What the gateway serves under /web/, by file name, from each file's one source: the gateway
# image copies the same files in (deploy/gateway/Dockerfile).
WEB_FILES = {
    "index.html": ROOT / "deploy" / "web" / "index.html",
    "app.js": ROOT / "deploy" / "web" / "app.js",
    "style.css": ROOT / "deploy" / "web" / "style.css",
    "stack-client.js": ROOT / "clients" / "js" / "index.js",
}
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
# api-service's before the log's (which adopts the tables api's history created), then realtime's.
MIGRATIONS = [
    ROOT / "auth-service" / "migrations",
    ROOT / "api-service" / "migrations",
    LOG_MIGRATIONS,
    ROOT / "realtime-service" / "migrations",
]
TEMPLATE_VARIABLES = (
    "GATEWAY_LISTEN",
    "STATUS_LISTEN",
    "RUN_DIR",
    "ERROR_LOG",
    "ACCESS_LOG",
    "RESOLVER",
    "WEB_ROOT",
    "AUTH_SERVERS",
    "API_SERVERS",
    "REALTIME_SERVERS",
    "TOKEN_RATE",
    "REGISTER_RATE",
    "MAIL_RATE",
)


class LauncherError(Exception):
    """Something the developer has to fix, with the message saying how."""


def render_template(template: str, variables: Mapping[str, str]) -> str:
    """Substitute `${NAME}` for the listed names only, as envsubst does with an explicit list:
    nginx's own `$variables` are left alone."""
    missing = set(TEMPLATE_VARIABLES) - set(variables)
    if missing:
        raise ValueError(f"missing template variables: {sorted(missing)}")
    for name in TEMPLATE_VARIABLES:
        template = template.replace("${" + name + "}", variables[name])
    return template


def link_web_root(directory: Path) -> None:
    """`directory` made the gateway's web root: a symbolic link to each file's source, so that
    an edit shows on the next reload and no copy is kept."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, source in WEB_FILES.items():
        link = directory / name
        link.unlink(missing_ok=True)
        link.symlink_to(source)


def servers(ports: Sequence[int]) -> str:
    return " ".join(f"server 127.0.0.1:{port};" for port in ports)


@dataclass
class StackConfig:
    gateway_port: int = 8080
    status_port: int = 8081
    auth_port: int = 8001
    api_port: int = 8002
    realtime_ports: list[int] = field(default_factory=lambda: [8003])
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/stack"
    run_dir: Path = ROOT / "var" / "stack"
    extra_env: dict[str, str] = field(default_factory=dict)
    monitoring: bool = False
    prometheus_port: int = 9090
    nginx_exporter_port: int = 9113
    postgres_exporter_port: int = 9187
    nats: bool = False
    nats_port: int = 4222
    # The development mail catcher's SMTP and web ports (0: a free one); not started when
    # SMTP_HOST is set. From the environment the web view defaults to 8025, the address a
    # developer opens; test stacks, several at once, take free ports.
    mail_catcher_port: int = 0
    mail_viewer_port: int = 0
    # Production-like by default; the live observability test scrapes every second.
    scrape_interval: str = "15s"
    # The gateway's per-address limits on logins, sign-ups and mail requests (nginx's rates).
    # Test stacks raise them so that sign-ups are not paced; a flood is still refused.
    token_rate: str = "5r/s"
    register_rate: str = "2r/s"
    mail_rate: str = "1r/s"
    # Where browsers reach the gateway (auth's PUBLIC_URL: mail links, the OpenID callback, the
    # passkeys' relying party); default the gateway's own address. Passkeys need a host name:
    # WebAuthn takes no IP address as a relying party (http://localhost:<port> then).
    public_url: str | None = None
    # How long a process may take to become ready (several importing at once on a loaded
    # machine can take longer than the default; benchmarks give more).
    ready_within: float = 30.0

    @classmethod
    def from_env(cls) -> "StackConfig":
        env = os.environ
        return cls(
            gateway_port=int(env.get("GATEWAY_PORT", 8080)),
            status_port=int(env.get("STATUS_PORT", 8081)),
            auth_port=int(env.get("AUTH_PORT", 8001)),
            api_port=int(env.get("API_PORT", 8002)),
            realtime_ports=[int(p) for p in env.get("REALTIME_PORTS", "8003").split(",")],
            database_url=env.get("DATABASE_URL", cls.database_url),
            run_dir=Path(env.get("STACK_RUN_DIR", ROOT / "var" / "stack")),
            # Default: with Prometheus and the exporters when they are installed.
            monitoring=env.get("STACK_MONITORING", "auto") == "1"
            or (
                env.get("STACK_MONITORING", "auto") == "auto"
                and shutil.which("prometheus") is not None
            ),
            prometheus_port=int(env.get("PROMETHEUS_PORT", 9090)),
            nginx_exporter_port=int(env.get("NGINX_EXPORTER_PORT", 9113)),
            postgres_exporter_port=int(env.get("POSTGRES_EXPORTER_PORT", 9187)),
            nats=env.get("STACK_NATS") == "1",
            nats_port=int(env.get("NATS_PORT", 4222)),
            mail_catcher_port=int(env.get("MAIL_CATCHER_PORT", 0)),
            mail_viewer_port=int(env.get("MAIL_VIEWER_PORT", 8025)),
        )

    @property
    def catches_mail(self) -> bool:
        """Whether the launcher runs the mail catcher: only when no SMTP server is given."""
        return not (self.extra_env.get("SMTP_HOST") or os.environ.get("SMTP_HOST"))

    @property
    def web_root(self) -> Path:
        """Where nginx finds the demo page and the client (`link_web_root` makes it)."""
        return self.run_dir / "web"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def nginx_variables(self) -> dict[str, str]:
        return {
            "GATEWAY_LISTEN": f"127.0.0.1:{self.gateway_port}",
            "STATUS_LISTEN": f"127.0.0.1:{self.status_port}",
            "RUN_DIR": str(self.run_dir),
            "ERROR_LOG": str(self.run_dir / "nginx-error.log"),
            "ACCESS_LOG": str(self.run_dir / "nginx-access.log"),
            "RESOLVER": "",
            "WEB_ROOT": str(self.web_root),
            "AUTH_SERVERS": servers([self.auth_port]),
            "API_SERVERS": servers([self.api_port]),
            "REALTIME_SERVERS": servers(self.realtime_ports),
            "TOKEN_RATE": self.token_rate,
            "REGISTER_RATE": self.register_rate,
            "MAIL_RATE": self.mail_rate,
        }


def native_prometheus_config(compose_config: str, config: StackConfig) -> str:
    """The compose prometheus.yml with the native stack's addresses: each job keeps its name,
    rules and settings; only where its targets are changes."""
    parsed = yaml.safe_load(compose_config)
    parsed["global"]["scrape_interval"] = config.scrape_interval
    parsed["global"]["evaluation_interval"] = config.scrape_interval
    targets = {
        "auth": [config.auth_port],
        "api": [config.api_port],
        "realtime": config.realtime_ports,
        "nginx": [config.nginx_exporter_port],
        "postgres": [config.postgres_exporter_port],
        "prometheus": [config.prometheus_port],
    }
    for job in parsed["scrape_configs"]:
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [
            {"targets": [f"127.0.0.1:{port}" for port in targets[job["job_name"]]]}
        ]
    rules_dir = PROMETHEUS_CONFIG.parent
    parsed["rule_files"] = [str(rules_dir / pattern) for pattern in parsed["rule_files"]]
    return str(yaml.safe_dump(parsed, sort_keys=False))


def binary(name: str, package: str) -> str:
    # Debian installs nginx in /usr/sbin, which is not on every user's PATH.
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise LauncherError(f"{name} is not installed: apt-get install -y {package} (Debian)")
    return found


def nginx_binary() -> str:
    return binary("nginx", "nginx-light")


def nginx_directives() -> str:
    """nginx's global directives beyond the template's. Started by root, nginx runs its workers
    as `nobody`, who cannot read a checkout only its owner can (a clone under /root, mode 700):
    there they run as the user who started the stack."""
    if os.geteuid() != 0:
        return "daemon off;"
    return f"daemon off; user {pwd.getpwuid(os.getuid()).pw_name};"


async def check_postgres(database_url: str) -> None:
    try:
        connection = await asyncpg.connect(asyncpg_dsn(database_url, "postgres"), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        raise LauncherError(
            f"PostgreSQL is not reachable for {database_url} ({exc}). Start it, e.g."
            " pg_ctlcluster --skip-systemctl-redirect 15 main start, or set DATABASE_URL."
        ) from exc
    await connection.close()


class NativeStack:
    """Starts and stops the native stack; used by `dev`/`up` and by the end-to-end tests."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        # How to tell that a process is serving again after a restart, by process name.
        self.readiness: dict[str, Callable[[], Awaitable[None]]] = {}
        # The mail catcher's web view, once started (None with SMTP_HOST set).
        self.mail_viewer_url: str | None = None

    async def start(self) -> None:
        config = self.config
        nginx = nginx_binary()
        await check_postgres(config.database_url)
        config.run_dir.mkdir(parents=True, exist_ok=True)
        await migrate(MIGRATIONS, config.database_url)
        jwks = f"http://127.0.0.1:{config.auth_port}/auth/.well-known/jwks.json"
        bus_env = await self._start_nats() if config.nats else {}
        mail_env = await self._start_mail_catcher() if config.catches_mail else {}
        auth_env = {"PUBLIC_URL": config.public_url or config.gateway_url, **mail_env}
        self._service("auth", "auth_service.main:app", config.auth_port, auth_env)
        await self._wait_ready(config.auth_port)
        api_env = {"JWKS_URL": jwks, **bus_env}
        self._service("api", "api_service.main:app", config.api_port, api_env)
        # Browsers on the gateway's address may open WebSockets.
        origins = json.dumps([config.gateway_url, f"http://localhost:{config.gateway_port}"])
        realtime_env = {"JWKS_URL": jwks, "ALLOWED_ORIGINS": origins, **bus_env}
        for index, port in enumerate(config.realtime_ports):
            self._service(f"realtime-{index + 1}", "realtime_service.main:app", port, realtime_env)
        for port in [config.api_port, *config.realtime_ports]:
            await self._wait_ready(port)
        link_web_root(config.web_root)
        conf = config.run_dir / "nginx.conf"
        conf.write_text(render_template(TEMPLATE.read_text(), config.nginx_variables()))
        check = await asyncio.to_thread(
            subprocess.run, [nginx, "-t", "-q", "-c", str(conf)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise LauncherError(f"nginx rejected its configuration:\n{check.stderr}")
        self._spawn("nginx", [nginx, "-c", str(conf), "-g", nginx_directives()], {})
        jwks_through_gateway = f"{config.gateway_url}/auth/.well-known/jwks.json"
        self.readiness["nginx"] = partial(self._wait_http, jwks_through_gateway)
        await self.readiness["nginx"]()
        if config.monitoring:
            await self._start_monitoring()

    async def _start_nats(self) -> dict[str, str]:
        """A nats-server for the event bus; the environment that points services at it."""
        port = self.config.nats_port
        nats = binary("nats-server", "nats-server")
        self._spawn("nats", [nats, "-a", "127.0.0.1", "-p", str(port)], {})
        self.readiness["nats"] = partial(self._wait_port, port, "nats-server")
        await self.readiness["nats"]()
        return {"NATS_URL": f"nats://127.0.0.1:{port}"}

    async def _start_mail_catcher(self) -> dict[str, str]:
        """The development mail catcher; the environment that points auth-service at it."""
        port = self.config.mail_catcher_port or free_port()
        viewer_port = self.config.mail_viewer_port or free_port()
        mail_dir = self.config.run_dir / "mail"
        catcher = ROOT / "deploy" / "local" / "mailcatcher.py"
        command = [
            sys.executable,
            str(catcher),
            "--port",
            str(port),
            "--http-port",
            str(viewer_port),
            "--dir",
            str(mail_dir),
        ]
        self._spawn("mailcatcher", command, {})
        # The catcher opens its web view before its SMTP port: the wait below covers both.
        self.mail_viewer_url = f"http://127.0.0.1:{viewer_port}"
        self.readiness["mailcatcher"] = partial(self._wait_port, port, "the mail catcher")
        await self.readiness["mailcatcher"]()
        return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port)}

    async def _wait_port(self, port: int, what: str) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if time.monotonic() > deadline:
                    raise LauncherError(f"{what} did not listen on port {port}") from None
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return

    async def _start_monitoring(self) -> None:
        config = self.config
        prometheus_yml = config.run_dir / "prometheus.yml"
        prometheus_yml.write_text(native_prometheus_config(PROMETHEUS_CONFIG.read_text(), config))
        self._spawn(
            "nginx-exporter",
            [
                binary("prometheus-nginx-exporter", "prometheus-nginx-exporter"),
                f"-nginx.scrape-uri=http://127.0.0.1:{config.status_port}/stub_status",
                f"-web.listen-address=127.0.0.1:{config.nginx_exporter_port}",
            ],
            {},
        )
        self._spawn(
            "postgres-exporter",
            [
                binary("prometheus-postgres-exporter", "prometheus-postgres-exporter"),
                f"--web.listen-address=127.0.0.1:{config.postgres_exporter_port}",
            ],
            {"DATA_SOURCE_NAME": asyncpg_dsn(config.database_url) + "?sslmode=disable"},
        )
        self._spawn(
            "prometheus",
            [
                binary("prometheus", "prometheus"),
                f"--config.file={prometheus_yml}",
                f"--storage.tsdb.path={config.run_dir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{config.prometheus_port}",
                "--web.enable-lifecycle",
            ],
            {},
        )
        await self._wait_http(f"http://127.0.0.1:{config.prometheus_port}/-/ready")

    def _service(self, name: str, app: str, port: int, env: dict[str, str]) -> None:
        command = [
            sys.executable,
            "-m",
            "servicekit.serve",
            app,
            "--port",
            str(port),
        ]
        env = {"DATABASE_URL": self.config.database_url, "SERVICE_NAME": name, **env}
        self.readiness[name] = partial(self._wait_ready, port)
        self._spawn(name, command, env)

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.commands[name] = (command, env)
        log = (self.config.run_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command, env={**os.environ, **self.config.extra_env, **env}, stdout=log, stderr=log
        )
        log.close()
        self.processes.append((name, process))

    async def _wait_ready(self, port: int) -> None:
        await self._wait_http(f"http://127.0.0.1:{port}/readyz")

    async def _wait_http(self, url: str) -> None:
        within = self.config.ready_within
        deadline = time.monotonic() + within
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                for name, process in self.processes:
                    if process.poll() is not None:
                        log = self.config.run_dir / f"{name}.log"
                        raise LauncherError(f"{name} exited; see {log}")
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise LauncherError(f"{url} did not answer within {within:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout
        for _, process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    async def restart(self, name: str, within: float = 15.0) -> None:
        """Stops one process (SIGTERM, as a deploy does) and starts it again with the same
        command and environment; returns once it is serving again."""
        process = self.process(name)
        # Out of the list first: a concurrent wait for readiness must not take this deliberate
        # stop for a crash.
        self.processes = [(n, p) for n, p in self.processes if p is not process]
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, within)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
        command, env = self.commands[name]
        self._spawn(name, command, env)
        if name in self.readiness:
            await self.readiness[name]()

    def process(self, name: str) -> subprocess.Popen[bytes]:
        return next(process for n, process in self.processes if n == name)


def print_urls(config: StackConfig, mail_viewer_url: str | None) -> None:
    url = config.gateway_url
    print(f"gateway   {url}")
    for prefix in ("auth", "api", "realtime"):
        print(f"{prefix + ' docs':<9} {url}/{prefix}/docs")
    if mail_viewer_url:
        print(f"mail      {mail_viewer_url}")
    if config.monitoring:
        print(f"prometheus http://127.0.0.1:{config.prometheus_port}")
    print(f"logs      {config.run_dir}")


async def dev(config: StackConfig) -> None:
    stack = NativeStack(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stack.start()
        print_urls(config, stack.mail_viewer_url)
        (config.run_dir / "stack.pid").write_text(str(os.getpid()))
        await stopping.wait()
    finally:
        stack.stop()
        (config.run_dir / "stack.pid").unlink(missing_ok=True)


def up(config: StackConfig) -> None:
    config.run_dir.mkdir(parents=True, exist_ok=True)
    log = (config.run_dir / "launcher.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.launcher", "dev"],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LauncherError(f"the stack did not start; see {config.run_dir / 'launcher.log'}")
        if (config.run_dir / "stack.pid").exists():
            # The web view's port is known here unless it was left to the child (0).
            viewer = config.catches_mail and config.mail_viewer_port
            print_urls(config, f"http://127.0.0.1:{viewer}" if viewer else None)
            return
        time.sleep(0.2)
    raise LauncherError("the stack did not start within 60 s")


def down(config: StackConfig) -> None:
    pid_file = config.run_dir / "stack.pid"
    if not pid_file.exists():
        print("the native stack is not running")
        return
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink()
        return
    deadline = time.monotonic() + 20
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    print("stopped")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.launcher",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("command", choices=["dev", "up", "down"])
    command = parser.parse_args(argv).command
    config = StackConfig.from_env()
    try:
        if command == "dev":
            asyncio.run(dev(config))
        elif command == "up":
            up(config)
        else:
            down(config)
    except LauncherError as exc:
        sys.exit(f"launcher: {exc}")


if __name__ == "__main__":
    main()
