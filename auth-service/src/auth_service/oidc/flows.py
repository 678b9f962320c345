"""Sign-in and linking through OpenID providers: the authorization-code flow with PKCE, state
and nonce (docs/sign-in.md), the linking rules, and the one-time code the browser exchanges
for the stack's tokens."""

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.config import Settings
from auth_service.errors import (
    AccountExists,
    AccountInactive,
    IdentityTaken,
    ProviderAlreadyLinked,
    SignInFailed,
    UnknownProvider,
    invalid_grant,
)
from auth_service.models import OidcFlow, ProviderIdentity, SignInCode, User
from auth_service.oidc.id_token import VerifiedIdentity, hash_secret, verify_id_token
from auth_service.oidc.provider import ProviderClient
from auth_service.service import AuthService, TokenPair
from auth_service.sign_in_ways import ensure_another_way

SIGN_IN_CODE_GRANT = "sign_in_code"


@dataclass(frozen=True)
class FlowCookie:
    """The cookie that ties a flow to the browser that began it (no login CSRF: a victim cannot
    be made to finish an attacker's flow). HttpOnly; SameSite=Lax, since it must come along on
    the provider's redirect."""

    name: str
    path: str
    secure: bool


def flow_cookie(public_url: str) -> FlowCookie:
    if public_url.startswith("https://"):
        # __Host-: Secure, path /, no Domain, so no sibling subdomain can plant one (it could
        # plant its own flow's cookie in a victim's browser).
        return FlowCookie("__Host-oidc_browser", "/", secure=True)
    return FlowCookie("oidc_browser", "/auth/oidc/", secure=False)


_BROWSER_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
_PROVIDER_ERROR = re.compile(r"[a-z_]{1,64}")


class OidcProviders:
    """The configured providers, one HTTP client for all of them (closed with the app)."""

    def __init__(self, settings: Settings) -> None:
        self.http = httpx.AsyncClient(
            timeout=settings.oidc_http_timeout_seconds, follow_redirects=False
        )
        self.clients = {
            config.name: ProviderClient(config, self.http, settings.oidc_jwks_min_refresh_seconds)
            for config in settings.oidc_providers
        }

    def get(self, name: str) -> ProviderClient:
        client = self.clients.get(name)
        if client is None:
            raise UnknownProvider()
        return client

    async def close(self) -> None:
        await self.http.aclose()


@dataclass(frozen=True)
class Begun:
    authorization_url: str
    browser_token: str


def browser_token_or_new(cookie: str | None) -> str:
    """The browser's flow cookie when it has a well-formed one (flows in several tabs), else a
    new random one."""
    if cookie is not None and _BROWSER_TOKEN.fullmatch(cookie):
        return cookie
    return secrets.token_urlsafe(32)


