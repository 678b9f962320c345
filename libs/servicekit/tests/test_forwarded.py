"""The service containers' entry point: which network forwarded headers are trusted from."""

import ipaddress
import os
import subprocess
import sys

import pytest

from servicekit.forwarded import subnet_of

# /proc/net/route of a container on two networks, as Docker sets it up: the default route and
# the backend network (172.19/16) on eth0, the edge network (172.18/16) on eth1.
ROUTES = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010013AC\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth1\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth0\t000013AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth2\t0010A8C0\t00000000\t0001\t0\t0\t0\t00F0FFFF\t0\t0\t0
"""


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("172.18.0.5", "172.18.0.0/16"),
        ("172.19.3.4", "172.19.0.0/16"),
        ("192.168.17.2", "192.168.16.0/20"),
    ],
)
def test_the_connected_network_holding_an_address(address: str, network: str) -> None:
    found = subnet_of(ipaddress.IPv4Address(address), ROUTES)
    assert found == ipaddress.IPv4Network(network)


def test_an_address_reached_only_through_a_gateway_is_not_trusted() -> None:
    with pytest.raises(LookupError):
        subnet_of(ipaddress.IPv4Address("10.1.2.3"), ROUTES)


def test_without_an_alias_the_command_runs_with_the_environment_as_it_is() -> None:
    env = {**os.environ, "FORWARDED_ALLOW_IPS": "10.9.8.7"}
    env.pop("FORWARDED_ALLOW_NETWORK_OF", None)
    printed = subprocess.run(
        [sys.executable, "-m", "servicekit.forwarded", "sh", "-c", "echo $FORWARDED_ALLOW_IPS"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert printed.stdout.strip() == "10.9.8.7"
