"""The playground's files as the server hands them out: the page, its modules, the policy that
holds them to this server, and `/` for a browser."""

import http.client
import json
import re
from pathlib import Path

import httpx
import pytest

from limner.api.playground import CONTENT_SECURITY_POLICY, PLAYGROUND_DIR
from tests.conftest import LiveServer

FILES = sorted(path.relative_to(PLAYGROUND_DIR) for path in PLAYGROUND_DIR.rglob("*.*"))


def test_a_browser_at_the_root_is_sent_to_the_playground(live_server: LiveServer) -> None:
    html = httpx.get(live_server.base_url + "/", headers={"accept": "text/html,*/*"})
    assert html.status_code == 307 and html.headers["location"] == "/playground"
    api = httpx.get(live_server.base_url + "/", headers={"accept": "application/json"})
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"


def test_every_file_is_served_with_its_type_and_the_policy(live_server: LiveServer) -> None:
    page = httpx.get(live_server.base_url + "/playground")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    # Every module and stylesheet the page and the modules name is there.
    named = set(re.findall(r'(?:src|href)="/playground/([^"]+)"', page.text))
    for module in (PLAYGROUND_DIR / "js").glob("*.js"):
        named |= {f"js/{name}" for name in re.findall(r'from "\./([^"]+)"', module.read_text())}
    assert named and named <= {str(path) for path in FILES}
    types = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
    for path in FILES:
        answer = httpx.get(f"{live_server.base_url}/playground/{path}")
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith(types[path.suffix])
        assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["../app.py", "%2e%2e/app.py", "js/../../settings.py", "nope.js"])
def test_nothing_outside_the_playground_is_served(live_server: LiveServer, path: str) -> None:
    # http.client sends the path as written (httpx would tidy the dots away first).
    connection = http.client.HTTPConnection(
        httpx.URL(live_server.base_url).host, httpx.URL(live_server.base_url).port
    )
    connection.request("GET", f"/playground/{path}")
    answer = connection.getresponse()
    body = json.loads(answer.read())
    connection.close()
    assert answer.status == 404 and "The playground has no file" in body["error"]["message"]


@pytest.mark.parametrize("path", FILES, ids=str)
def test_no_file_reaches_for_another_origin(path: Path) -> None:
    """The server may run offline: no CDN, no font service, no analytics. (The SVG namespace
    is a name, not a fetch.)"""
    text = (PLAYGROUND_DIR / path).read_text()
    outside = [
        url for url in re.findall(r"https?://[^\s\"'`)]+", text) if "w3.org/2000/svg" not in url
    ]
    assert outside == []
    assert "<script>" not in text and " style=" not in text  # nothing inline: the policy forbids it


def test_the_package_ships_every_playground_file() -> None:
    """pyproject's package-data globs cover the directory, so a wheel carries the page."""
    pyproject = (PLAYGROUND_DIR.parents[1] / "pyproject.toml").read_text()
    globs = re.findall(r'"(playground/[^"]+)"', pyproject)
    assert all(
        any(path.match(pattern.removeprefix("playground/")) for pattern in globs) for path in FILES
    )
