"""A service container's entry point: trust `X-Forwarded-*` from the gateway's network only.

    python -m servicekit.forwarded COMMAND [ARGS...]

uvicorn trusts forwarded headers from the addresses in FORWARDED_ALLOW_IPS. In compose the
gateway has no fixed address (a fixed one would keep a second copy of the stack off the same
engine), but it shares one network, `edge`, with the three services and nothing else. When
FORWARDED_ALLOW_NETWORK_OF names this container on that network (its alias there), this sets
FORWARDED_ALLOW_IPS to that network's subnet, read from the kernel's routing table, then runs
COMMAND in its place. Without it, COMMAND runs with the environment as it is.
"""

import ipaddress
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

ROUTES = Path("/proc/net/route")


def _address(little_endian_hex: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(little_endian_hex, 16).to_bytes(4, "little"))


def subnet_of(address: ipaddress.IPv4Address, routes: str) -> ipaddress.IPv4Network:
    """The directly connected network that holds `address`, from /proc/net/route's text."""
    for line in routes.splitlines()[1:]:
        fields = line.split()
        destination, gateway, mask = fields[1], fields[2], fields[7]
        # A connected network has no gateway; the default route has a zero mask.
        if int(gateway, 16) != 0 or int(mask, 16) == 0:
            continue
        network = ipaddress.IPv4Network(f"{_address(destination)}/{_address(mask)}")
        if address in network:
            return network
    raise LookupError(f"no connected network holds {address}")


def trusted_network(alias: str) -> ipaddress.IPv4Network:
    address = ipaddress.IPv4Address(socket.gethostbyname(alias))
    return subnet_of(address, ROUTES.read_text())


def main(argv: Sequence[str]) -> None:
    if not argv:
        sys.exit("usage: python -m servicekit.forwarded COMMAND [ARGS...]")
    alias = os.environ.get("FORWARDED_ALLOW_NETWORK_OF")
    if alias:
        os.environ["FORWARDED_ALLOW_IPS"] = str(trusted_network(alias))
    # The container's command replaces this process, so that it gets Docker's signals.
    os.execvp(argv[0], list(argv))  # noqa: S606


if __name__ == "__main__":
    main(sys.argv[1:])
