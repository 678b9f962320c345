"""Passkeys (WebAuthn, with py_webauthn): a signed-in user registers discoverable credentials;
anyone signs in with one and no password. Challenges are stored (as hashes) in PostgreSQL, so
any replica can finish a ceremony another began, and each works once."""

import base64
import binascii
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from auth_service.config import Settings
from auth_service.errors import PasskeyRefused, PasskeyTaken, UnknownPasskey
from auth_service.models import Passkey, User, WebAuthnChallenge
from auth_service.service import AuthService, TokenPair
from auth_service.sign_in_ways import ensure_another_way

PASSKEY_GRANT = "passkey"
REGISTER, SIGN_IN = "register", "sign_in"


def _b64url_decode(value: object) -> bytes:
    if not isinstance(value, str) or len(value) > 4096:
        raise PasskeyRefused("The response is malformed")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise PasskeyRefused("The response is malformed") from exc


def _challenge_of(credential: dict[str, Any]) -> bytes:
    """The challenge the browser signed, from the response's clientDataJSON."""
    response = credential.get("response")
    if not isinstance(response, dict):
        raise PasskeyRefused("The response is malformed")
    try:
        client_data = json.loads(_b64url_decode(response.get("clientDataJSON")))
    except (ValueError, RecursionError) as exc:  # RecursionError: brackets nested past the limit
        raise PasskeyRefused("The response is malformed") from exc
    if not isinstance(client_data, dict):
        raise PasskeyRefused("The response is malformed")
    return _b64url_decode(client_data.get("challenge"))


class Passkeys:
    def __init__(self, session: AsyncSession, settings: Settings, auth: AuthService) -> None:
        self.session = session
        self.settings = settings
        self.auth = auth
        public_url = urlsplit(settings.public_url)
        self.rp_id = public_url.hostname or "localhost"
        self.origin = f"{public_url.scheme}://{public_url.netloc}"

    async def registration_options(self, user: User) -> dict[str, Any]:
        existing = await self.session.scalars(
            select(Passkey.credential_id).where(Passkey.user_id == user.id)
        )
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name="stack",
            user_id=user.id.bytes,
            user_name=user.email,
            user_display_name=user.display_name,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=[PublicKeyCredentialDescriptor(id=cid) for cid in existing],
        )
        await self._store_challenge(options.challenge, REGISTER, user.id)
        return dict(json.loads(options_to_json(options)))

    async def register(self, user: User, name: str, credential: dict[str, Any]) -> Passkey:
        challenge = await self._take_challenge(credential, REGISTER, user.id)
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise PasskeyRefused(f"The passkey was refused: {exc}") from exc
        passkey: Passkey | None = await self.session.scalar(
            insert(Passkey)
            .values(
                id=uuid.uuid4(),
                credential_id=verified.credential_id,
                user_id=user.id,
                name=name,
                public_key=verified.credential_public_key,
                sign_count=verified.sign_count,
            )
            .on_conflict_do_nothing()
            .returning(Passkey)
        )
        if passkey is None:
            raise PasskeyTaken()
        return passkey

    async def sign_in_options(self) -> dict[str, Any]:
        # No allowCredentials: the authenticator offers the user's discoverable credentials.
        options = generate_authentication_options(
            rp_id=self.rp_id, user_verification=UserVerificationRequirement.PREFERRED
        )
        await self._store_challenge(options.challenge, SIGN_IN, None)
        return dict(json.loads(options_to_json(options)))

    async def sign_in(self, credential: dict[str, Any]) -> TokenPair:
        challenge = await self._take_challenge(credential, SIGN_IN, None)
        credential_id = _b64url_decode(credential.get("rawId", credential.get("id")))
        found = (
            await self.session.execute(
                select(Passkey, User)
                .join(User, User.id == Passkey.user_id)
                .where(Passkey.credential_id == credential_id)
            )
        ).first()
        if found is None:
            raise PasskeyRefused("This passkey is not registered")
        passkey, user = found
        response = credential.get("response")
        handle = response.get("userHandle") if isinstance(response, dict) else None
        if handle is not None and _b64url_decode(handle) != user.id.bytes:
            raise PasskeyRefused("The passkey belongs to another user")
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
                credential_public_key=passkey.public_key,
                # A counter that does not grow (when the authenticator keeps one) is a cloned
                # authenticator: WebAuthn §6.1.1 says refuse.
                credential_current_sign_count=passkey.sign_count,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise PasskeyRefused(f"The passkey was refused: {exc}") from exc
        if not user.is_active:
            raise PasskeyRefused("The account is deactivated")
        await self.session.execute(
            update(Passkey)
            # Two sign-ins at once: the one committing last must not lower the counter.
            .where(Passkey.id == passkey.id, Passkey.sign_count <= verified.new_sign_count)
            .values(sign_count=verified.new_sign_count, last_used_at=func.now())
        )
        return await self.auth.start_session(user.id, grant=PASSKEY_GRANT)

    async def list(self, user_id: uuid.UUID) -> list[Passkey]:
        rows = await self.session.scalars(
            select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.created_at)
        )
        return list(rows)

    async def delete(self, user: User, passkey_id: uuid.UUID) -> None:
        owned = await self.session.scalar(
            select(Passkey.id).where(Passkey.id == passkey_id, Passkey.user_id == user.id)
        )
        if owned is None:
            raise UnknownPasskey()
        await ensure_another_way(self.session, user)
        await self.session.execute(delete(Passkey).where(Passkey.id == passkey_id))

    async def _store_challenge(
        self, challenge: bytes, purpose: str, user_id: uuid.UUID | None
    ) -> None:
        ttl = timedelta(seconds=self.settings.passkey_challenge_ttl_seconds)
        await self.session.execute(
            insert(WebAuthnChallenge).values(
                challenge_hash=hashlib.sha256(challenge).digest(),
                purpose=purpose,
                user_id=user_id,
                expires_at=datetime.now(UTC) + ttl,
            )
        )

    async def _take_challenge(
        self, credential: dict[str, Any], purpose: str, user_id: uuid.UUID | None
    ) -> bytes:
        """The challenge the response signed, if we issued it for this purpose (and user) and
        it has not expired; deleted and committed at once, so it is never used again."""
        challenge = _challenge_of(credential)
        taken = await self.session.scalar(
            delete(WebAuthnChallenge)
            .where(
                WebAuthnChallenge.challenge_hash == hashlib.sha256(challenge).digest(),
                WebAuthnChallenge.purpose == purpose,
                WebAuthnChallenge.user_id.is_(None)
                if user_id is None
                else WebAuthnChallenge.user_id == user_id,
                WebAuthnChallenge.expires_at > func.now(),
            )
            .returning(WebAuthnChallenge.challenge_hash)
        )
        await self.session.commit()
        if taken is None:
            raise PasskeyRefused("The challenge is unknown, used or expired: start again")
        return challenge
