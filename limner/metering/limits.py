"""Per-minute rate limits (RPM, TPM, IPM) as token buckets, exact under concurrency.

OpenAI limits each organization and each project, per model, by requests, tokens and images
per minute; whichever runs out first refuses the request. A request therefore carries several
quotas, and it is admitted only if every one of them has room, in which case it consumes from
all of them at once (all or nothing): a refusal must never eat into the quotas that did have room.

Each (scope, measure) is a token bucket holding up to `limit` units, refilled continuously at
`limit / 60` units per second and full when first seen. A bucket is stored as its level at a
point in time, so refilling costs nothing until the bucket is next read.

Two backends make the same decisions:

- `MemoryRateLimiter`: one lock in one process; the clock is injectable for tests.
- `RedisRateLimiter`: one Lua script per call, so the check-then-consume is atomic across every
  process sharing the Redis; it reads Redis's clock (TIME), never the callers', so servers with
  skewed clocks still agree. Keys expire once their bucket would be full again, so idle scopes
  cost nothing.

This module knows nothing of HTTP or storage: the API layer turns an `Admission` into headers
(`rate_limit_headers`) and an error message (`refusal_message`).
"""

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

import redis

Measure = Literal["requests", "tokens", "images"]
MEASURES: tuple[Measure, ...] = get_args(Measure)

# Levels are floats; a bucket that refilled to 0.9999999999 of a unit because of rounding must
# still admit a request for 1. A millionth of a token is far below anything a client can notice.
_EPSILON = 1e-6
_SECONDS_PER_WINDOW = 60.0


@dataclass(frozen=True)
class Quota:
    """One limit a request is subject to, and what this request costs against it."""

    scope: str  # e.g. "org_abc/gpt-image-1": opaque here, it only names the bucket
    measure: Measure
    limit: int  # units per minute
    amount: int  # units this request uses

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ValueError(f"unknown measure {self.measure!r}")
        if self.limit <= 0:
            raise ValueError(f"limit must be positive, got {self.limit}")
        if self.amount < 0:
            raise ValueError(f"amount must not be negative, got {self.amount}")

    @property
    def bucket(self) -> tuple[str, Measure]:
        return (self.scope, self.measure)


@dataclass(frozen=True)
class Window:
    """The state of one quota after a decision, as the rate-limit headers report it."""

    quota: Quota
    remaining: int  # whole units left now (after consuming, if admitted)
    reset_seconds: float  # until the bucket is full again


@dataclass(frozen=True)
class Admission:
    admitted: bool
    windows: tuple[Window, ...]  # one per quota, in the order given
    # Seconds until the blocking quota has room; None when admitted, or when the request asks
    # for more than a full bucket holds, so that waiting would never help.
    retry_after: float | None
    blocking: Quota | None  # the quota with the longest wait; None when admitted


class RateLimiter(Protocol):
    def acquire(self, quotas: Sequence[Quota]) -> Admission:
        """Consume every quota's amount if all have room, else nothing."""
        ...

    def refund(self, quotas: Sequence[Quota]) -> None:
        """Give amounts back (e.g. a request refused after admission); never above the limit."""
        ...


# --- The decision, shared by both backends ---------------------------------------------------


def _refilled(level: float, elapsed_seconds: float, limit: int) -> float:
    # Multiply before dividing: whole seconds against a limit of 60 then refill exact units.
    return min(float(limit), level + max(0.0, elapsed_seconds) * limit / _SECONDS_PER_WINDOW)


def _seconds_to_refill(units: float, limit: int) -> float:
    return max(0.0, units) * _SECONDS_PER_WINDOW / limit


def _demands(quotas: Sequence[Quota]) -> dict[tuple[str, Measure], int]:
    """Total amount per bucket: a bucket named twice in one request must hold both amounts."""
    demands: dict[tuple[str, Measure], int] = {}
    for quota in quotas:
        demands[quota.bucket] = demands.get(quota.bucket, 0) + quota.amount
    return demands


def _first_limits(quotas: Sequence[Quota]) -> dict[tuple[str, Measure], int]:
    """Each bucket's limit, from the first quota naming it (the Lua script does the same)."""
    limits: dict[tuple[str, Measure], int] = {}
    for quota in quotas:
        limits.setdefault(quota.bucket, quota.limit)
    return limits


def _fits(demand: int, level: float) -> bool:
    return demand <= level + _EPSILON


def _admission(quotas: Sequence[Quota], levels: Sequence[float], admitted: bool) -> Admission:
    """Build the result from each quota's bucket level after the decision.

    Both backends decide the same way, then hand their levels here, so reporting (remaining,
    reset, retry-after, which quota blocked) cannot drift between them.
    """
    windows = tuple(
        Window(
            quota=quota,
            remaining=max(0, math.floor(level + _EPSILON)),
            reset_seconds=_seconds_to_refill(quota.limit - level, quota.limit),
        )
        for quota, level in zip(quotas, levels, strict=True)
    )
    if admitted:
        return Admission(admitted=True, windows=windows, retry_after=None, blocking=None)
    retry_after, blocking = _longest_wait(quotas, levels)
    return Admission(admitted=False, windows=windows, retry_after=retry_after, blocking=blocking)