class OidcSignIn:
    def __init__(
        self, session: AsyncSession, settings: Settings, providers: OidcProviders, auth: AuthService
    ) -> None:
        self.session = session
        self.settings = settings
        self.providers = providers
        self.auth = auth

    def redirect_uri(self, name: str) -> str:
        return f"{self.settings.public_url.rstrip('/')}/auth/oidc/{name}/callback"

    async def begin(
        self, name: str, browser_cookie: str | None, link_user_id: uuid.UUID | None = None
    ) -> Begun:
        provider = self.providers.get(name)
        discovery = await provider.discovery()
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters: RFC 7636 allows 43-128
        browser_token = browser_token_or_new(browser_cookie)
        ttl = timedelta(seconds=self.settings.oidc_flow_ttl_seconds)
        await self.session.execute(
            insert(OidcFlow).values(
                state_hash=hash_secret(state),
                browser_hash=hash_secret(browser_token),
                nonce_hash=hash_secret(nonce),
                code_verifier=verifier,
                provider=name,
                link_user_id=link_user_id,
                expires_at=datetime.now(UTC) + ttl,
            )
        )
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        query = urlencode(
            {
                "response_type": "code",
                "client_id": provider.config.client_id,
                "redirect_uri": self.redirect_uri(name),
                "scope": " ".join(provider.config.scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge.rstrip(b"=").decode(),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in discovery.authorization_endpoint else "?"
        return Begun(f"{discovery.authorization_endpoint}{separator}{query}", browser_token)

    async def finish(
        self,
        name: str,
        *,
        state: str | None,
        code: str | None,
        error: str | None,
        browser_cookie: str | None,
    ) -> str:
        """Where the browser goes next: the demo page, with a sign-in code in the fragment
        (and the provider linked, for a link)."""
        provider = self.providers.get(name)
        flow = await self._take_flow(name, state, browser_cookie)
        if error is not None:
            shown = error if _PROVIDER_ERROR.fullmatch(error) else "error"
            raise SignInFailed(f"The provider did not sign you in ({shown})")
        if not code:
            raise SignInFailed("The provider's answer has no code")
        tokens = await provider.exchange_code(code, self.redirect_uri(name), flow.code_verifier)
        id_token, access_token = tokens.get("id_token"), tokens.get("access_token")
        if not isinstance(id_token, str):
            raise SignInFailed("The provider's answer has no ID token")
        identity = await verify_id_token(
            id_token,
            provider,
            nonce_hash=flow.nonce_hash,
            access_token=access_token if isinstance(access_token, str) else None,
            leeway=self.settings.oidc_leeway_seconds,
        )
        if flow.link_user_id is not None:
            await self._link(flow.link_user_id, provider, identity)
            # The page that began the link was left for the provider's, and its tokens with
            # it: the link ends signed in again, to the account that started it.
            user_id, linked = flow.link_user_id, f"&linked={name}"
        else:
            user_id, linked = (await self._account_for(provider, identity)).id, ""
        code = await self._issue_sign_in_code(user_id, f"oidc:{name}")
        return f"{self.settings.public_url.rstrip('/')}/#sign-in={code}{linked}"

    async def _take_flow(
        self, name: str, state: str | None, browser_cookie: str | None
    ) -> OidcFlow:
        """The flow `state` names, deleted at once and committed: whatever follows, it is
        never used again."""
        if not state or len(state) > 128:
            raise SignInFailed("The sign-in's state is missing or malformed")
        flow: OidcFlow | None = await self.session.scalar(
            delete(OidcFlow).where(OidcFlow.state_hash == hash_secret(state)).returning(OidcFlow)
        )
        await self.session.commit()
        if flow is None or flow.provider != name or flow.expires_at <= datetime.now(UTC):
            raise SignInFailed("The sign-in's state is unknown, used or expired: start again")
        if browser_cookie is None or not hmac.compare_digest(
            hash_secret(browser_cookie), flow.browser_hash
        ):
            raise SignInFailed("The sign-in was begun in another browser: start again")
        return flow

    async def _account_for(self, provider: ProviderClient, identity: VerifiedIdentity) -> User:
        """The linking rules (docs/sign-in.md): the identity's account; else, only for an email
        the provider has verified, a new account when no account has it, or the account with it
        when we have verified it too."""
        issuer = provider.config.issuer
        user = await self.session.scalar(
            select(User)
            .join(ProviderIdentity, ProviderIdentity.user_id == User.id)
            .where(ProviderIdentity.issuer == issuer, ProviderIdentity.subject == identity.subject)
        )
        if user is None:
            if identity.email is None:
                raise SignInFailed("The provider shared no email address (the email scope)")
            user = await self.session.scalar(
                select(User).where(func.lower(User.email) == func.lower(identity.email))
            )
            if not identity.email_verified:
                # An account made from an address nobody proved would keep this identity
                # linked after the address's owner took the account back by a reset.
                raise SignInFailed(
                    "The provider has not verified this email address: verify it there first"
                )
            if user is None:
                user = await self._create_account(identity)
            elif not user.email_verified:
                raise AccountExists()
            await self._insert_identity(user.id, provider, identity)
        if not user.is_active:
            raise AccountInactive()
        return user

    async def _create_account(self, identity: VerifiedIdentity) -> User:
        assert identity.email is not None
        email = identity.email
        name = (identity.name or email.split("@", 1)[0]).strip()[:100]
        user: User | None = await self.session.scalar(
            insert(User)
            .values(
                id=uuid.uuid4(),
                email=email,
                display_name=name,
                password_hash=None,
                email_verified=identity.email_verified,
            )
            .on_conflict_do_nothing()
            .returning(User)
        )
        if user is None:  # someone registered the address a moment ago
            raise AccountExists()
        return user

    async def _link(
        self, user_id: uuid.UUID, provider: ProviderClient, identity: VerifiedIdentity
    ) -> None:
        owner = await self.session.scalar(
            select(ProviderIdentity.user_id).where(
                ProviderIdentity.issuer == provider.config.issuer,
                ProviderIdentity.subject == identity.subject,
            )
        )
        if owner == user_id:
            return
        await self._insert_identity(user_id, provider, identity)

    async def _insert_identity(
        self, user_id: uuid.UUID, provider: ProviderClient, identity: VerifiedIdentity
    ) -> None:
        inserted = await self.session.scalar(
            insert(ProviderIdentity)
            .values(
                issuer=provider.config.issuer,
                subject=identity.subject,
                user_id=user_id,
                provider=provider.config.name,
                email=identity.email,
            )
            .on_conflict_do_nothing()
            .returning(ProviderIdentity.subject)
        )
        if inserted is not None:
            return
        taken = await self.session.scalar(
            select(ProviderIdentity.user_id).where(
                ProviderIdentity.issuer == provider.config.issuer,
                ProviderIdentity.subject == identity.subject,
            )
        )
        raise IdentityTaken() if taken is not None else ProviderAlreadyLinked()

    async def _issue_sign_in_code(self, user_id: uuid.UUID, method: str) -> str:
        code = secrets.token_urlsafe(32)
        ttl = timedelta(seconds=self.settings.sign_in_code_ttl_seconds)
        await self.session.execute(
            insert(SignInCode).values(
                code_hash=hash_secret(code),
                user_id=user_id,
                method=method,
                expires_at=datetime.now(UTC) + ttl,
            )
        )
        return code

    async def redeem_sign_in_code(self, code: str) -> TokenPair:
        """Tokens for a sign-in code: once, before it expires, while the account is active."""
        user_id = await self.session.scalar(
            delete(SignInCode)
            .where(SignInCode.code_hash == hash_secret(code), SignInCode.expires_at > func.now())
            .returning(SignInCode.user_id)
        )
        if user_id is None:
            raise invalid_grant("The sign-in code is invalid, expired or used")
        active = await self.session.scalar(select(User.is_active).where(User.id == user_id))
        if not active:
            raise invalid_grant("The account is deactivated")
        return await self.auth.start_session(user_id, grant=SIGN_IN_CODE_GRANT)

    async def identities(self, user_id: uuid.UUID) -> list[ProviderIdentity]:
        rows = await self.session.scalars(
            select(ProviderIdentity)
            .where(ProviderIdentity.user_id == user_id)
            .order_by(ProviderIdentity.created_at)
        )
        return list(rows)

    async def unlink(self, user: User, name: str) -> None:
        identities = await self.identities(user.id)
        if not any(identity.provider == name for identity in identities):
            raise UnknownProvider("No account of this provider is linked")
        await ensure_another_way(self.session, user)
        await self.session.execute(
            delete(ProviderIdentity).where(
                ProviderIdentity.user_id == user.id, ProviderIdentity.provider == name
            )
        )
