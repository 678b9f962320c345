"""Routes of sign-in through OpenID providers, and of the providers linked to an account."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from auth_service import metrics
from auth_service.dependencies import CurrentUser, OidcSignInDep
from auth_service.errors import (
    AccountInactive,
    ProviderUnavailable,
    SignInFailed,
)
from auth_service.oidc.flows import Begun, OidcSignIn, flow_cookie
from auth_service.schemas import AuthorizationOut, IdentityOut, ProviderOut
from servicekit.errors import Conflict, ServiceError, error_responses

router = APIRouter(prefix="/auth", tags=["auth"])

ProviderName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]


def browser_cookie(request: Request) -> str | None:
    """The flow cookie this browser holds, if any (its name depends on PUBLIC_URL's scheme)."""
    value = request.cookies.get(flow_cookie(request.app.state.settings.public_url).name)
    return value if value is not None and len(value) <= 64 else None


BrowserCookie = Annotated[str | None, Depends(browser_cookie)]
# Printable ASCII (RFC 6749's VSCHAR), and short enough that the whole callback URL fits in the
# gateway's 8 KiB request line even percent-encoded. Codes run to ~1 KiB at some providers.
_VSCHAR = r"^[\x20-\x7e]*$"
Code = Annotated[str | None, Query(max_length=2048, pattern=_VSCHAR)]
State = Annotated[str | None, Query(max_length=128, pattern=_VSCHAR)]
ProviderError = Annotated[str | None, Query(max_length=64, pattern=_VSCHAR)]
Issuer = Annotated[str | None, Query(max_length=255, pattern=_VSCHAR)]
NO_STORE = {"Cache-Control": "no-store"}


@router.get("/oidc/providers", response_model=list[ProviderOut])
async def list_providers(request: Request) -> Any:
    """The configured providers, for "Sign in with ..." buttons."""
    return request.app.state.settings.oidc_providers


def _authorization(begun: Begun, oidc: OidcSignIn, response: Response) -> AuthorizationOut:
    response.headers.update(NO_STORE)
    cookie = flow_cookie(oidc.settings.public_url)
    response.set_cookie(
        cookie.name,
        begun.browser_token,
        max_age=oidc.settings.oidc_flow_ttl_seconds,
        path=cookie.path,
        httponly=True,
        samesite="lax",
        secure=cookie.secure,
    )
    return AuthorizationOut(authorization_url=begun.authorization_url)


@router.post(
    "/oidc/{provider}/start",
    response_model=AuthorizationOut,
    responses=error_responses(404, 422, 503),
)
async def start_sign_in(
    provider: ProviderName, response: Response, oidc: OidcSignInDep, browser: BrowserCookie
) -> AuthorizationOut:
    """Begins a sign-in: the browser goes to `authorization_url`, and comes back to the
    callback with the cookie this answer sets."""
    return _authorization(await oidc.begin(provider, browser), oidc, response)


@router.post(
    "/oidc/{provider}/link",
    response_model=AuthorizationOut,
    responses=error_responses(401, 404, 422, 503),
)
async def start_link(
    provider: ProviderName,
    user: CurrentUser,
    response: Response,
    oidc: OidcSignInDep,
    browser: BrowserCookie,
) -> AuthorizationOut:
    """Like `start`, for the signed-in user: the provider's account is linked to theirs."""
    return _authorization(await oidc.begin(provider, browser, link_user_id=user.id), oidc, response)


@router.get(
    "/oidc/{provider}/callback",
    status_code=status.HTTP_303_SEE_OTHER,
    response_class=RedirectResponse,
    responses=error_responses(400, 403, 404, 409, 422, 503),
)
async def callback(
    provider: ProviderName,
    oidc: OidcSignInDep,
    browser: BrowserCookie,
    state: State = None,
    code: Code = None,
    error: ProviderError = None,
    iss: Issuer = None,
) -> RedirectResponse:
    """Where the provider sends the browser back. Signed in: to the demo page with a one-time
    code in the fragment (`#sign-in=...`), which it exchanges at /auth/token (grant type
    `sign_in_code`); a link ends signed in too (`#sign-in=...&linked=<provider>`). Refused: a
    JSON error, and no session."""
    try:
        # RFC 9207: an `iss` that is not this provider's is a mix-up attack.
        if iss is not None and iss != oidc.providers.get(provider).config.issuer:
            raise SignInFailed("The answer comes from another issuer")
        redirect_to = await oidc.finish(
            provider, state=state, code=code, error=error, browser_cookie=browser
        )
    except ServiceError as exc:
        metrics.SIGN_INS.labels(method="oidc", outcome=_outcome(exc)).inc()
        raise
    metrics.SIGN_INS.labels(method="oidc", outcome="success").inc()
    return RedirectResponse(redirect_to, status.HTTP_303_SEE_OTHER, headers=NO_STORE)


def _outcome(exc: ServiceError) -> str:
    if isinstance(exc, ProviderUnavailable):
        return "unavailable"
    if isinstance(exc, AccountInactive):
        return "inactive"
    if isinstance(exc, Conflict):
        return "conflict"
    return "refused"


@router.get(
    "/users/me/providers", response_model=list[IdentityOut], responses=error_responses(401, 503)
)
async def list_linked(user: CurrentUser, oidc: OidcSignInDep) -> Any:
    """The providers linked to the account."""
    settings = oidc.settings
    return [
        IdentityOut(
            provider=identity.provider,
            display_name=(
                configured.display_name
                if (configured := settings.oidc_provider(identity.provider))
                else identity.provider
            ),
            email=identity.email,
            linked_at=identity.created_at,
        )
        for identity in await oidc.identities(user.id)
    ]


@router.delete(
    "/users/me/providers/{provider}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(401, 404, 409, 422, 503),
)
async def unlink(provider: ProviderName, user: CurrentUser, oidc: OidcSignInDep) -> Response:
    """Unlinks a provider; refused (409) when it is the account's only way to sign in."""
    await oidc.unlink(user, provider)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