def _longest_wait(
    quotas: Sequence[Quota], levels: Sequence[float]
) -> tuple[float | None, Quota | None]:
    """The quota that refused and how long until it has room; no wait if it can never fit."""
    demands = _demands(quotas)
    longest: tuple[float, Quota] | None = None
    for quota, level in zip(quotas, levels, strict=True):
        demand = demands[quota.bucket]
        if demand > quota.limit:
            return None, quota
        if _fits(demand, level):
            continue
        wait = _seconds_to_refill(demand - level, quota.limit)
        if longest is None or wait > longest[0]:
            longest = (wait, quota)
    if longest is None:  # only reachable if a backend refused a request that fits
        return None, None
    return longest


# --- In-process backend -----------------------------------------------------------------------


@dataclass
class _Bucket:
    level: float
    updated: float  # clock seconds
    limit: int


class MemoryRateLimiter:
    """Buckets in a dict behind one lock: exact for the threads of a single process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, Measure], _Bucket] = {}
        self._last_sweep = clock()

    def acquire(self, quotas: Sequence[Quota]) -> Admission:
        limits = _first_limits(quotas)
        demands = _demands(quotas)
        with self._lock:
            now = self._clock()
            self._sweep(now)
            levels = {bucket: self._level(bucket, limit, now) for bucket, limit in limits.items()}
            admitted = all(_fits(demand, levels[bucket]) for bucket, demand in demands.items())
            if admitted:
                for bucket, demand in demands.items():
                    if demand > 0:
                        levels[bucket] = max(0.0, levels[bucket] - demand)
                        self._store(bucket, levels[bucket], limits[bucket], now)
        return _admission(quotas, [levels[q.bucket] for q in quotas], admitted)

    def refund(self, quotas: Sequence[Quota]) -> None:
        with self._lock:
            now = self._clock()
            for quota in quotas:
                level = self._level(quota.bucket, quota.limit, now) + quota.amount
                self._store(quota.bucket, min(float(quota.limit), level), quota.limit, now)

    def _level(self, bucket: tuple[str, Measure], limit: int, now: float) -> float:
        stored = self._buckets.get(bucket)
        if stored is None:
            return float(limit)
        return _refilled(stored.level, now - stored.updated, limit)

    def _store(self, bucket: tuple[str, Measure], level: float, limit: int, now: float) -> None:
        if level >= limit:
            self._buckets.pop(bucket, None)  # a full bucket and a missing one are the same
        else:
            self._buckets[bucket] = _Bucket(level, now, limit)

    def _sweep(self, now: float) -> None:
        """Forget buckets that have refilled, at most once a window, so idle scopes cost nothing."""
        if now - self._last_sweep < _SECONDS_PER_WINDOW:
            return
        self._last_sweep = now
        self._buckets = {
            bucket: stored
            for bucket, stored in self._buckets.items()
            if _refilled(stored.level, now - stored.updated, stored.limit) < stored.limit
        }


# --- Redis backend ------------------------------------------------------------------------------

# Both scripts start with this. A bucket is a hash {level, ts}: its level in units at time ts, in
# milliseconds of the Redis server's clock. A missing hash is a full bucket. Numbers are written
# with %.17g because Lua's tostring keeps only 14 digits, which would lose fractions of a unit.
_LUA_BUCKETS = """
local EPSILON = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000

local function level_now(key, limit)
  local stored = redis.call('HMGET', key, 'level', 'ts')
  if not stored[1] then
    return limit
  end
  local elapsed = math.max(0, now - tonumber(stored[2]))
  return math.min(limit, tonumber(stored[1]) + elapsed * limit / 60000)
end

local function store(key, level, limit)
  if level >= limit then
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, 'level', string.format('%.17g', level), 'ts', string.format('%.17g', now))
  -- Expire once the bucket would be full again: from then on, missing means the same thing.
  redis.call('PEXPIRE', key, math.max(1, math.ceil((limit - level) * 60000 / limit)))
end
"""

# KEYS: one bucket per quota. ARGV: epsilon, then limit and amount per quota.
# Returns {admitted (1 or 0), each quota's bucket level after the decision, as a string}.
# Levels go back as strings because Redis truncates Lua numbers to integers in replies.
_LUA_ACQUIRE = (
    _LUA_BUCKETS
    + """
local buckets, limits, levels, demands = {}, {}, {}, {}
for i, key in ipairs(KEYS) do
  local limit, amount = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  if levels[key] == nil then
    table.insert(buckets, key)
    limits[key], levels[key], demands[key] = limit, level_now(key, limit), 0
  end
  demands[key] = demands[key] + amount
end

local admitted = 1
for _, key in ipairs(buckets) do
  if demands[key] > levels[key] + EPSILON then
    admitted = 0
  end
end

if admitted == 1 then
  for _, key in ipairs(buckets) do
    if demands[key] > 0 then
      levels[key] = math.max(0, levels[key] - demands[key])
      store(key, levels[key], limits[key])
    end
  end
