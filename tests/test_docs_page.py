"""Each service's Swagger UI, rendered in Debian's Chromium through the gateway: it must work
under the gateway's Content-Security-Policy and without reaching any other host."""

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Route, async_playwright, expect

from .test_demo_page import CHROMIUM, CHROMIUM_ARGS

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.mark.compose
@pytest.mark.parametrize("service", ["auth", "api", "realtime"])
async def test_swagger_ui_renders_every_operation_offline(
    chromium: Browser, gateway: httpx.AsyncClient, base_url: str, service: str
) -> None:
    openapi = (await gateway.get(f"/{service}/openapi.json")).json()
    operations = sum(
        1 for path in openapi["paths"].values() for method in path if method in HTTP_METHODS
    )
    assert operations > 0
    context = await chromium.new_context()
    elsewhere: list[str] = []
    errors: list[str] = []

    async def gateway_only(route: Route) -> None:
        # As on a machine without internet: anything not from the gateway fails.
        if route.request.url.startswith(base_url + "/"):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    def console(message: ConsoleMessage) -> None:
        # Content-Security-Policy violations are reported here, as errors.
        if message.type == "error":
            errors.append(message.text)

    try:
        await context.route("**/*", gateway_only)
        page = await context.new_page()
        page.on("console", console)
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"{base_url}/{service}/docs")
        await expect(page.locator(".info .title")).to_contain_text(f"{service}-service")
        await expect(page.locator(".opblock")).to_have_count(operations)
        # An operation opens and shows its responses, as a user clicking it would see.
        await page.locator(".opblock-summary").first.click()
        await expect(page.locator(".opblock .responses-wrapper").first).to_be_visible()
    finally:
        await context.close()
    assert elsewhere == []
    assert errors == []
