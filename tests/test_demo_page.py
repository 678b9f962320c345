"""The demo page in Debian's Chromium, driven by Playwright, against the stack's gateway."""

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright, expect

from .conftest import PASSWORD, ROOT, User, mailed_link, sign_up

CHROMIUM = "/usr/bin/chromium"
# The flags a browser needs here: no sandbox as root, and no calls out of a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "var" / "artifacts"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("Chromium is missing: apt-get install -y chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def shared_board(gateway: httpx.AsyncClient) -> tuple[dict[str, str], User, User, User]:
    owner, editor, viewer = await sign_up(gateway), await sign_up(gateway), await sign_up(gateway)
    board = (
        await gateway.post(
            "/api/boards", json={"name": f"Demo {uuid.uuid4().hex[:4]}"}, headers=owner.headers
        )
    ).json()
    for user, role in ((editor, "editor"), (viewer, "viewer")):
        response = await gateway.put(
            f"/api/boards/{board['id']}/members/{user.id}",
            json={"role": role},
            headers=owner.headers,
        )
        assert response.status_code == 200
    return board, owner, editor, viewer


async def open_as(
    browser: Browser, base_url: str, user: User, board_name: str
) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    page = await context.new_page()
    await page.goto(base_url + "/")
    await page.fill("input[name=email]", user.email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[value=login]")
    await page.click(f"#boards button:has-text('{board_name}')")
    await expect(page.locator("#live")).to_have_text("live", timeout=5000)
    return context, page


def column(page: Page, status: str, title: str) -> object:
    return page.locator(f".column[data-status={status}] .task", has_text=title)


@pytest.mark.compose
async def test_two_users_see_each_others_changes_within_a_second(
    browser: Browser, base_url: str, shared_board: tuple[dict[str, str], User, User, User]
) -> None:
    board, owner, editor, _ = shared_board
    owner_context, owner_page = await open_as(browser, base_url, owner, board["name"])
    editor_context, editor_page = await open_as(browser, base_url, editor, board["name"])
    try:
        await owner_page.fill("#task-form input[name=title]", "Write the announcement")
        await owner_page.click("#task-form button")
        await expect(column(editor_page, "todo", "Write the announcement")).to_be_visible(
            timeout=1000
        )
        await (
            editor_page.locator(".task", has_text="Write the announcement")
            .get_by_role("button", name="→")
            .click()
        )
        await expect(column(owner_page, "doing", "Write the announcement")).to_be_visible(
            timeout=1000
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await owner_page.screenshot(path=ARTIFACTS / "board.png")
    finally:
        await owner_context.close()
        await editor_context.close()


@pytest.mark.compose
async def test_events_written_while_offline_appear_after_reconnecting(
    browser: Browser,
    base_url: str,
    gateway: httpx.AsyncClient,
    shared_board: tuple[dict[str, str], User, User, User],
) -> None:
    board, owner, editor, _ = shared_board
    context, page = await open_as(browser, base_url, editor, board["name"])
    try:
        await context.set_offline(True)
        await expect(page.locator("#live")).to_have_text("reconnecting", timeout=2000)
        for title in ("Written while offline 1", "Written while offline 2"):
            response = await gateway.post(
                f"/api/boards/{board['id']}/tasks", json={"title": title}, headers=owner.headers
            )
            assert response.status_code == 201
        await context.set_offline(False)
        await expect(page.locator("#live")).to_have_text("live", timeout=5000)
        for title in ("Written while offline 1", "Written while offline 2"):
            await expect(column(page, "todo", title)).to_be_visible(timeout=2000)
    finally:
        await context.close()


async def test_a_viewer_is_told_the_board_is_read_only(
    browser: Browser,
    base_url: str,
    gateway: httpx.AsyncClient,
    shared_board: tuple[dict[str, str], User, User, User],
) -> None:
    board, owner, _, viewer = shared_board
    await gateway.post(
        f"/api/boards/{board['id']}/tasks",
        json={"title": "Look, don't touch"},
        headers=owner.headers,
    )
    context, page = await open_as(browser, base_url, viewer, board["name"])
    try:
        await expect(page.locator("#readonly")).to_be_visible()
        await expect(page.locator("#task-form")).to_be_hidden()
        task = column(page, "todo", "Look, don't touch")
        await expect(task).to_be_visible()
        # Comments are open to every member; nothing else on the card is.
        await expect(task.get_by_role("button")).to_have_text(["Comments"])
    finally:
        await context.close()


async def test_a_stale_edit_is_shown_and_reloaded_not_overwritten(
    browser: Browser,
    base_url: str,
    gateway: httpx.AsyncClient,
    shared_board: tuple[dict[str, str], User, User, User],
) -> None:
    board, owner, editor, _ = shared_board
    created = await gateway.post(
        f"/api/boards/{board['id']}/tasks", json={"title": "Contended"}, headers=owner.headers
    )
    task = created.json()
    context, page = await open_as(browser, base_url, editor, board["name"])
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        await release.wait()
        await route.continue_()

    try:
        # Keep the page from hearing about the rename: its live connection drops and cannot
        # come back (its ticket request is held) until the page has tried its stale edit.
        await context.route("**/realtime/tickets", hold)
        await context.set_offline(True)
        await expect(page.locator("#live")).to_have_text("reconnecting", timeout=2000)
        renamed = await gateway.patch(
            f"/api/tasks/{task['id']}",
            json={"title": "Renamed elsewhere"},
            headers={**owner.headers, "If-Match": '"1"'},
        )
        assert renamed.status_code == 200
        await context.set_offline(False)
        await page.locator(".task", has_text="Contended").get_by_role("button", name="→").click()
        await expect(page.locator("#error")).to_contain_text("changed this task meanwhile")
        await expect(column(page, "todo", "Renamed elsewhere")).to_be_visible(timeout=3000)
        await expect(page.locator(".task", has_text="Contended")).to_have_count(0)
    finally:
        release.set()
        await context.close()


async def test_chat_and_presence_reach_the_other_user(
    browser: Browser, base_url: str, shared_board: tuple[dict[str, str], User, User, User]
) -> None:
    board, owner, editor, _ = shared_board
    owner_context, owner_page = await open_as(browser, base_url, owner, board["name"])
    editor_context, editor_page = await open_as(browser, base_url, editor, board["name"])
    try:
        await expect(owner_page.locator("#here li")).to_have_count(2, timeout=3000)
        await editor_page.fill("#chat-form input[name=text]", "on my way")
        await editor_page.click("#chat-form button")
        await expect(owner_page.locator("#chat")).to_contain_text("on my way", timeout=2000)
    finally:
        await owner_context.close()
        await editor_context.close()


async def test_a_member_removed_meanwhile_is_told_and_sent_back_to_the_boards(
    browser: Browser,
    base_url: str,
    gateway: httpx.AsyncClient,
    shared_board: tuple[dict[str, str], User, User, User],
) -> None:
    board, owner, _, viewer = shared_board
    context, page = await open_as(browser, base_url, viewer, board["name"])
    try:
        removed = await gateway.delete(
            f"/api/boards/{board['id']}/members/{viewer.id}", headers=owner.headers
        )
        assert removed.status_code == 204
        await expect(page.locator("#error")).to_have_text(
            "You no longer have access to this board.", timeout=3000
        )
        await expect(page.locator("#boards-view")).to_be_visible()
        await expect(page.locator("#boards button", has_text=board["name"])).to_have_count(0)
        await expect(page.locator("#live")).to_be_hidden()
    finally:
        await context.close()


async def sign_in_on(page: Page, email: str, password: str) -> None:
    await page.fill("#auth-form input[name=email]", email)
    await page.fill("#auth-form input[name=password]", password)
    await page.click("button[value=login]")
    await expect(page.locator("#boards-view")).to_be_visible()


@pytest.mark.compose
async def test_a_forgotten_password_is_reset_through_the_mailed_link(
    browser: Browser, base_url: str, gateway: httpx.AsyncClient, mail_url: str
) -> None:
    user = await sign_up(gateway)
    new_password = "a new password from the page"
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(base_url + "/")
        await page.click("#forgot summary")
        await page.fill("#forgot-form input[name=email]", user.email)
        await page.click("#forgot-form button")
        await expect(page.locator("#notice")).to_have_text(
            "If the address has an account, a link is on its way."
        )
        link = await mailed_link(mail_url, user.email, "reset-password")
        assert link.startswith(f"{base_url}/#reset-password=")
        # Opened as from a mail client: a page of its own.
        opened = await context.new_page()
        await opened.goto(link)
        await expect(opened.locator("#reset-view")).to_be_visible()
        assert opened.url == f"{base_url}/", "the token stays in the address bar"
        await opened.fill("#reset-form input[name=password]", new_password)
        await opened.click("#reset-form button")
        await expect(opened.locator("#notice")).to_have_text(
            "Your password is changed: sign in with the new one."
        )
        await sign_in_on(opened, user.email, new_password)
        await expect(opened.locator("#whoami")).to_have_attribute("title", user.email)
        # The link worked once; a second use is shown the error the API answers.
        again = await context.new_page()
        await again.goto(link)
        await again.fill("#reset-form input[name=password]", "yet another password")
        await again.click("#reset-form button")
        await expect(again.locator("#error")).to_have_text(
            "The link is invalid, expired or already used"
        )
    finally:
        await context.close()


async def test_an_email_address_is_verified_through_the_mailed_link(
    browser: Browser, base_url: str, gateway: httpx.AsyncClient, mail_url: str
) -> None:
    user = await sign_up(gateway)
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(base_url + "/")
        await sign_in_on(page, user.email, PASSWORD)
        await expect(page.locator("#unverified")).to_be_visible()
        await page.click("#verify-request")
        await expect(page.locator("#notice")).to_have_text(
            f"A verification link is on its way to {user.email}."
        )
        link = await mailed_link(mail_url, user.email, "verify-email")
        assert link.startswith(f"{base_url}/#verify-email=")
        opened = await context.new_page()
        await opened.goto(link)
        await expect(opened.locator("#notice")).to_have_text(
            f"Your email address {user.email} is verified."
        )
        assert opened.url == f"{base_url}/", "the token stays in the address bar"
        me = await gateway.get("/auth/users/me", headers=user.headers)
        assert me.json()["email_verified"] is True
        await sign_in_on(opened, user.email, PASSWORD)
        await expect(opened.locator("#unverified")).to_be_hidden()
    finally:
        await context.close()


VIEWS = ("#auth-view", "#boards-view", "#board-view")


async def expect_only_view(page: Page, view: str) -> None:
    for other in VIEWS:
        if other == view:
            await expect(page.locator(other)).to_be_visible()
        else:
            await expect(page.locator(other)).to_be_hidden()


async def test_each_state_shows_only_what_belongs_to_it(
    browser: Browser, base_url: str, gateway: httpx.AsyncClient
) -> None:
    user, newcomer = await sign_up(gateway), await sign_up(gateway)
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        page = await context.new_page()
        await page.goto(base_url + "/")
        # Signed out: the sign-in form, nothing of boards, no live badge.
        await expect_only_view(page, "#auth-view")
        for hidden in ("#columns", "#presence", "#member-form", "#comments", "#live", "#logout"):
            await expect(page.locator(hidden)).to_be_hidden()

        # Signed in, no board chosen: the board list, the user by name, still no live badge.
        await sign_in_on(page, user.email, PASSWORD)
        await expect_only_view(page, "#boards-view")
        for hidden in ("#columns", "#presence", "#member-form", "#chat-form", "#live"):
            await expect(page.locator(hidden)).to_be_hidden()
        await expect(page.locator("#logout")).to_be_visible()
        whoami = await page.locator("#whoami").inner_text()
        assert whoami
        assert user.id not in whoami

        # A board: its columns, members form (an owner), presence and a live badge that says so.
        await page.fill("#board-form input[name=name]", "States")
        await page.click("#board-form button")
        await expect_only_view(page, "#board-view")
        for shown in ("#columns", "#presence", "#member-form", "#task-form"):
            await expect(page.locator(shown)).to_be_visible()
        await expect(page.locator("#live")).to_have_text("live", timeout=5000)

        # Members are added by email; an unknown one is said so, not sent as an id.
        await page.fill("#member-form input[name=email]", f"nobody-{uuid.uuid4().hex}@example.com")
        await page.click("#member-form button")
        await expect(page.locator("#error")).to_contain_text("No account has the email")
        await page.fill("#member-form input[name=email]", newcomer.email.upper())
        await page.select_option("#member-form select[name=role]", "editor")
        await page.click("#member-form button")
        await expect(page.locator("#notice")).to_contain_text("is now editor on this board")
        board_name = page.locator("#board-name")
        boards = (await gateway.get("/api/boards", headers=newcomer.headers)).json()["items"]
        assert [(b["name"], b["role"]) for b in boards] == [
            (await board_name.inner_text(), "editor")
        ]

        await page.click("#back")
        await expect_only_view(page, "#boards-view")
        await expect(page.locator("#live")).to_be_hidden()
        await page.click("#logout")
        await expect_only_view(page, "#auth-view")
    finally:
        await context.close()


@pytest.mark.compose
async def test_a_comment_arrives_live_on_the_other_members_page(
    browser: Browser,
    base_url: str,
    gateway: httpx.AsyncClient,
    shared_board: tuple[dict[str, str], User, User, User],
) -> None:
    board, owner, _, viewer = shared_board
    for title in ("Draft the launch plan", "Book the venue"):
        created = await gateway.post(
            f"/api/boards/{board['id']}/tasks", json={"title": title}, headers=owner.headers
        )
        assert created.status_code == 201
    owner_context, owner_page = await open_as(browser, base_url, owner, board["name"])
    viewer_context, viewer_page = await open_as(browser, base_url, viewer, board["name"])
    try:
        for page in (owner_page, viewer_page):
            await expect(page.locator("#comments")).to_be_hidden()
            task = page.locator(".task", has_text="Draft the launch plan")
            await task.get_by_role("button", name="Comments").click()
            await expect(page.locator("#comments")).to_be_visible()
            await expect(page.locator("#comments-task")).to_have_text("Draft the launch plan")

        # A viewer comments; the owner's page shows it without reloading.
        await viewer_page.fill("#comment-form textarea", "Can we move it to Friday?")
        await viewer_page.click("#comment-form button")
        arrived = owner_page.locator(".comment", has_text="Can we move it to Friday?")
        await expect(arrived).to_be_visible(timeout=1000)
        await expect(arrived.get_by_role("button")).to_have_text(["Delete"])
        mine = viewer_page.locator(".comment", has_text="Can we move it to Friday?")
        await expect(mine.locator(".meta")).to_contain_text("you")
        await expect(mine.get_by_role("button")).to_have_text(["Edit", "Delete"])
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await owner_page.screenshot(path=ARTIFACTS / "demo-board.png", full_page=True)

        # The owner deletes it; it leaves the viewer's page too.
        await arrived.get_by_role("button", name="Delete").click()
        await expect(mine).to_have_count(0, timeout=1000)
    finally:
        await owner_context.close()
        await viewer_context.close()
