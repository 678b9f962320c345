import httpx
import pytest

from .conftest import Account, bearer, login, password_grant, refresh_grant


async def test_read_me(client: httpx.AsyncClient, account: Account) -> None:
    tokens = await login(client, account)
    response = await client.get("/auth/users/me", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.json()["email"] == account.email


async def test_read_me_without_token_is_401_with_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/auth/users/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "not_authenticated"


async def test_auth_refuses_the_access_token_of_an_ended_session(
    client: httpx.AsyncClient, account: Account
) -> None:
    """auth-service asks its own tables: a session ended by logout (or a password change
    elsewhere, a reset, a deactivation) no longer opens its routes, while another session of
    the same user still does."""
    ended, live = await login(client, account), await login(client, account)
    logout = await client.post("/auth/logout", json={"refresh_token": ended["refresh_token"]})
    assert logout.status_code == 204
    refused = await client.get("/auth/users/me", headers=bearer(ended["access_token"]))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    still = await client.get("/auth/users/me", headers=bearer(live["access_token"]))
    assert still.status_code == 200


async def test_update_display_name(client: httpx.AsyncClient, account: Account) -> None:
    tokens = await login(client, account)
    response = await client.patch(
        "/auth/users/me", json={"display_name": "Grace"}, headers=bearer(tokens["access_token"])
    )
    assert response.status_code == 200
    assert response.json()["display_name"] == "Grace"
    again = await client.get("/auth/users/me", headers=bearer(tokens["access_token"]))
    assert again.json()["display_name"] == "Grace"


async def test_empty_patch_changes_nothing(client: httpx.AsyncClient, account: Account) -> None:
    tokens = await login(client, account)
    before = (await client.get("/auth/users/me", headers=bearer(tokens["access_token"]))).json()
    response = await client.patch("/auth/users/me", json={}, headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.json() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": "new password 1"}, "current_password"),
        ({"password": "short", "current_password": "x"}, "password"),
        ({"display_name": ""}, "display_name"),
        ({"display_name": 5}, "display_name"),
        ({"email": "new@example.com"}, "email"),
    ],
)
async def test_invalid_updates_are_422_naming_the_field(
    client: httpx.AsyncClient, account: Account, body: dict[str, object], field: str
) -> None:
    tokens = await login(client, account)
    response = await client.patch(
        "/auth/users/me", json=body, headers=bearer(tokens["access_token"])
    )
    assert response.status_code == 422
    assert any(err["loc"][-1] == field for err in response.json()["detail"])


async def test_wrong_current_password_is_403_and_changes_nothing(
    client: httpx.AsyncClient, account: Account
) -> None:
    tokens = await login(client, account)
    response = await client.patch(
        "/auth/users/me",
        json={"password": "brand new password", "current_password": "not it at all"},
        headers=bearer(tokens["access_token"]),
    )
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_current_password"
    assert (await password_grant(client, account.email, account.password)).status_code == 200
    assert (await refresh_grant(client, tokens["refresh_token"])).status_code == 200


async def test_password_change_ends_the_other_sessions(
    client: httpx.AsyncClient, account: Account
) -> None:
    current = await login(client, account)
    other = await login(client, account)
    response = await client.patch(
        "/auth/users/me",
        json={"password": "brand new password", "current_password": account.password},
        headers=bearer(current["access_token"]),
    )
    assert response.status_code == 200

    assert (await refresh_grant(client, other["refresh_token"])).status_code == 400
    assert (await refresh_grant(client, current["refresh_token"])).status_code == 200
    assert (await password_grant(client, account.email, account.password)).status_code == 400
    assert (await password_grant(client, account.email, "brand new password")).status_code == 200
