"""Signing keys: which key signs, and which public keys the JWKS publishes."""

import asyncio
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth_service.config import Settings
from auth_service.models import SigningKeyRecord
from servicekit.jwks import KeySet
from servicekit.jwt import SigningKey, generate_private_key_pem, load_signing_key

# Serialises key activation across replicas that start together.
_KEY_ACTIVATION_LOCK = 0x61757468  # "auth"


class SigningKeys:
    """The key this replica signs with, and the key set that verifies (ours and other
    replicas' keys, including retired ones until every token they signed has expired).

    The public halves live in the database, which every replica shares: a replica that meets a
    `kid` it does not know reloads them, and the JWKS endpoint serves the same set.
    """

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._settings = settings
        self._sessionmaker = sessionmaker
        self._active: SigningKey | None = None
        self.keyset = KeySet(self._load_public_jwks, min_refresh_interval=5.0, max_age=60.0)

    @property
    def active(self) -> SigningKey:
        if self._active is None:
            raise RuntimeError("signing keys not started")
        return self._active

    async def start(self) -> None:
        self._active = await self._activate()
        await self.keyset.refresh()

    async def _activate(self) -> SigningKey:
        configured = self._settings.configured_signing_key()
        async with self._sessionmaker.begin() as session:
            await session.execute(select(func.pg_advisory_xact_lock(_KEY_ACTIVATION_LOCK)))
            stored_private_pem: str | None = None
            if configured is not None:
                key = load_signing_key(configured)
            else:
                stored_private_pem = await session.scalar(
                    select(SigningKeyRecord.private_pem)
                    .where(
                        SigningKeyRecord.private_pem.is_not(None),
                        SigningKeyRecord.retired_at.is_(None),
                    )
                    .order_by(SigningKeyRecord.created_at.desc())
                    .limit(1)
                )
                if stored_private_pem is None:
                    stored_private_pem = await asyncio.to_thread(generate_private_key_pem)
                key = load_signing_key(stored_private_pem)
            await session.execute(
                insert(SigningKeyRecord)
                .values(kid=key.kid, public_jwk=key.public_jwk, private_pem=stored_private_pem)
                .on_conflict_do_update(index_elements=["kid"], set_={"retired_at": None})
            )
            await session.execute(
                update(SigningKeyRecord)
                .where(SigningKeyRecord.kid != key.kid, SigningKeyRecord.retired_at.is_(None))
                .values(retired_at=func.now())
            )
        return key

    async def _load_public_jwks(self) -> Sequence[Mapping[str, Any]]:
        keep_for = timedelta(
            seconds=self._settings.access_token_ttl_seconds
            + self._settings.key_retirement_grace_seconds
        )
        async with self._sessionmaker() as session:
            rows = await session.scalars(
                select(SigningKeyRecord.public_jwk)
                .where(
                    or_(
                        SigningKeyRecord.retired_at.is_(None),
                        SigningKeyRecord.retired_at > func.now() - keep_for,
                    )
                )
                .order_by(SigningKeyRecord.created_at.desc())
            )
            return list(rows)
