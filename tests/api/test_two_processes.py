"""Two server processes on one PostgreSQL database and one Redis, as a scaled-out deployment
runs: a verification flip is seen by the other process on its next request, and a rate limit
holds exactly across both."""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, LiveServer, postgres_schema, start_server, stop_server

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, catalog_file: Path
) -> Iterator[tuple[LiveServer, LiveServer]]:
    with postgres_schema("limner_pair") as url:
        env = {"LIMNER_DATABASE_URL": url, "LIMNER_REDIS_URL": "redis://127.0.0.1:6379/0"}
        first = start_server(tmp_path_factory.mktemp("a"), ["--catalog", str(catalog_file)], env)
        try:
            second = start_server(
                tmp_path_factory.mktemp("b"), ["--catalog", str(catalog_file)], env
            )
        except Exception:
            stop_server(first)
            raise
        yield first, second
        stop_server(second)
        stop_server(first)


def _operator(server: LiveServer, method: str, path: str, body: object = None) -> Any:
    response = httpx.request(
        method,
        server.api_url + path,
        json=body,
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _generate(server: LiveServer, key: str) -> httpx.Response:
    return httpx.post(
        server.api_url + "/images/generations",
        json={"model": "gpt-image-1", "prompt": "a red circle", "quality": "low"},
        headers={"authorization": f"Bearer {key}"},
        timeout=120,
    )


def test_verification_reaches_the_other_process_on_its_next_request(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    first, second = pair
    organization = _operator(first, "POST", "/limner/organizations", {"name": "new", "tier": "1"})
    org, project = organization["id"], organization["default_project_id"]
    key = _operator(
        first, "POST", f"/limner/organizations/{org}/projects/{project}/api_keys", {"name": "k"}
    )["value"]
    assert _generate(second, key).status_code == 403
    _operator(first, "POST", f"/limner/organizations/{org}", {"verified": True})
    assert _generate(second, key).status_code == 200
    assert _generate(first, key).status_code == 200
    _operator(second, "POST", f"/limner/organizations/{org}", {"verified": False})
    assert _generate(first, key).status_code == 403


def test_a_rate_limit_holds_exactly_across_processes(pair: tuple[LiveServer, LiveServer]) -> None:
    first, second = pair
    with openai.OpenAI(
        base_url=first.api_url, admin_api_key=ADMIN_KEY, api_key="", max_retries=0
    ) as admin:
        projects = admin.admin.organization.projects
        project = projects.create(name="spread")
        account = projects.service_accounts.create(project.id, name="app")
        assert account.api_key is not None
        key = account.api_key.value
        projects.rate_limits.update_rate_limit(
            "rl-gpt-image-1", project_id=project.id, max_images_per_1_minute=10
        )
    barrier = Barrier(50)

    def one(index: int) -> int:
        barrier.wait()
        return _generate(pair[index % 2], key).status_code

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(one, range(50)))
    assert statuses.count(200) == 10 and statuses.count(429) == 40
    # Both processes billed into the one database: exactly ten images, read from either.
    with openai.OpenAI(
        base_url=second.api_url, admin_api_key=ADMIN_KEY, api_key="", max_retries=0
    ) as admin:
        usage = admin.admin.organization.usage.images(
            start_time=int(time.time()) - 3600, bucket_width="1h", project_ids=[project.id]
        )
    assert sum(r.images for bucket in usage.data for r in bucket.results) == 10
