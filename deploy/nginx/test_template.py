"""The gateway template on its own: rendered as the launcher renders it, checked by nginx."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.launcher import ROOT, TEMPLATE, StackConfig, nginx_binary, render_template


def rendered(tmp_path: Path) -> str:
    config = StackConfig(run_dir=tmp_path, realtime_ports=[9003, 9013])
    return render_template(TEMPLATE.read_text(), config.nginx_variables())


def test_only_the_listed_variables_are_substituted(tmp_path: Path) -> None:
    text = rendered(tmp_path)
    assert "${" not in text
    for nginx_variable in ("$request_id", "$http_upgrade", "$binary_remote_addr", "$uri"):
        assert nginx_variable in text
    log_format = text[text.index("log_format json") : text.index("access_log")]
    for leak in ("$request_uri", "$args", "$query_string", "$http_authorization", "$request "):
        assert leak not in log_format, f"{leak} would put tickets or tokens in the access log"
    assert re.search(r"upstream realtime \{[^}]*9003;[^}]*9013;", text), "both replicas"


def test_a_missing_variable_is_an_error() -> None:
    with pytest.raises(ValueError, match="missing"):
        render_template(TEMPLATE.read_text(), {"GATEWAY_LISTEN": "127.0.0.1:1"})


def test_nginx_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    config = tmp_path / "nginx.conf"
    config.write_text(rendered(tmp_path))
    check = subprocess.run(
        [nginx_binary(), "-t", "-c", str(config)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr


NGINX_DEFAULT_UPSTREAM_KEEPALIVE = 60
# Every place that starts a service; each must go through servicekit.serve, which sets the
# keep-alive below, and none may start uvicorn with flags of its own.
SERVICE_STARTERS = [
    ROOT / "Makefile",
    ROOT / "libs" / "devstack" / "src" / "devstack" / "launcher.py",
    ROOT / "libs" / "devstack" / "src" / "devstack" / "testing.py",
    ROOT / "deploy" / "helm" / "stack" / "templates" / "services.yaml",
    *(ROOT / f"{name}-service" / "Dockerfile" for name in ("auth", "api", "realtime")),
]


def uvicorn_keep_alive_seconds() -> float:
    """The keep-alive of the uvicorn config the services run with, read in a process of its
    own: building a `uvicorn.Config` applies uvicorn's logging config to the whole process,
    which would take its loggers away from the log tests that run after this one."""
    script = (
        "from servicekit import serve\n"
        "print(serve.config('m:app', '127.0.0.1', 1).timeout_keep_alive)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return float(done.stdout)


def test_uvicorn_keeps_idle_connections_longer_than_the_gateway() -> None:
    """The race above is too narrow to hit on demand; this is the rule that prevents it, for
    every way the services are started."""
    template = (ROOT / "deploy" / "nginx" / "nginx.conf.template").read_text()
    upstreams = re.findall(r"upstream \w+ \{(.*?)\}", template, re.DOTALL)
    assert len(upstreams) == 3
    timeouts = [
        int(m.group(1)) if (m := re.search(r"keepalive_timeout (\d+)s;", block)) else None
        for block in upstreams
    ]
    nginx = max(t if t is not None else NGINX_DEFAULT_UPSTREAM_KEEPALIVE for t in timeouts)
    assert uvicorn_keep_alive_seconds() > nginx
    for starter in SERVICE_STARTERS:
        text = starter.read_text()
        assert "servicekit.serve" in text, starter
        assert not re.search(r"\buvicorn\b[\s\",-]+(?:\w+_service\.main|-m)", text), starter
