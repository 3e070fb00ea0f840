"""Rate limits: exact under concurrency (threads, connections, processes), all or nothing,
refilled continuously, reported as OpenAI reports them."""

import multiprocessing
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.synchronize import Barrier as ProcessBarrier
from threading import Barrier

import pytest
import redis

from limner.metering.limits import (
    Admission,
    MemoryRateLimiter,
    Quota,
    RateLimiter,
    RedisRateLimiter,
    build_rate_limiter,
    go_duration,
    rate_limit_headers,
    refusal_message,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
RACERS = 50


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def memory(clock: FakeClock) -> MemoryRateLimiter:
    return MemoryRateLimiter(clock=clock)


@pytest.fixture()
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    prefix = f"limner:test:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture()
def redis_limiter(redis_prefix: str) -> Iterator[RedisRateLimiter]:
    client = redis.Redis.from_url(REDIS_URL)
    yield RedisRateLimiter(client, prefix=redis_prefix)
    client.close()


def requests(limit: int, scope: str = "org_a/gpt-image-1") -> Quota:
    return Quota(scope=scope, measure="requests", limit=limit, amount=1)


def race(acquire: Callable[[int], Admission], racers: int = RACERS) -> int:
    """Run `acquire` on `racers` threads released together; return how many were admitted."""
    barrier = Barrier(racers)

    def racer(index: int) -> bool:
        barrier.wait(timeout=30)
        return acquire(index).admitted

    with ThreadPoolExecutor(max_workers=racers) as pool:
        return sum(pool.map(racer, range(racers)))


# --- Exact under concurrency -------------------------------------------------------------------


def test_memory_admits_exactly_the_limit_when_threads_race() -> None:
    limiter = MemoryRateLimiter()  # the real clock: 50 racers refill far less than one request

    assert race(lambda _: limiter.acquire([requests(10)])) == 10


def test_redis_admits_exactly_the_limit_when_connections_race(redis_prefix: str) -> None:
    clients = [redis.Redis.from_url(REDIS_URL) for _ in range(RACERS)]
    limiters = [RedisRateLimiter(client, prefix=redis_prefix) for client in clients]
    try:
        assert race(lambda index: limiters[index].acquire([requests(10)])) == 10
    finally:
        for client in clients:
            client.close()


def _hammer(
    prefix: str, attempts: int, barrier: ProcessBarrier, results: "multiprocessing.Queue[int]"
) -> None:
    """One OS process: wait for the others, then try `attempts` times; report the admissions."""
    limiter = RedisRateLimiter.from_url(REDIS_URL, prefix=prefix)
    barrier.wait(timeout=60)
    results.put(sum(limiter.acquire([requests(10)]).admitted for _ in range(attempts)))


def test_redis_admits_exactly_the_limit_across_processes(redis_prefix: str) -> None:
    context = multiprocessing.get_context("spawn")
    processes = 3
    barrier = context.Barrier(processes)
    results: multiprocessing.Queue[int] = context.Queue()
    workers = [
        context.Process(target=_hammer, args=(redis_prefix, 20, barrier, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    admitted = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
        assert worker.exitcode == 0

    assert sum(admitted) == 10


# --- Both backends decide alike ----------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    name: str = request.param
    fixture: RateLimiter = request.getfixturevalue(f"{name}_limiter")
    return fixture


@pytest.fixture()
def memory_limiter(memory: MemoryRateLimiter) -> MemoryRateLimiter:
    return memory


def test_a_refused_request_consumes_nothing(limiter: RateLimiter) -> None:
    org = Quota(scope="org_a/gpt-image-1", measure="images", limit=100, amount=2)
    project = Quota(scope="proj_b/gpt-image-1", measure="images", limit=3, amount=2)

    first = limiter.acquire([org, project])
    second = limiter.acquire([org, project])

    assert first.admitted
    assert [w.remaining for w in first.windows] == [98, 1]
    assert not second.admitted
    assert second.blocking == project
    assert [w.remaining for w in second.windows] == [98, 1]  # the org bucket kept its 98
    assert second.retry_after is not None
    assert 19 < second.retry_after <= 20  # 1 image at 3/min, less what refilled meanwhile


def test_a_request_larger_than_the_limit_can_never_fit(limiter: RateLimiter) -> None:
    small = Quota(scope="org_a/gpt-image-1", measure="images", limit=3, amount=4)

    admission = limiter.acquire([requests(10), small])

    assert not admission.admitted
    assert admission.retry_after is None
    assert admission.blocking == small
    assert [w.remaining for w in admission.windows] == [10, 3]


def test_zero_amounts_never_block_but_report_their_window(limiter: RateLimiter) -> None:
    tokens = Quota(scope="org_a/gpt-image-1", measure="tokens", limit=1000, amount=0)

    admission = limiter.acquire([requests(1), tokens])

    assert admission.admitted
    assert admission.windows[1].remaining == 1000
    assert admission.windows[1].reset_seconds == 0


def test_a_bucket_named_twice_must_hold_both_amounts(limiter: RateLimiter) -> None:
    twice = Quota(scope="org_a/gpt-image-1", measure="images", limit=5, amount=3)

    assert not limiter.acquire([twice, twice]).admitted
    assert limiter.acquire([twice]).admitted


def test_refund_gives_back_but_never_above_the_limit(limiter: RateLimiter) -> None:
    # A small limit refills slowly (one token in 6 s), so Redis's real clock cannot blur the sums.
    quota = Quota(scope="org_a/gpt-image-1", measure="tokens", limit=10, amount=4)
    assert limiter.acquire([quota]).windows[0].remaining == 6

    limiter.refund([Quota(scope=quota.scope, measure="tokens", limit=10, amount=1)])
    assert limiter.acquire([quota]).windows[0].remaining == 3  # 6 + 1 - 4

    limiter.refund([Quota(scope=quota.scope, measure="tokens", limit=10, amount=50)])
    full = limiter.acquire([Quota(scope=quota.scope, measure="tokens", limit=10, amount=0)])
    assert full.windows[0].remaining == 10


def test_redis_keys_expire_once_full_again(redis_limiter: RedisRateLimiter) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    quota = requests(60)
    try:
        redis_limiter.acquire([quota])
        ttl = client.pttl(redis_limiter.key(quota))
    finally:
        client.close()

    assert 0 < ttl <= 1000  # one request at 60/min refills in one second


def test_build_rate_limiter_picks_the_backend() -> None:
    assert isinstance(build_rate_limiter(None), MemoryRateLimiter)
    assert isinstance(build_rate_limiter(REDIS_URL), RedisRateLimiter)


# --- Refill over time (memory, fake clock) ----------------------------------------------------


def test_buckets_refill_continuously(memory: MemoryRateLimiter, clock: FakeClock) -> None:
    quota = requests(60)
    assert all(memory.acquire([quota]).admitted for _ in range(60))
    refused = memory.acquire([quota])
    assert not refused.admitted
    assert refused.retry_after == 1.0
    assert refused.windows[0].reset_seconds == 60.0

    clock.now += 1.0
    assert memory.acquire([quota]).admitted
    refused = memory.acquire([quota])
    assert not refused.admitted
    assert refused.retry_after == 1.0

    clock.now += 0.25
    refused = memory.acquire([quota])
    assert refused.retry_after == 0.75
    assert refused.windows[0].remaining == 0


def test_refill_stops_at_the_limit(memory: MemoryRateLimiter, clock: FakeClock) -> None:
    quota = requests(10)
    memory.acquire([quota])
    clock.now += 3600

    assert memory.acquire([quota]).windows[0].remaining == 9


def test_idle_buckets_are_forgotten(memory: MemoryRateLimiter, clock: FakeClock) -> None:
    memory.acquire([requests(10, scope="idle")])
    clock.now += 61
    memory.acquire([requests(10, scope="busy")])

    assert [scope for scope, _ in memory._buckets] == ["busy"]


# --- Reporting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.02, "20ms"),
        (0.0001, "1ms"),
        (0.9999, "1s"),
        (1, "1s"),
        (7.25, "7.25s"),
        (6.9721, "6.973s"),
        (1.1, "1.1s"),
        (60, "1m0s"),
        (61.5, "1m1.5s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
    ],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_headers_report_the_tightest_quota_per_measure(
    memory: MemoryRateLimiter, clock: FakeClock
) -> None:
    org_requests = Quota(scope="org", measure="requests", limit=60, amount=1)
    org_images = Quota(scope="org", measure="images", limit=120, amount=4)
    project_images = Quota(scope="proj", measure="images", limit=6, amount=4)
    tokens = Quota(scope="org", measure="tokens", limit=6000, amount=300)

    admitted = memory.acquire([org_requests, org_images, project_images, tokens])

    assert rate_limit_headers(admitted) == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "5700",
        "x-ratelimit-reset-tokens": "3s",
        "x-ratelimit-limit-images": "6",
        "x-ratelimit-remaining-images": "2",
        "x-ratelimit-reset-images": "40s",
    }

    clock.now += 0.5
    refused = memory.acquire([org_requests, org_images, project_images, tokens])

    assert not refused.admitted
    assert refused.blocking == project_images
    assert refused.retry_after == pytest.approx(19.5)  # 2.05 images held, 4 wanted, 6/min
    assert rate_limit_headers(refused) == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "500ms",
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "5750",
        "x-ratelimit-reset-tokens": "2.5s",
        "x-ratelimit-limit-images": "6",
        "x-ratelimit-remaining-images": "2",
        "x-ratelimit-reset-images": "39.5s",
        "retry-after": "20",
        "retry-after-ms": "19500",
    }


def test_headers_break_ties_on_the_smaller_limit(memory: MemoryRateLimiter) -> None:
    org = Quota(scope="org", measure="images", limit=11, amount=10)
    project = Quota(scope="proj", measure="images", limit=10, amount=9)

    headers = rate_limit_headers(memory.acquire([org, project]))

    assert headers["x-ratelimit-limit-images"] == "10"
    assert headers["x-ratelimit-remaining-images"] == "1"


def test_retry_after_is_at_least_one_second() -> None:
    refused = Admission(admitted=False, windows=(), retry_after=0.0125, blocking=requests(1))

    assert rate_limit_headers(refused) == {"retry-after": "1", "retry-after-ms": "13"}


def test_no_retry_after_when_waiting_cannot_help() -> None:
    refused = Admission(admitted=False, windows=(), retry_after=None, blocking=requests(1))

    assert rate_limit_headers(refused) == {}


@pytest.mark.parametrize(
    ("measure", "unit"),
    [
        ("requests", "requests per min (RPM)"),
        ("tokens", "tokens per min (TPM)"),
        ("images", "images per min (IPM)"),
    ],
)
def test_refusal_message(measure: str, unit: str) -> None:
    quota = Quota(scope="org", measure=measure, limit=5, amount=2)  # type: ignore[arg-type]

    assert refusal_message(quota, 7.25, "org-abc", "gpt-image-1") == (
        f"Rate limit reached for gpt-image-1 in organization org-abc on {unit}: "
        "Limit 5, Requested 2. Please try again in 7.25s."
    )


def test_refusal_message_when_waiting_cannot_help() -> None:
    quota = Quota(scope="org", measure="images", limit=5, amount=8)

    assert refusal_message(quota, None, "org-abc", "gpt-image-1") == (
        "Rate limit reached for gpt-image-1 in organization org-abc on images per min (IPM): "
        "Limit 5, Requested 8, which is more than the limit allows in a minute; "
        "lower `n` or ask the operator for a higher limit."
    )


def test_quotas_are_validated() -> None:
    with pytest.raises(ValueError, match="limit"):
        Quota(scope="org", measure="images", limit=0, amount=1)
    with pytest.raises(ValueError, match="amount"):
        Quota(scope="org", measure="images", limit=1, amount=-1)
    with pytest.raises(ValueError, match="measure"):
        Quota(scope="org", measure="pixels", limit=1, amount=1)  # type: ignore[arg-type]
