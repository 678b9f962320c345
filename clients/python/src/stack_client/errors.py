"""The errors the client raises."""

from typing import Any


class StackError(Exception):
    """An error answer of the stack: `{error, detail}` (docs/contract.md §3), or a token endpoint's
    RFC 6749 body. `status` is 0 when no answer came."""

    def __init__(
        self,
        status: int,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        body = body if isinstance(body, dict) else {}
        self.status = status
        self.error: str = body.get("error") or (f"http_{status}" if status else "network_error")
        self.detail: Any = body.get("detail", body.get("error_description"))
        self.retry_after = retry_after
        self.body = body
        super().__init__(f"{status} {self.error}: {describe(self.detail)}")


def describe(detail: Any) -> str:
    if isinstance(detail, list):
        return "; ".join(
            ".".join(str(part) for part in item.get("loc", [])[1:]) + f": {item.get('msg')}"
            for item in detail
            if isinstance(item, dict)
        )
    return str(detail)


class SubscriptionStopped(StackError):
    """A live subscription ended for good, as its close code says: 4401 (bad credentials, or
    signed out) or 4403 (no access to a channel)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(0, {"error": "subscription_stopped", "detail": reason})
        self.code = code
        self.reason = reason
