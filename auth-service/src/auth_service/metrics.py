from prometheus_client import Counter

LOGINS = Counter("auth_logins", "Password logins by outcome", ["outcome"])
TOKENS_ISSUED = Counter("auth_tokens_issued", "Token pairs issued by grant type", ["grant"])
REFRESH_REUSE_DETECTED = Counter(
    "auth_refresh_reuse_detected",
    "Spent refresh tokens presented again (the session family was revoked)",
)

# Every series exists from the start, so ratios over them never come out empty.
for outcome in ("success", "invalid_credentials"):
    LOGINS.labels(outcome=outcome)
for grant in ("password", "refresh_token"):
    TOKENS_ISSUED.labels(grant=grant)
