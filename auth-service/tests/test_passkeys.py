"""Passkeys against a software authenticator of the test's own: real ES256 keys, real CBOR,
real signatures, so that every check py_webauthn and the service make can be made to fail.
(In Chromium, with the DevTools' virtual authenticator: tests/test_passkeys_in_chromium.py.)"""

import base64
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import cbor2
import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from sqlalchemy import text

from .conftest import Account, bearer, login, refresh_grant, register

ORIGIN = "http://127.0.0.1:8080"  # the test settings' PUBLIC_URL
RP_ID = "127.0.0.1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Authenticator:
    """One discoverable credential, as a platform authenticator keeps it."""

    user_handle: bytes = b""
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    counter: int = 0

    def _auth_data(self, rp_id: str, flags: int, extra: bytes = b"") -> bytes:
        rp_hash = hashlib.sha256(rp_id.encode()).digest()
        return rp_hash + bytes([flags]) + self.counter.to_bytes(4, "big") + extra

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin}).encode()

    def create(
        self, options: dict[str, Any], *, origin: str = ORIGIN, rp_id: str = RP_ID
    ) -> dict[str, Any]:
        self.user_handle = base64.urlsafe_b64decode(options["user"]["id"] + "==")
        numbers = self.key.public_key().public_numbers()
        cose_key = cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )
        attested = bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id
        auth_data = self._auth_data(rp_id, 0x01 | 0x04 | 0x40, attested + cose_key)
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
            },
            "clientExtensionResults": {},
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str = ORIGIN,
        rp_id: str = RP_ID,
        counter: int | None = None,
    ) -> dict[str, Any]:
        self.counter = self.counter + 1 if counter is None else counter
        auth_data = self._auth_data(rp_id, 0x01 | 0x04)
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(self.user_handle),
            },
            "clientExtensionResults": {},
        }


async def options(client: httpx.AsyncClient, path: str, token: str | None = None) -> dict[str, Any]:
    response = await client.post(path, headers=bearer(token) if token else {})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


