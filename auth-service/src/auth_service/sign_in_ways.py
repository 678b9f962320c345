"""How many ways an account has to sign in: a password, linked providers, passkeys. The last
one is never removed."""

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.errors import LastSignInMethod
from auth_service.models import Passkey, ProviderIdentity, User


async def ensure_another_way(session: AsyncSession, user: User) -> None:
    """Raises unless the account can still sign in once one of its ways is removed. Locks the
    account's row first: two removals at once must not both see the other way."""
    await session.execute(select(User.id).where(User.id == user.id).with_for_update())
    identities = await session.scalar(
        select(func.count())
        .select_from(ProviderIdentity)
        .where(ProviderIdentity.user_id == user.id)
    )
    passkeys = await session.scalar(
        select(func.count()).select_from(Passkey).where(Passkey.user_id == user.id)
    )
    ways = (identities or 0) + (passkeys or 0) + (user.password_hash is not None)
    if ways <= 1:
        raise LastSignInMethod()
