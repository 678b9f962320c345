"""Cost of access-token verification in servicekit, per call: uncached (header checks, key
lookup, RS256 signature and claims) and cached (a verified token seen again).

    uv run python bench/verify_tokens.py [--tokens 2000] [--repeats 200000]
"""

import argparse
import asyncio
import os
import platform
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from servicekit.jwks import KeySet, TokenVerifier
from servicekit.jwt import encode_access_token, generate_private_key_pem, load_signing_key

AUDIENCE, ISSUER = "stack", "http://127.0.0.1:8080/auth"


def make_tokens(count: int) -> tuple[list[str], dict[str, str]]:
    key = load_signing_key(generate_private_key_pem())
    now = int(time.time())
    tokens = [
        encode_access_token(
            {
                "iss": ISSUER,
                "aud": AUDIENCE,
                "sub": str(uuid.uuid4()),
                "sid": str(uuid.uuid4()),
                "jti": uuid.uuid4().hex,
                "iat": now,
                "exp": now + 900,
            },
            key,
        )
        for _ in range(count)
    ]
    return tokens, key.public_jwk


async def main(token_count: int, repeats: int) -> None:
    tokens, public_jwk = make_tokens(token_count)

    async def fetch() -> Sequence[Mapping[str, Any]]:
        return [public_jwk]

    keys = KeySet(fetch)
    await keys.refresh()
    verifier = TokenVerifier(keys, audience=AUDIENCE, issuer=ISSUER, cache_size=token_count + 1)

    started = time.perf_counter()
    for token in tokens:
        await verifier.verify(token)
    uncached_us = (time.perf_counter() - started) / token_count * 1e6

    hot = tokens[0]
    started = time.perf_counter()
    for _ in range(repeats):
        await verifier.verify(hot)
    cached_us = (time.perf_counter() - started) / repeats * 1e6

    print(
        f"machine: {platform.machine()} Python {platform.python_version()}, {os.cpu_count()} cores"
    )
    print(f"uncached verification: {uncached_us:8.1f} us/call over {token_count} distinct tokens")
    print(f"cached verification:   {cached_us:8.2f} us/call over {repeats} calls")
    print("targets: cached <= 20 us, uncached <= 200 us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=200_000)
    args = parser.parse_args()
    asyncio.run(main(args.tokens, args.repeats))
