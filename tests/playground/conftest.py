"""A real browser (Debian's chromium, driven by Playwright) against `limner serve` on the
embedded model. Without the browser these tests skip and say what to install."""

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import API_KEY, LiveServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


# Module-scoped, never session: Playwright's sync API runs an event loop in the main thread
# while it is open, and every later test calling asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    if not shutil.which(CHROMIUM):
        pytest.skip(
            "Debian's chromium is not installed: scripts/install-browser (apt-get install chromium)"
        )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture()
def page(browser: Any, mini_server: LiveServer) -> Iterator[Any]:
    """A fresh browser profile on the playground, its console errors collected. The page's own
    Content-Security-Policy is bypassed for the harness (Playwright's polling evaluates
    strings); test_the_page_runs_under_its_own_policy keeps it."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, bypass_csp=True)
    opened = context.new_page()
    opened.errors = []  # type: ignore[attr-defined]
    opened.on("pageerror", lambda error: opened.errors.append(str(error)))
    opened.goto(mini_server.base_url + "/playground")
    yield opened
    context.close()


def enter_keys(page: Any, api_key: str = API_KEY, admin_key: str = "") -> None:
    page.click("#tab-account")
    page.fill("#api-key", api_key)
    page.fill("#admin-key", admin_key)
    page.click("#key-form button[type=submit]")
    page.wait_for_function(
        "document.querySelectorAll('#generate-form select[name=model] option').length > 0"
    )
