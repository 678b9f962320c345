"""Answers the kit gives before a route runs: a 405 that names every allowed method, and a
body that cannot be parsed as JSON (not UTF-8, nested too deep) as a 422 naming the body."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter

from devstack.testing import asgi_client
from servicekit.app import create_service_app
from servicekit.errors import ErrorBody
from servicekit.schemas import StrictModel
from servicekit.settings import ServiceSettings


class Item(StrictModel):
    name: str


router = APIRouter(prefix="/kit")


@router.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@router.patch("/items/{item_id}")
async def update_item(item_id: int, body: Item) -> dict[str, int]:
    return {"id": item_id}


@router.delete("/items/{item_id}", status_code=204)
async def delete_item(item_id: int) -> None:
    return None


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_service_app(
        title="kit", prefix="/kit", settings=ServiceSettings(), routers=[router]
    )
    async with asgi_client(app, "http://kit") as client:
        yield client


async def test_405_allow_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.put("/kit/items/1", json={"name": "x"})
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, PATCH"
    ErrorBody.model_validate(response.json())


@pytest.mark.parametrize(
    "content",
    [b'{"name": "\xff\xfe"}', b"\xc3\x28", b"[" * 5000 + b"]" * 5000],
    ids=["invalid utf-8 in a string", "invalid utf-8", "5000 levels"],
)
async def test_unparseable_bodies_are_422_naming_the_body(
    client: httpx.AsyncClient, content: bytes
) -> None:
    response = await client.patch(
        "/kit/items/1", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    body = ErrorBody.model_validate(response.json())
    assert body.error == "validation_error"
    assert isinstance(body.detail, list)
    assert body.detail[0].loc[0] == "body"