async def add_passkey(
    client: httpx.AsyncClient, token: str, name: str = "laptop"
) -> tuple[Authenticator, dict[str, Any]]:
    authenticator = Authenticator()
    created = authenticator.create(await options(client, "/auth/passkeys/register/options", token))
    response = await client.post(
        "/auth/passkeys", json={"name": name, "credential": created}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    return authenticator, response.json()


async def sign_in(
    client: httpx.AsyncClient, authenticator: Authenticator, **how: Any
) -> httpx.Response:
    asserted = authenticator.get(await options(client, "/auth/passkeys/sign-in/options"), **how)
    return await client.post("/auth/passkeys/sign-in", json={"credential": asserted})


def refused(response: httpx.Response, status: int = 400, error: str = "passkey_refused") -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error, response.text


async def test_register_several_then_sign_in_without_a_password(
    client: httpx.AsyncClient, account: Account
) -> None:
    tokens = await login(client, account)
    options_sent = await options(client, "/auth/passkeys/register/options", tokens["access_token"])
    assert options_sent["rp"]["id"] == RP_ID
    assert options_sent["authenticatorSelection"]["residentKey"] == "required"
    laptop, _ = await add_passkey(client, tokens["access_token"], "laptop")
    phone, _ = await add_passkey(client, tokens["access_token"], "phone")
    listed = await client.get("/auth/users/me/passkeys", headers=bearer(tokens["access_token"]))
    assert [p["name"] for p in listed.json()] == ["laptop", "phone"]
    for authenticator in (laptop, phone, laptop):
        response = await sign_in(client, authenticator)
        assert response.status_code == 200, response.text
        me = await client.get("/auth/users/me", headers=bearer(response.json()["access_token"]))
        assert me.json()["id"] == account.id
    # A session like any other: the refresh token rotates.
    assert (await refresh_grant(client, response.json()["refresh_token"])).status_code == 200
    used = await client.get("/auth/users/me/passkeys", headers=bearer(tokens["access_token"]))
    assert all(p["last_used_at"] for p in used.json())


async def test_a_challenge_works_once(client: httpx.AsyncClient, account: Account) -> None:
    tokens = await login(client, account)
    authenticator = Authenticator()
    sent = await options(client, "/auth/passkeys/register/options", tokens["access_token"])
    created = authenticator.create(sent)
    body = {"name": "key", "credential": created}
    first = await client.post("/auth/passkeys", json=body, headers=bearer(tokens["access_token"]))
    assert first.status_code == 201
    refused(await client.post("/auth/passkeys", json=body, headers=bearer(tokens["access_token"])))
    asserted = authenticator.get(await options(client, "/auth/passkeys/sign-in/options"))
    assert (
        await client.post("/auth/passkeys/sign-in", json={"credential": asserted})
    ).status_code == 200
    refused(await client.post("/auth/passkeys/sign-in", json={"credential": asserted}))


async def test_another_users_registration_challenge_is_refused(client: httpx.AsyncClient) -> None:
    alice, bob = await register(client), await register(client)
    alice_tokens, bob_tokens = await login(client, alice), await login(client, bob)
    sent = await options(client, "/auth/passkeys/register/options", alice_tokens["access_token"])
    created = Authenticator().create(sent)
    response = await client.post(
        "/auth/passkeys",
        json={"name": "stolen", "credential": created},
        headers=bearer(bob_tokens["access_token"]),
    )
    refused(response)


async def test_another_origin_or_relying_party_is_refused(
    client: httpx.AsyncClient, account: Account
) -> None:
    tokens = await login(client, account)
    for how in ({"origin": "https://evil.example"}, {"rp_id": "evil.example"}):
        sent = await options(client, "/auth/passkeys/register/options", tokens["access_token"])
        response = await client.post(
            "/auth/passkeys",
            json={"name": "x", "credential": Authenticator().create(sent, **how)},
            headers=bearer(tokens["access_token"]),
        )
        refused(response)
    authenticator, _ = await add_passkey(client, tokens["access_token"])
    for how in ({"origin": "https://evil.example"}, {"rp_id": "evil.example"}):
        refused(await sign_in(client, authenticator, **how))


async def test_a_counter_that_goes_backwards_is_refused(
    client: httpx.AsyncClient, account: Account
) -> None:
    tokens = await login(client, account)
    authenticator, _ = await add_passkey(client, tokens["access_token"])
    assert (await sign_in(client, authenticator, counter=5)).status_code == 200
    refused(await sign_in(client, authenticator, counter=3))
    refused(await sign_in(client, authenticator, counter=5))
    assert (await sign_in(client, authenticator, counter=6)).status_code == 200


async def test_a_deleted_passkey_no_longer_signs_in(
    client: httpx.AsyncClient, account: Account
) -> None:
    tokens = await login(client, account)
    authenticator, passkey = await add_passkey(client, tokens["access_token"])
    deleted = await client.delete(
        f"/auth/users/me/passkeys/{passkey['id']}", headers=bearer(tokens["access_token"])
    )
    assert deleted.status_code == 204
    refused(await sign_in(client, authenticator))
    missing = await client.delete(
        f"/auth/users/me/passkeys/{passkey['id']}", headers=bearer(tokens["access_token"])
    )
    refused(missing, 404, "unknown_passkey")


async def test_the_last_way_to_sign_in_cannot_be_deleted(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    tokens = await login(client, account)
    _, passkey = await add_passkey(client, tokens["access_token"])
    async with app.state.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE auth.users SET password_hash = NULL WHERE id = :id"),
            {"id": uuid.UUID(account.id)},
        )
    response = await client.delete(
        f"/auth/users/me/passkeys/{passkey['id']}", headers=bearer(tokens["access_token"])
    )
    refused(response, 409, "last_sign_in_method")


async def test_malformed_responses_are_refused_not_crashed(client: httpx.AsyncClient) -> None:
    await options(client, "/auth/passkeys/sign-in/options")
    for credential in (
        {},
        {"response": "x"},
        {"response": {"clientDataJSON": "!!"}},
        {"response": {"clientDataJSON": b64url(b"[1]")}},
        {"response": {"clientDataJSON": b64url(b'{"challenge": 5}')}},
        {"rawId": "AAAA", "response": {"clientDataJSON": b64url(b'{"challenge": "AAAA"}')}},
        # Nested past Python's recursion limit, within the size cap: json.loads raises
        # RecursionError, not ValueError.
        {"response": {"clientDataJSON": b64url(b"[" * 2900)}},
    ):
        refused(await client.post("/auth/passkeys/sign-in", json={"credential": credential}))
    unregistered = Authenticator(user_handle=uuid.uuid4().bytes)
    refused(await sign_in(client, unregistered))
