import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "auth"


class Base(DeclarativeBase):
    # Index names as the migrations made them (`index=True` would otherwise prefix the schema,
    # and `alembic check` would see every index renamed).
    metadata = MetaData(
        schema=SCHEMA, naming_convention={"ix": "ix_%(table_name)s_%(column_0_name)s"}
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254))
    display_name: Mapped[str] = mapped_column(String(100))
    # None for an account created through an OpenID provider until a password is set (reset).
    password_hash: Mapped[str | None] = mapped_column(Text)
    is_admin: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=true(), default=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# Emails are unique case-insensitively; lookups use the same expression so they use the index.
Index("users_email_lower_key", func.lower(User.email), unique=True)


class LoginSession(Base):
    """One login: the family of refresh tokens that descend from it by rotation."""

    __tablename__ = "sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SigningKeyRecord(Base):
    """Every signing key's public half; `private_pem` only for the generated development key."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONB)
    private_pem: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ActionToken(Base):
    """A one-time token mailed to a user (email verification, password reset), kept as a hash."""

    __tablename__ = "action_tokens"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(16))
    email: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LoginThrottle(Base):
    """Recent password failures for one email (known or not), keyed by the email's hash."""

    __tablename__ = "login_throttle"

    email_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lockouts: Mapped[int] = mapped_column(Integer, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LookupBudget(Base):
    """Lookups by email one user made in the current window (members by email)."""

    __tablename__ = "lookup_budget"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    window_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lookups: Mapped[int] = mapped_column(Integer)


class ProviderIdentity(Base):
    """An account at an OpenID provider (issuer + subject), linked to one of ours."""

    __tablename__ = "provider_identities"
    __table_args__ = (
        # An identity belongs to at most one account...
        PrimaryKeyConstraint("issuer", "subject"),
        # ... and an account links at most one identity per provider.
        UniqueConstraint("user_id", "provider"),
    )

    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OidcFlow(Base):
    """An authorization request sent to a provider and not yet answered. Keyed by the hash of
    `state`; the callback deletes it, so it is used once, on whichever replica."""

    __tablename__ = "oidc_flows"

    state_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    # The hash of the cookie set in the browser that began the flow: only it may finish it.
    browser_hash: Mapped[bytes] = mapped_column(LargeBinary)
    nonce_hash: Mapped[bytes] = mapped_column(LargeBinary)
    # Sent to the provider's token endpoint, so kept as it is; it lives minutes.
    code_verifier: Mapped[str] = mapped_column(String(128))
    provider: Mapped[str] = mapped_column(String(32))
    # Set when a signed-in user links the provider; None for a sign-in.
    link_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SignInCode(Base):
    """A one-time code for a sign-in that happened elsewhere (the provider's redirect), handed
    to the browser in a URL fragment and exchanged at /auth/token. Kept as a hash."""

    __tablename__ = "sign_in_codes"

    code_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    method: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Passkey(Base):
    """A WebAuthn credential (a discoverable one: the authenticator knows the user)."""

    __tablename__ = "passkeys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebAuthnChallenge(Base):
    """A challenge sent to a browser, kept as a hash until it comes back once or expires."""

    __tablename__ = "webauthn_challenges"

    challenge_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    # register: the user adding a passkey; sign_in: anyone.
    purpose: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
