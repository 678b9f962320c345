"""argon2id hashing, always in a worker thread: one hash is ~50 ms of CPU and 64 MiB at the
default cost (auth_service.config)."""

import asyncio
import secrets

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from auth_service.config import Settings


class PasswordHasher:
    def __init__(self, settings: Settings, concurrency: int | None = None) -> None:
        hasher = Argon2Hasher(
            time_cost=settings.password_hash_iterations,
            memory_cost=settings.password_hash_memory_kib,
        )
        self._hash = PasswordHash((hasher,))
        # Bounds the memory and CPU that a burst of logins can take (64 MiB per hash).
        self._slots = asyncio.Semaphore(concurrency or settings.password_hash_concurrency)
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hash.hash, password)

    async def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        """Whether it matches, and a new hash when the stored one uses outdated parameters."""
        async with self._slots:
            return await asyncio.to_thread(self._hash.verify_and_update, password, password_hash)

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of a real verification, so an unknown email answers as slowly as a
        wrong password does."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        await self.verify(password, self._dummy_hash)
