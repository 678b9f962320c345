from servicekit.errors import Conflict, Forbidden, ServiceError


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
