"""The session and the REST helpers (docs/contract.md §4 and §5)."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, cast
from urllib.parse import quote

import httpx

from stack_client.errors import StackError

MAX_REFRESH_MARGIN = 60.0

JSON = dict[str, Any]


class Tokens:
    def __init__(self, body: Mapping[str, Any]) -> None:
        self.access: str = body["access_token"]
        self.refresh: str = body["refresh_token"]
        self.lifetime = float(body["expires_in"])
        self.expires_at = time.time() + self.lifetime

    @property
    def margin(self) -> float:
        """Refresh this long before expiry: a minute, or half the lifetime of short tokens."""
        return min(MAX_REFRESH_MARGIN, self.lifetime / 2)


def not_signed_in() -> StackError:
    return StackError(401, {"error": "not_signed_in", "detail": "Log in first"})


def if_match_header(value: int | str) -> dict[str, str]:
    if isinstance(value, int):
        return {"If-Match": f'"{value}"'}
    return {"If-Match": value if value.startswith(('"', "W/")) else f'"{value}"'}


def retry_after(value: str | None) -> float | None:
    """A `Retry-After` header's seconds (the stack never sends the date form)."""
    return float(value) if value is not None and value.isdigit() else None


class AsyncStackClient:
    """The stack through its gateway. Tokens live in memory and are refreshed before they
    expire; a refused refresh (the session ended) signs the client out and calls the
    `on_signed_out` listeners.

        async with AsyncStackClient("http://127.0.0.1:8080") as client:
            await client.login(email, password)
            board = await client.boards.create("Plans")
    """

    def __init__(self, base_url: str, *, http: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(15.0))
        self._tokens: Tokens | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._refresh_timer: asyncio.Task[None] | None = None
        self._token_listeners: list[Callable[[], None]] = []
        self.signed_out_listeners: list[Callable[[str], None]] = []
        self.boards = Boards(self)
        self.members = Members(self)
        self.tasks = Tasks(self)
        self.comments = Comments(self)
        from stack_client.live import Live  # the live layer builds on this module

        self.live = Live(self)

    async def __aenter__(self) -> "AsyncStackClient":
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.live.aclose()
        self._clear_tokens()
        await self.http.aclose()

    # Session.

    @property
    def signed_in(self) -> bool:
        return self._tokens is not None

    @property
    def access_token_expires_at(self) -> float | None:
        return self._tokens.expires_at if self._tokens else None

    async def register(self, email: str, password: str, display_name: str | None = None) -> JSON:
        body: JSON = {"email": email, "password": password}
        if display_name is not None:
            body["display_name"] = display_name
        return await self.request_object("POST", "/auth/register", json=body, auth=False)

    async def login(self, email: str, password: str) -> JSON:
        form = {"grant_type": "password", "username": email, "password": password}
        self._set_tokens(await self.request("POST", "/auth/token", form=form, auth=False))
        return await self.me()

    # Sign-in through OpenID providers (docs/sign-in.md): a browser goes to the URL that
    # `start_provider_sign_in` or `link_provider` returns and comes back to
    # PUBLIC_URL/#sign-in=CODE; `complete_sign_in(CODE)` signs this client in.

    async def providers(self) -> list[JSON]:
        """The configured providers: `[{name, display_name}]`."""
        return cast(list[JSON], await self.request("GET", "/auth/oidc/providers", auth=False))

    async def start_provider_sign_in(self, provider: str) -> str:
        """The provider's authorization URL, to sign in with it."""
        path = f"/auth/oidc/{quote(provider, safe='')}/start"
        body = await self.request_object("POST", path, auth=False)
        return str(body["authorization_url"])

    async def link_provider(self, provider: str) -> str:
        """The provider's authorization URL, to link it to the signed-in account."""
        body = await self.request_object("POST", f"/auth/oidc/{quote(provider, safe='')}/link")
        return str(body["authorization_url"])

    async def complete_sign_in(self, code: str) -> JSON:
        """Exchanges the one-time code of `#sign-in=CODE` for tokens; returns the user."""
        form = {"grant_type": "sign_in_code", "code": code}
        self._set_tokens(await self.request("POST", "/auth/token", form=form, auth=False))
        return await self.me()

    async def linked_providers(self) -> list[JSON]:
        return cast(list[JSON], await self.request("GET", "/auth/users/me/providers"))

    async def unlink_provider(self, provider: str) -> None:
        """Refused (409 `last_sign_in_method`) when it is the account's only way to sign in."""
        await self.request("DELETE", f"/auth/users/me/providers/{quote(provider, safe='')}")

    # Passkeys (WebAuthn): the options are the JSON a browser's
    # PublicKeyCredential.parse*OptionsFromJSON takes; credentials go back as their toJSON().

    async def passkey_registration_options(self) -> JSON:
        return await self.request_object("POST", "/auth/passkeys/register/options")

    async def register_passkey(self, name: str, credential: JSON) -> JSON:
        body = {"name": name, "credential": credential}
        return await self.request_object("POST", "/auth/passkeys", json=body)

    async def passkey_sign_in_options(self) -> JSON:
        return await self.request_object("POST", "/auth/passkeys/sign-in/options", auth=False)

    async def sign_in_with_passkey(self, credential: JSON) -> JSON:
        """Signs in with a passkey assertion; returns the user."""
        body = {"credential": credential}
        self._set_tokens(
            await self.request("POST", "/auth/passkeys/sign-in", json=body, auth=False)
        )
        return await self.me()

    async def passkeys(self) -> list[JSON]:
        return cast(list[JSON], await self.request("GET", "/auth/users/me/passkeys"))

    async def delete_passkey(self, passkey_id: str) -> None:
        """Refused (409 `last_sign_in_method`) when it is the account's only way to sign in."""
        await self.request("DELETE", f"/auth/users/me/passkeys/{quote(passkey_id, safe='')}")

    async def logout(self) -> None:
        tokens = self._tokens
        self._clear_tokens()
        if tokens is not None:
            body = {"refresh_token": tokens.refresh}
            await self.request("POST", "/auth/logout", json=body, auth=False)

    async def me(self) -> JSON:
        return await self.request_object("GET", "/auth/users/me")

    async def lookup_user(self, email: str) -> JSON:
        """The active account with exactly this email (ignoring case): `{id, display_name}`;
        a 404 `StackError` otherwise."""
        return await self.request_object("GET", "/auth/users/lookup", params={"email": email})

    async def update_me(
        self,
        *,
        display_name: str | None = None,
        password: str | None = None,
        current_password: str | None = None,
    ) -> JSON:
        changes = {
            "display_name": display_name,
            "password": password,
            "current_password": current_password,
        }
        body = {name: value for name, value in changes.items() if value is not None}
        return await self.request_object("PATCH", "/auth/users/me", json=body)

    def on_tokens(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Calls `listener` after each new access token; returns a function that stops it."""
        self._token_listeners.append(listener)
        return lambda: self._token_listeners.remove(listener)

    def _set_tokens(self, body: Mapping[str, Any]) -> None:
        self._tokens = tokens = Tokens(body)
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
        self._refresh_timer = asyncio.create_task(self._refresh_later(tokens))
        for listener in list(self._token_listeners):
            listener()

    def _clear_tokens(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None
        self._tokens = None

    async def _refresh_later(self, tokens: Tokens) -> None:
        await asyncio.sleep(max(0.0, tokens.expires_at - tokens.margin - time.time()))
        while self._tokens is tokens:
            try:
                await asyncio.shield(self.refresh())
                return
            except StackError as error:
                # Network trouble, 429 or 503: keep the session and try again shortly.
                await asyncio.sleep(error.retry_after or 2.0)

    async def refresh(self) -> None:
        """A new token pair now. Concurrent callers share one request: a refresh token is
        spent on use, and presenting it twice would end the session."""
        if self._tokens is None:
            raise not_signed_in()
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh(self._tokens))
        await asyncio.shield(self._refreshing)

    async def _refresh(self, tokens: Tokens) -> None:
        form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh}
        try:
            body = await self.request("POST", "/auth/token", form=form, auth=False)
        except StackError as error:
            if error.status == 400 and self._tokens is tokens:
                # invalid_grant: the session ended (logout, password change, reuse detected).
                self._clear_tokens()
                for listener in list(self.signed_out_listeners):
                    listener(str(error.detail or error.error))
            raise
        if self._tokens is tokens:
            self._set_tokens(body)

    async def access_token(self, newer_than: float | None = None) -> tuple[str, float]:
        """The access token and its expiry, refreshed first when it is close to expiry or not
        newer than `newer_than`."""
        tokens = self._tokens
        if tokens is None:
            raise not_signed_in()
        stale = tokens.expires_at - time.time() < tokens.margin
        if stale or (newer_than is not None and tokens.expires_at <= newer_than):
            await self.refresh()
            tokens = self._tokens
            if tokens is None:  # signed out while refreshing
                raise not_signed_in()
        return tokens.access, tokens.expires_at

    # Requests.

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        auth: bool = True,
    ) -> Any:
        """The parsed JSON body (None when empty); `StackError` for an error answer.
        `request_with_etag` also returns the `ETag`."""
        body, _ = await self.request_with_etag(
            method, path, json=json, form=form, headers=headers, params=params, auth=auth
        )
        return body

    async def request_object(self, method: str, path: str, **options: Any) -> JSON:
        """`request` for routes that answer a JSON object."""
        return cast(JSON, await self.request(method, path, **options))

    async def request_with_etag(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        auth: bool = True,
    ) -> tuple[Any, str | None]:
        query = {name: value for name, value in (params or {}).items() if value is not None}

        async def send() -> tuple[httpx.Response, str | None]:
            sent_headers = dict(headers or {})
            token = None
            if auth and self._tokens is not None:
                token, _ = await self.access_token()
                sent_headers["Authorization"] = f"Bearer {token}"
            try:
                response = await self.http.request(
                    method,
                    self.base_url + path,
                    json=json,
                    data=form,
                    headers=sent_headers,
                    params=query,
                )
            except httpx.TransportError as exc:
                raise StackError(0, {"error": "network_error", "detail": str(exc)}) from exc
            return response, token

        response, token = await send()
        if response.status_code == 401 and token is not None and self._tokens is not None:
            # Revoked or expired in flight: one refresh, one retry.
            if self._tokens.access == token:
                await self.refresh()
            response, _ = await send()
        body = None
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = {"error": f"http_{response.status_code}", "detail": response.text[:200]}
        if response.is_error:
            raise StackError(
                response.status_code, body, retry_after(response.headers.get("Retry-After"))
            )
        return body, response.headers.get("ETag")

    async def paginate(self, path: str, **params: Any) -> AsyncIterator[JSON]:
        """Every item of a paged collection, following `next_cursor`."""
        cursor = None
        while True:
            page = await self.request("GET", path, params={**params, "cursor": cursor})
            for item in page["items"]:
                yield item
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def websocket_url(self, path: str) -> str:
        return "ws" + self.base_url.removeprefix("http") + path


class Boards:
    def __init__(self, client: AsyncStackClient) -> None:
        self.client = client

    async def create(self, name: str) -> JSON:
        return await self.client.request_object("POST", "/api/boards", json={"name": name})

    def list(self, *, limit: int | None = None) -> AsyncIterator[JSON]:
        return self.client.paginate("/api/boards", limit=limit)

    async def page(self, *, limit: int | None = None, cursor: str | None = None) -> JSON:
        params = {"limit": limit, "cursor": cursor}
        return await self.client.request_object("GET", "/api/boards", params=params)

    async def get(self, board_id: str) -> JSON:
        return await self.client.request_object("GET", f"/api/boards/{board_id}")

    async def update(self, board_id: str, *, name: str, if_match: int | str | None = None) -> JSON:
        headers = if_match_header(if_match) if if_match is not None else {}
        return await self.client.request_object(
            "PATCH", f"/api/boards/{board_id}", json={"name": name}, headers=headers
        )

    async def delete(self, board_id: str, *, if_match: int | str | None = None) -> None:
        headers = if_match_header(if_match) if if_match is not None else {}
        await self.client.request("DELETE", f"/api/boards/{board_id}", headers=headers)


class Members:
    def __init__(self, client: AsyncStackClient) -> None:
        self.client = client

    async def list(self, board_id: str) -> list[JSON]:
        members: list[JSON] = await self.client.request("GET", f"/api/boards/{board_id}/members")
        return members

    async def set(self, board_id: str, user_id: str, role: str) -> JSON:
        path = f"/api/boards/{board_id}/members/{user_id}"
        return await self.client.request_object("PUT", path, json={"role": role})

    async def remove(self, board_id: str, user_id: str) -> None:
        await self.client.request("DELETE", f"/api/boards/{board_id}/members/{user_id}")


class Tasks:
    def __init__(self, client: AsyncStackClient) -> None:
        self.client = client

    async def create(self, board_id: str, *, title: str, **fields: Any) -> JSON:
        body = {"title": title, **fields}
        return await self.client.request_object("POST", f"/api/boards/{board_id}/tasks", json=body)

    def list(
        self,
        board_id: str,
        *,
        status: str | None = None,
        assignee_id: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[JSON]:
        return self.client.paginate(
            f"/api/boards/{board_id}/tasks", status=status, assignee_id=assignee_id, limit=limit
        )

    async def page(self, board_id: str, **params: Any) -> JSON:
        path = f"/api/boards/{board_id}/tasks"
        return await self.client.request_object("GET", path, params=params)

    async def get(self, task_id: str) -> JSON:
        return await self.client.request_object("GET", f"/api/tasks/{task_id}")

    async def update(
        self, task_id: str, changes: Mapping[str, Any], *, if_match: int | str | None = None
    ) -> JSON:
        headers = if_match_header(if_match) if if_match is not None else {}
        return await self.client.request_object(
            "PATCH", f"/api/tasks/{task_id}", json=dict(changes), headers=headers
        )

    async def delete(self, task_id: str, *, if_match: int | str | None = None) -> None:
        headers = if_match_header(if_match) if if_match is not None else {}
        await self.client.request("DELETE", f"/api/tasks/{task_id}", headers=headers)


class Comments:
    """Comments on a task: any member of its board may comment, the author edits, the author
    or a board owner deletes (docs/contract.md §5)."""

    def __init__(self, client: AsyncStackClient) -> None:
        self.client = client

    async def create(self, task_id: str, body: str) -> JSON:
        path = f"/api/tasks/{task_id}/comments"
        return await self.client.request_object("POST", path, json={"body": body})

    def list(self, task_id: str, *, limit: int | None = None) -> AsyncIterator[JSON]:
        """The task's comments, newest first, page after page."""
        return self.client.paginate(f"/api/tasks/{task_id}/comments", limit=limit)

    async def page(self, task_id: str, **params: Any) -> JSON:
        path = f"/api/tasks/{task_id}/comments"
        return await self.client.request_object("GET", path, params=params)

    async def get(self, comment_id: str) -> JSON:
        return await self.client.request_object("GET", f"/api/comments/{comment_id}")

    async def update(
        self, comment_id: str, body: str, *, if_match: int | str | None = None
    ) -> JSON:
        headers = if_match_header(if_match) if if_match is not None else {}
        return await self.client.request_object(
            "PATCH", f"/api/comments/{comment_id}", json={"body": body}, headers=headers
        )

    async def delete(self, comment_id: str, *, if_match: int | str | None = None) -> None:
        headers = if_match_header(if_match) if if_match is not None else {}
        await self.client.request("DELETE", f"/api/comments/{comment_id}", headers=headers)
