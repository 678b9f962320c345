from prometheus_client import Counter

LOGINS = Counter("auth_logins", "Password logins by outcome", ["outcome"])
TOKENS_ISSUED = Counter("auth_tokens_issued", "Token pairs issued by grant type", ["grant"])
REFRESH_REUSE_DETECTED = Counter(
    "auth_refresh_reuse_detected",
    "Spent refresh tokens presented again (the session family was revoked)",
)

SIGN_INS = Counter(
    "auth_sign_ins",
    "Sign-ins by method (password, oidc, passkey) and outcome",
    ["method", "outcome"],
)
PASSWORD_OUTCOMES = ("success", "invalid_credentials", "throttled", "inactive")
OIDC_OUTCOMES = ("success", "refused", "conflict", "inactive", "unavailable")
PASSKEY_OUTCOMES = ("success", "refused")


def count_password_login(outcome: str) -> None:
    LOGINS.labels(outcome=outcome).inc()
    SIGN_INS.labels(method="password", outcome=outcome).inc()


# Every series exists from the start, so ratios over them never come out empty.
EMAILS_SENT = Counter(
    "auth_emails_sent", "Verification and reset messages by kind and outcome", ["kind", "outcome"]
)
PASSWORD_RESETS = Counter("auth_password_resets", "Passwords set from a reset link")

for outcome in PASSWORD_OUTCOMES:
    LOGINS.labels(outcome=outcome)
    SIGN_INS.labels(method="password", outcome=outcome)
for outcome in OIDC_OUTCOMES:
    SIGN_INS.labels(method="oidc", outcome=outcome)
for outcome in PASSKEY_OUTCOMES:
    SIGN_INS.labels(method="passkey", outcome=outcome)
for grant in ("password", "refresh_token", "sign_in_code", "passkey"):
    TOKENS_ISSUED.labels(grant=grant)
for kind in ("verify", "reset"):
    for outcome in ("sent", "failed", "dropped", "disabled"):
        EMAILS_SENT.labels(kind=kind, outcome=outcome)