end

local reply = {admitted}
for i, key in ipairs(KEYS) do
  reply[i + 1] = string.format('%.17g', levels[key])
end
return reply
"""
)

# KEYS and ARGV as for acquire. Buckets named twice are refunded twice, capped at the limit.
_LUA_REFUND = (
    _LUA_BUCKETS
    + """
for i, key in ipairs(KEYS) do
  local limit, amount = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  store(key, math.min(limit, level_now(key, limit) + amount), limit)
end
return 0
"""
)

DEFAULT_REDIS_PREFIX = "limner:rl:"


class RedisRateLimiter:
    """Buckets in Redis hashes, decided by one Lua script per call: exact across processes.

    The client may be shared between threads (redis-py pools its connections). Errors reaching
    Redis propagate as `redis.RedisError`; whether to fail open or closed is the caller's choice.
    All keys of one request must live on one server, so a Redis Cluster is not supported.
    """

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_REDIS_PREFIX) -> None:
        self._client = client
        self._prefix = prefix
        # register_script sends EVALSHA and loads the script itself if the server lost it.
        self._acquire = client.register_script(_LUA_ACQUIRE)
        self._refund = client.register_script(_LUA_REFUND)

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_REDIS_PREFIX) -> "RedisRateLimiter":
        return cls(redis.Redis.from_url(url), prefix)

    def key(self, quota: Quota) -> str:
        """The Redis key of a quota's bucket. The measure comes last and never contains ':', so
        distinct (scope, measure) pairs always give distinct keys."""
        return f"{self._prefix}{quota.scope}:{quota.measure}"

    def acquire(self, quotas: Sequence[Quota]) -> Admission:
        if not quotas:
            return _admission(quotas, [], admitted=True)
        reply = self._acquire(keys=[self.key(q) for q in quotas], args=self._args(quotas))
        admitted, *levels = reply
        return _admission(quotas, [float(level) for level in levels], admitted=int(admitted) == 1)

    def refund(self, quotas: Sequence[Quota]) -> None:
        if quotas:
            self._refund(keys=[self.key(q) for q in quotas], args=self._args(quotas))

    @staticmethod
    def _args(quotas: Sequence[Quota]) -> list[str | int]:
        args: list[str | int] = [repr(_EPSILON)]
        for quota in quotas:
            args += [quota.limit, quota.amount]
        return args


def build_rate_limiter(redis_url: str | None) -> RateLimiter:
    """Shared limits through Redis when a URL is configured, else limits per process."""
    if redis_url:
        return RedisRateLimiter.from_url(redis_url)
    return MemoryRateLimiter()


# --- Reporting ----------------------------------------------------------------------------------

_HEADER_ORDER: tuple[Measure, ...] = ("requests", "tokens", "images")
_MESSAGE_UNITS: dict[Measure, str] = {
    "requests": "requests per min (RPM)",
    "tokens": "tokens per min (TPM)",
    "images": "images per min (IPM)",
}


def rate_limit_headers(admission: Admission) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers, plus retry-after and retry-after-ms on a refusal.

    When an organization and a project both limit a measure, the tighter one is reported: the
    one with the least remaining, then the smaller limit.
    """
    headers: dict[str, str] = {}
    for measure in _HEADER_ORDER:
        windows = [w for w in admission.windows if w.quota.measure == measure]
        if not windows:
            continue
        tightest = min(windows, key=lambda w: (w.remaining, w.quota.limit))
        headers[f"x-ratelimit-limit-{measure}"] = str(tightest.quota.limit)
        headers[f"x-ratelimit-remaining-{measure}"] = str(tightest.remaining)
        headers[f"x-ratelimit-reset-{measure}"] = go_duration(tightest.reset_seconds)
    if not admission.admitted and admission.retry_after is not None:
        headers["retry-after"] = str(max(1, _ceil(admission.retry_after)))
        headers["retry-after-ms"] = str(_ceil(admission.retry_after * 1000))
    return headers


def go_duration(seconds: float) -> str:
    """A duration as Go prints one, which is what OpenAI's reset headers carry: "20ms", "7.25s",
    "6m0s". Rounded up to whole milliseconds, so a client waiting that long finds room."""
    millis = _ceil(seconds * 1000) if seconds > 0 else 0
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    whole, fraction = divmod(millis, 1000)
    text = f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def refusal_message(
    blocking: Quota, retry_after: float | None, organization: str, model: str
) -> str:
    """The message of a 429, worded as OpenAI words it."""
    head = (
        f"Rate limit reached for {model} in organization {organization} on "
        f"{_MESSAGE_UNITS[blocking.measure]}: Limit {blocking.limit}, Requested {blocking.amount}"
    )
    if retry_after is None:
        return (
            f"{head}, which is more than the limit allows in a minute; "
            "lower `n` or ask the operator for a higher limit."
        )
    return f"{head}. Please try again in {go_duration(retry_after)}."


def _ceil(value: float) -> int:
    # Round first so float noise does not add a unit: 1.1 * 1000 is 1100.0000000000002.
    return math.ceil(round(value, 6))
