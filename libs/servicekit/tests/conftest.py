from collections.abc import AsyncIterator

import pytest

from devstack.testing import fresh_database


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with fresh_database("servicekit") as url:
        yield url
