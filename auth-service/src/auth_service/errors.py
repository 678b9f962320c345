from servicekit.errors import Conflict, Forbidden, NotFound, ServiceError


class EmailTaken(Conflict):
    error = "email_taken"
    default_detail = "An account with this email already exists"


class WrongCurrentPassword(Forbidden):
    error = "invalid_current_password"
    default_detail = "current_password is not the account's password"


class OAuthError(Exception):
    """A token-endpoint failure, answered with an RFC 6749 §5.2 body rather than ours."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def invalid_grant(description: str = "Invalid credentials or token") -> OAuthError:
    return OAuthError("invalid_grant", description)


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


class TooManyRequests(ServiceError):
    status_code = 429
    error = "rate_limited"
    default_detail = "Too many requests: retry later"

    def __init__(self, retry_after: int) -> None:
        super().__init__(headers={"Retry-After": str(retry_after)})


class CannotChangeOwnAccount(Conflict):
    error = "own_account"
    default_detail = "An admin cannot deactivate or demote their own account"


class InvalidActionToken(ServiceError):
    status_code = 400
    error = "invalid_link"
    default_detail = "The link is invalid, expired or already used"


class LoginThrottled(OAuthError):
    """Too many failed password grants for one email: answered 429 with Retry-After."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too_many_attempts", "Too many failed attempts: retry later")
        self.retry_after = retry_after


class UnknownProvider(NotFound):
    error = "unknown_provider"
    default_detail = "No sign-in provider of this name is configured"


class ProviderUnavailable(ServiceError):
    """The OpenID provider did not answer, or answered with a server error: retry later."""

    status_code = 503
    error = "provider_unavailable"
    default_detail = "The sign-in provider is unreachable: retry later"
    retry_after = 30

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(self.retry_after)})


class SignInFailed(ServiceError):
    """A provider's answer that must not sign anyone in: the detail says what was wrong."""

    status_code = 400
    error = "sign_in_failed"
    default_detail = "The sign-in could not be completed"


class AccountExists(Conflict):
    error = "account_exists"
    default_detail = (
        "An account with this email exists: sign in to it and link the provider from the account"
    )


class IdentityTaken(Conflict):
    error = "identity_taken"
    default_detail = "This provider account is already linked to another account"


class ProviderAlreadyLinked(Conflict):
    error = "provider_already_linked"
    default_detail = "Another account of this provider is linked already: unlink it first"


class LastSignInMethod(Conflict):
    error = "last_sign_in_method"
    default_detail = "This is the account's only way to sign in: set a password or link another"


class AccountInactive(Forbidden):
    error = "account_inactive"
    default_detail = "The account is deactivated"


class PasskeyRefused(ServiceError):
    """A WebAuthn response that must not register a passkey or sign anyone in."""

    status_code = 400
    error = "passkey_refused"
    default_detail = "The passkey response was refused"


class PasskeyTaken(Conflict):
    error = "passkey_taken"
    default_detail = "This passkey is registered already"


class UnknownPasskey(NotFound):
    error = "unknown_passkey"
    default_detail = "No such passkey on this account"
