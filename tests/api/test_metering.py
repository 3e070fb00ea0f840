"""Rate limits, metering and budgets end to end: the live server, the SDK's admin client and
plain HTTP for the headers."""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from threading import Barrier

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, LiveServer

# gpt-image-1 prices in nano-dollars per token (text in, image out).
TEXT_IN, IMAGE_OUT = 5_000, 40_000


@pytest.fixture()
def admin(platform_server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=platform_server.api_url, admin_api_key=ADMIN_KEY, api_key="", max_retries=0
    ) as sdk:
        yield sdk


def _project_with_key(admin: openai.OpenAI, name: str) -> tuple[str, str]:
    projects = admin.admin.organization.projects
    project = projects.create(name=name)
    account = projects.service_accounts.create(project.id, name=f"{name} app")
    assert account.api_key is not None
    return project.id, account.api_key.value


def _generate(platform_server: LiveServer, key: str) -> httpx.Response:
    return httpx.post(
        platform_server.api_url + "/images/generations",
        json={"model": "gpt-image-1", "prompt": "a red circle", "quality": "low"},
        headers={"authorization": f"Bearer {key}"},
        timeout=120,
    )


def test_fifty_parallel_requests_against_ten_images_admit_exactly_ten(
    admin: openai.OpenAI, platform_server: LiveServer
) -> None:
    project, key = _project_with_key(admin, "burst")
    rate_limits = admin.admin.organization.projects.rate_limits
    row = rate_limits.update_rate_limit(
        "rl-gpt-image-1", project_id=project, max_images_per_1_minute=10
    )
    assert row.max_images_per_1_minute == 10 and row.model == "gpt-image-1"
    listed = {r.id: r for r in rate_limits.list_rate_limits(project)}
    assert listed["rl-gpt-image-1"].max_images_per_1_minute == 10
    # The organization (tier 5) allows 250; the project can only go lower.
    with pytest.raises(openai.BadRequestError):
        rate_limits.update_rate_limit(
            "rl-gpt-image-1", project_id=project, max_images_per_1_minute=251
        )
    with pytest.raises(openai.BadRequestError) as unknown:
        rate_limits.update_rate_limit("rl-gpt-9", project_id=project, max_images_per_1_minute=1)
    assert unknown.value.code == "rate_limit_does_not_exist_for_org_and_model"

    start = int(time.time())
    barrier = Barrier(50)

    def one(_: int) -> httpx.Response:
        barrier.wait()
        return _generate(platform_server, key)

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(one, range(50)))
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(admitted) == 10 and len(refused) == 40
    for response in admitted:
        assert response.headers["x-ratelimit-limit-images"] == "10"
        assert int(response.headers["x-ratelimit-remaining-images"]) < 10
        assert response.headers["x-ratelimit-limit-requests"] == "250"
    for response in refused:
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
        assert "images per min (IPM): Limit 10" in error["message"]
        assert 1 <= int(response.headers["retry-after"]) <= 120
        assert int(response.headers["retry-after-ms"]) > 0
        assert response.headers["x-ratelimit-remaining-images"] == "0"
        assert "x-should-retry" not in response.headers

    # Exactly ten delivered requests were metered, and their costs sum exactly.
    usage = admin.admin.organization.usage.images(
        start_time=start - 60, bucket_width="1d", project_ids=[project], group_by=["model"]
    )
    results = [r for bucket in usage.data for r in bucket.results]
    assert [(r.model, r.images, r.num_model_requests) for r in results] == [("gpt-image-1", 10, 10)]
    expected = sum(
        r.json()["usage"]["input_tokens_details"]["text_tokens"] * TEXT_IN
        + r.json()["usage"]["output_tokens"] * IMAGE_OUT
        for r in admitted
    )
    costs = admin.admin.organization.usage.costs(
        start_time=start - 60, project_ids=[project], group_by=["line_item"]
    )
    items = {r.line_item: r for bucket in costs.data for r in bucket.results}
    assert set(items) == {"gpt-image-1 text, input", "gpt-image-1 image, output"}
    assert items["gpt-image-1 image, output"].quantity == 10 * 272
    total = sum(Decimal(str(r.amount.value)) for r in items.values())
    assert total == Decimal(expected) / 10**9


def test_project_budget_refuses_before_generating(
    admin: openai.OpenAI, platform_server: LiveServer
) -> None:
    project, key = _project_with_key(admin, "budget")
    # 5 cents; a low-quality 1024x1024 costs 272 x $40/1M = 1.088 cents plus a few text tokens.
    response = httpx.post(
        f"{platform_server.api_url}/organization/projects/{project}/spend_limit",
        json={"threshold_amount": 5, "currency": "USD", "interval": "month"},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["enforcement"]["status"] == "enforcing"
    statuses = [_generate(platform_server, key).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 200]
    refused = _generate(platform_server, key)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "insufficient_quota"
    assert refused.json()["error"]["code"] == "project_spend_limit_exceeded"
    assert refused.headers["x-should-retry"] == "false"
    # The SDK obeys x-should-retry: one attempt, no retries, despite max_retries=2.
    with openai.OpenAI(base_url=platform_server.api_url, api_key=key, max_retries=2) as sdk:
        started = time.monotonic()
        with pytest.raises(openai.RateLimitError) as caught:
            sdk.images.generate(model="gpt-image-1", prompt="a red circle", quality="low")
        assert time.monotonic() - started < 0.4
    assert caught.value.code == "project_spend_limit_exceeded"
    usage = admin.admin.organization.usage.images(
        start_time=int(time.time()) - 3600, bucket_width="1h", project_ids=[project]
    )
    assert sum(r.images for bucket in usage.data for r in bucket.results) == 4


def test_failed_requests_are_never_billed(
    admin: openai.OpenAI, platform_server: LiveServer
) -> None:
    project, key = _project_with_key(admin, "failures")
    admin.admin.organization.projects.rate_limits.update_rate_limit(
        "rl-broken-model", project_id=project, max_images_per_1_minute=2
    )
    bad = httpx.post(
        platform_server.api_url + "/images/generations",
        json={"model": "gpt-image-1", "prompt": "x", "size": "13x13"},
        headers={"authorization": f"Bearer {key}"},
    )
    assert bad.status_code == 400
    # The engine fails mid-render: a 500, and its image goes back to the per-minute window, so
    # the third failure still reaches the engine instead of meeting a 429.
    for _ in range(3):
        failed = httpx.post(
            platform_server.api_url + "/images/generations",
            json={"model": "broken-model", "prompt": "x", "quality": "low"},
            headers={"authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert failed.status_code == 500
    usage = admin.admin.organization.usage.images(
        start_time=int(time.time()) - 3600, bucket_width="1h", project_ids=[project]
    )
    assert usage.data and all(bucket.results == [] for bucket in usage.data)


def test_each_image_response_tells_its_price_and_the_costs_api_agrees(
    admin: openai.OpenAI, platform_server: LiveServer
) -> None:
    project, key = _project_with_key(admin, "priced")
    answers = [_generate(platform_server, key) for _ in range(2)]
    told = [Decimal(answer.headers["x-limner-cost-usd"]) for answer in answers]
    # A low 1024x1024 is 272 image tokens at $40/1M, plus the prompt's text tokens at $5/1M.
    assert all(Decimal("0.01088") < price < Decimal("0.0110") for price in told)
    costs = admin.admin.organization.usage.costs(
        start_time=int(time.time()) - 3600, project_ids=[project]
    )
    billed = sum(Decimal(str(r.amount.value)) for bucket in costs.data for r in bucket.results)
    assert billed == sum(told)
