from servicekit.errors import Conflict, Forbidden


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
