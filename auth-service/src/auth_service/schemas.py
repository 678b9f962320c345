import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, EmailStr, Field, StringConstraints, ValidationInfo, field_validator

from servicekit.schemas import VISIBLE_TEXT_PATTERN, StrictModel

Password = Annotated[str, Field(min_length=8, max_length=128)]
DisplayName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    Field(json_schema_extra={"pattern": VISIBLE_TEXT_PATTERN}),
]
# RFC 5321 caps a path at 256 octets, so an address is at most 254 characters.
Email = Annotated[EmailStr, Field(max_length=254)]


class RegisterRequest(StrictModel):
    email: Email
    password: Password
    display_name: DisplayName | None = None


class UpdateMeRequest(StrictModel):
    display_name: DisplayName | None = None
    password: Password | None = None
    current_password: Annotated[str | None, Field(max_length=128, validate_default=True)] = None

    @field_validator("current_password")
    @classmethod
    def required_for_password_change(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("password") is not None and value is None:
            raise ValueError("current_password is required to change the password")
        return value


class LogoutRequest(StrictModel):
    refresh_token: Annotated[str, Field(max_length=512)]


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    display_name: str
    email_verified: bool
    is_admin: bool
    is_active: bool
    created_at: datetime


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str


class JwksResponse(BaseModel):
    keys: list[dict[str, str]]


class AdminUserUpdate(StrictModel):
    is_active: bool | None = None
    is_admin: bool | None = None


class UserPageOut(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


class MemberOut(BaseModel):
    id: uuid.UUID
    display_name: str


class OpenIdConfiguration(BaseModel):
    issuer: str
    jwks_uri: str
    token_endpoint: str
    grant_types_supported: list[str]
    response_types_supported: list[str]
    subject_types_supported: list[str]
    id_token_signing_alg_values_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    scopes_supported: list[str]
    claims_supported: list[str]


OneTimeToken = Annotated[str, Field(min_length=1, max_length=128)]


class VerifyEmailRequest(StrictModel):
    token: OneTimeToken


class ForgotPasswordRequest(StrictModel):
    email: Email


class ResetPasswordRequest(StrictModel):
    token: OneTimeToken
    password: Password


class ProviderOut(BaseModel):
    name: str
    display_name: str


class AuthorizationOut(BaseModel):
    """Where the browser goes to sign in at the provider."""

    authorization_url: str


class IdentityOut(BaseModel):
    provider: str
    display_name: str
    email: str | None
    linked_at: datetime


PasskeyName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    Field(json_schema_extra={"pattern": VISIBLE_TEXT_PATTERN}),
]


class PasskeyRegistration(StrictModel):
    name: PasskeyName
    # The PublicKeyCredential from navigator.credentials.create(), as JSON (toJSON()).
    credential: dict[str, Any]


class PasskeySignIn(StrictModel):
    # The PublicKeyCredential from navigator.credentials.get(), as JSON.
    credential: dict[str, Any]


class PasskeyOut(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
