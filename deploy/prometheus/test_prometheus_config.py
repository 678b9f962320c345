"""Prometheus configuration and rules, checked by promtool in both of their forms."""

import shutil
import subprocess
from pathlib import Path

import pytest

from devstack.launcher import PROMETHEUS_CONFIG, StackConfig, native_prometheus_config

RULES = PROMETHEUS_CONFIG.parent / "rules"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus")
    return subprocess.run([found, *args], capture_output=True, text=True, check=False)


def test_compose_config_is_valid() -> None:
    result = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_native_config_is_valid_and_scrapes_every_replica(tmp_path: Path) -> None:
    config = StackConfig(realtime_ports=[9003, 9013], run_dir=tmp_path)
    native = tmp_path / "prometheus.yml"
    native.write_text(native_prometheus_config(PROMETHEUS_CONFIG.read_text(), config))
    result = promtool("check", "config", str(native))
    assert result.returncode == 0, result.stdout + result.stderr
    text = native.read_text()
    assert "127.0.0.1:9003" in text
    assert "127.0.0.1:9013" in text
    assert "dns_sd_configs" not in text


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", str(RULES / "stack.rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_and_stays_silent_as_its_unit_tests_say() -> None:
    result = promtool("test", "rules", str(RULES / "stack.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = RULES.joinpath("stack.test.yml").read_text()
    rules = RULES.joinpath("stack.rules.yml").read_text()
    for line in rules.splitlines():
        if line.strip().startswith("- alert:"):
            name = line.split(":", 1)[1].strip()
            assert f"alertname: {name}" in tested, f"{name} has no unit test"
